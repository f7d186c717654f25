package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/header"
	"github.com/otonode/otonode/store/index"
)

// ReindexReport counts what Reindex found.
type ReindexReport struct {
	Checked, Indexed, Unreadable int
	// Hashed counts indexed instances whose data set hash was missing
	// (their file was written after the index row, and a crash or a
	// failed update left the column empty) and is now recorded.
	Hashed int
}

// reindexMark names the mark Reindex keeps; markMargin allows for the
// clock being set back a little between runs.
const (
	reindexMark = "reindexed"
	markMargin  = time.Hour
)

// Reindex indexes instance files modified since the given time that the
// index lacks: files a crash left between their durable commit and the
// index transaction, and rows an index that is not flushed per commit
// lost in a power cut. Files that do not parse are counted and left
// alone.
//
// A zero since means: since the mark the last Reindex with a zero since
// left (all files when there is none). Such a Reindex that found nothing
// to add moves the mark to its own start (less markMargin): every file
// older than that is indexed, so a clean restart walks only what came
// since. One that added rows leaves the mark, so that the next walks them
// again in case the rows it added were lost too.
func (g *Ingest) Reindex(ctx context.Context, since time.Time) (ReindexReport, error) {
	var rep ReindexReport
	started := time.Now()
	if g.Now != nil {
		started = g.Now()
	}
	fromMark := since.IsZero()
	if fromMark {
		m, err := g.Files.Mark(ctx, reindexMark)
		if err != nil {
			return rep, fmt.Errorf("store: reindex: %w", err)
		}
		since = m
	}
	if err := g.Files.Flush(ctx); err != nil {
		return rep, fmt.Errorf("store: reindex: %w", err)
	}
	err := g.Files.Walk(ctx, since, func(fi files.FileInfo) error {
		rep.Checked++
		ok, err := g.Index.HasInstance(ctx, fi.SOPInstanceUID, fi.Version)
		if err != nil || ok {
			return err
		}
		in, err := g.readStored(ctx, fi)
		if err != nil {
			rep.Unreadable++
			return nil
		}
		if _, err := g.Index.RecordInstance(ctx, in); err != nil {
			return fmt.Errorf("store: reindex %s: %w", fi.Location, err)
		}
		rep.Indexed++
		return nil
	})
	if err == nil {
		rep.Hashed, err = g.hashMissing(ctx)
	}
	if err == nil && fromMark && rep.Indexed == 0 {
		if err := g.Files.SetMark(ctx, reindexMark, started.Add(-markMargin)); err != nil {
			return rep, fmt.Errorf("store: reindex: %w", err)
		}
	}
	return rep, err
}

// hashMissing computes the data set hash of indexed instances that lack
// it, from their files.
func (g *Ingest) hashMissing(ctx context.Context) (int, error) {
	x, ok := g.Index.(interface {
		hashIndex
		InstancesWithoutSHA256(ctx context.Context, afterSOP string, afterVersion, limit int) ([]index.StoredInstance, error)
	})
	if !ok {
		return 0, nil
	}
	n := 0
	sop, version := "", 0
	for {
		ins, err := x.InstancesWithoutSHA256(ctx, sop, version, 256)
		if err != nil || len(ins) == 0 {
			return n, err
		}
		var hs []index.InstanceHash
		for _, in := range ins {
			sop, version = in.SOPInstanceUID, in.Version
			sum, err := g.dataSetSHA256(ctx, in.Location)
			if err != nil {
				continue // retention took it, or it is damaged: left empty
			}
			hs = append(hs, index.InstanceHash{SOPInstanceUID: in.SOPInstanceUID, Version: in.Version, SHA256: sum})
		}
		if _, err := x.SetInstanceSHA256(ctx, hs); err != nil {
			return n, fmt.Errorf("store: reindex: %w", err)
		}
		n += len(hs)
	}
}

// dataSetSHA256 hashes the data set of the stored file at loc.
func (g *Ingest) dataSetSHA256(ctx context.Context, loc string) (string, error) {
	f, err := g.Files.Open(ctx, loc)
	if err != nil {
		return "", err
	}
	defer f.Close()
	off, err := files.MetaHeaderLen(f)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, off, math.MaxInt64-off)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readStored reads the header and data set hash of a stored file.
func (g *Ingest) readStored(ctx context.Context, fi files.FileInfo) (index.Instance, error) {
	f, err := g.Files.Open(ctx, fi.Location)
	if err != nil {
		return index.Instance{}, err
	}
	defer f.Close()
	a, err := header.ParseFile(io.NewSectionReader(f, 0, fi.Size), g.Limits)
	if err != nil {
		return index.Instance{}, err
	}
	if a.SOPInstanceUID != fi.SOPInstanceUID {
		return index.Instance{}, fmt.Errorf("store: %s holds SOP instance %s", fi.Location, a.SOPInstanceUID)
	}
	off, err := files.MetaHeaderLen(f)
	if err != nil {
		return index.Instance{}, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, off, fi.Size-off)); err != nil {
		return index.Instance{}, err
	}
	m := files.Meta{SOPClassUID: a.SOPClassUID, SOPInstanceUID: a.SOPInstanceUID,
		TransferSyntaxUID: a.TransferSyntaxUID, SourceAETitle: a.SourceApplicationEntityTitle}
	in := index.Instance{Attrs: a, Location: fi.Location, Version: fi.Version, Size: fi.Size,
		SHA256: hex.EncodeToString(h.Sum(nil)), SourceAE: m.SourceAETitle, ReceivedAt: fi.ModTime}
	if g.IsResult != nil {
		in.Result = g.IsResult(m, a)
	}
	return in, nil
}
