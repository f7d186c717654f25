package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/index"
)

// sendToFolder copies each row's Part 10 file to the destination folder as
// <analysed series UID>/<kind>-<SOP instance UID>.dcm: written under a
// temporary name, synced, then renamed, so a reader of the folder never
// sees half a file. It reports false when the folder itself is unusable.
func (e *Exporter) sendToFolder(ctx context.Context, d Destination, rows []index.Export) bool {
	if err := os.MkdirAll(d.Folder, 0o755); err != nil {
		e.log.Warn("export folder unusable; will retry", "destination", d.Name, "folder", d.Folder, "err", err)
		for _, r := range rows {
			e.fail(ctx, d, r, err.Error(), slog.LevelWarn)
		}
		return false
	}
	for _, r := range rows {
		if ctx.Err() != nil {
			return true
		}
		if r.Location == "" {
			e.dead(ctx, d, r, "the instance is no longer stored")
			continue
		}
		err := e.copyOut(ctx, d.Folder, r)
		switch {
		case err == nil:
			e.sent(ctx, d, r)
		case errors.Is(err, errFile) && errors.Is(err, fs.ErrNotExist):
			e.dead(ctx, d, r, err.Error())
		default:
			e.fail(ctx, d, r, err.Error(), slog.LevelWarn)
		}
	}
	return true
}

func (e *Exporter) copyOut(ctx context.Context, folder string, r index.Export) (err error) {
	uid, err := files.CleanUID(r.SeriesInstanceUID)
	if err != nil {
		return err
	}
	sop, err := files.CleanUID(r.SOPInstanceUID)
	if err != nil {
		return err
	}
	kind := r.Kind
	if kind == "" {
		kind = "object"
	}
	dir := filepath.Join(folder, uid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	src, err := e.files.Open(ctx, r.Location)
	if err != nil {
		return fmt.Errorf("%w %s: %w", errFile, r.Location, err)
	}
	defer src.Close()
	tmp, err := os.CreateTemp(dir, ".export-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, src); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, kind+"-"+sop+".dcm"))
}
