package export

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/store/index"
)

// errFile marks a failure to read the stored file: the row's own problem,
// not the destination's.
var errFile = errors.New("export: stored file")

// sendBatch sends rows over one association. It reports false when the
// association could not be opened or broke: the destination is down, and
// the caller waits before it tries the destination again.
func (e *Exporter) sendBatch(ctx context.Context, d Destination, rows []index.Export) bool {
	var live []index.Export
	for _, r := range rows {
		if r.Location == "" {
			e.dead(ctx, d, r, "the instance is no longer stored")
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return true
	}
	dctx, cancel := context.WithTimeout(ctx, e.opt.Timeout)
	a, err := dimse.Dial(dctx, d.Addr, dimse.DialOptions{CallingAETitle: d.CallingAETitle, CalledAETitle: d.AETitle,
		Proposals: proposals(live), TLSConfig: d.TLS, ARTIMTimeout: e.opt.Timeout, DIMSETimeout: e.opt.Timeout})
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return true // shutting down; the lease hands the rows out again
		}
		e.metrics.Associations.WithLabelValues(d.Name, "failed").Inc()
		var series []string
		for _, r := range live {
			if !slices.Contains(series, r.SeriesInstanceUID) {
				series = append(series, r.SeriesInstanceUID)
			}
		}
		e.log.Warn("export association failed; will retry", "destination", d.Name, "addr", d.Addr, "objects", len(live),
			"series_instance_uid", strings.Join(series, ","), "err", err)
		// One attempt for each row of the batch: a destination that stays
		// down kills rows only after MaxAttempts waits that grow to
		// BackoffMax, never within one outage's first seconds. The line
		// above said it for the batch; each row's own goes to debug.
		for _, r := range live {
			e.fail(ctx, d, r, "association: "+err.Error(), slog.LevelDebug)
		}
		return false
	}
	e.metrics.Associations.WithLabelValues(d.Name, "ok").Inc()
	for i, r := range live {
		err := e.storeOne(ctx, a, r)
		var se *dimse.StatusError
		switch {
		case err == nil:
			e.sent(ctx, d, r)
		case ctx.Err() != nil:
			a.Abort()
			return true
		case errors.Is(err, fs.ErrNotExist):
			e.dead(ctx, d, r, err.Error())
		case errors.As(err, &se), errors.Is(err, dimse.ErrNoContext), errors.Is(err, errFile):
			e.fail(ctx, d, r, err.Error(), slog.LevelWarn)
		default:
			// The association broke: this row had its attempt, the rest
			// wait for the next association without losing one.
			e.fail(ctx, d, r, err.Error(), slog.LevelWarn)
			e.log.Warn("export association broke", "destination", d.Name, "addr", d.Addr, "err", err,
				"series_instance_uid", r.SeriesInstanceUID)
			rest := make([]int64, 0, len(live)-i-1)
			for _, x := range live[i+1:] {
				rest = append(rest, x.ID)
			}
			if err := e.idx.DeferExports(ctx, rest, e.now().Add(e.backoff(1))); err != nil {
				e.log.Error("export defer", "destination", d.Name, "err", err)
			}
			a.Abort()
			return false
		}
	}
	if err := a.Release(ctx); err != nil {
		a.Abort()
	}
	return true
}

// storeOne sends one stored file verbatim in its own transfer syntax.
func (e *Exporter) storeOne(ctx context.Context, a *dimse.Association, r index.Export) error {
	f, err := e.files.Open(ctx, r.Location)
	if err != nil {
		return fmt.Errorf("%w %s: %w", errFile, r.Location, err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	fm, err := dimse.ReadFileMeta(br)
	if err != nil {
		return fmt.Errorf("%w %s: %w", errFile, r.Location, err)
	}
	if fm.MediaStorageSOPInstanceUID != r.SOPInstanceUID {
		return fmt.Errorf("%w %s holds %s, not %s", errFile, r.Location, fm.MediaStorageSOPInstanceUID, r.SOPInstanceUID)
	}
	inst := dimse.Instance{SOPClassUID: fm.MediaStorageSOPClassUID, SOPInstanceUID: fm.MediaStorageSOPInstanceUID,
		TransferSyntaxUID: fm.TransferSyntaxUID, DataSet: br}
	rsp, err := a.Store(ctx, inst)
	if errors.Is(err, dimse.ErrNoContext) && e.opt.Decompress != nil && fm.TransferSyntaxUID != dimse.ExplicitVRLittleEndian &&
		fm.TransferSyntaxUID != dimse.ImplicitVRLittleEndian {
		// Store sent nothing: the data set is still unread.
		native, derr := e.opt.Decompress(br, fm.TransferSyntaxUID)
		if derr != nil {
			return fmt.Errorf("%w; decompressing: %w", err, derr)
		}
		inst.TransferSyntaxUID, inst.DataSet = dimse.ExplicitVRLittleEndian, native
		rsp, err = a.Store(ctx, inst)
	}
	if err == nil && rsp != nil && rsp.Status.Class() == dimse.ClassWarning {
		e.log.Warn("export C-STORE warning", "sop_instance_uid", r.SOPInstanceUID, "series_instance_uid", r.SeriesInstanceUID,
			"status", rsp.Status, "comment", rsp.ErrorComment)
	}
	return err
}

func (e *Exporter) sent(ctx context.Context, d Destination, r index.Export) {
	if err := e.idx.MarkExportSent(ctx, r.ID, e.now()); err != nil {
		// The object reached the destination; a later pass sends it again,
		// which a PACS takes as the same instance.
		e.log.Error("export mark sent", "destination", d.Name, "series_instance_uid", r.SeriesInstanceUID, "err", err)
		return
	}
	e.metrics.Exported.WithLabelValues(d.Name, "sent").Inc()
	e.log.Info("exported", "destination", d.Name, "series_instance_uid", r.SeriesInstanceUID,
		"sop_instance_uid", r.SOPInstanceUID, "kind", r.Kind, "attempt", r.Attempts+1)
}

// fail counts a failed attempt; level is that of the line saying it will
// be retried (a dead row is always an error).
func (e *Exporter) fail(ctx context.Context, d Destination, r index.Export, reason string, level slog.Level) {
	next := e.now().Add(e.backoff(r.Attempts + 1))
	st, err := e.idx.MarkExportFailed(ctx, r.ID, reason, next, e.opt.MaxAttempts)
	if err != nil {
		e.log.Error("export mark failed", "destination", d.Name, "series_instance_uid", r.SeriesInstanceUID, "err", err)
		return
	}
	if st == index.ExportDead {
		e.metrics.Exported.WithLabelValues(d.Name, "dead").Inc()
		e.log.Error("export dead: attempts exhausted; `otonode exports retry` sends it again", "destination", d.Name,
			"series_instance_uid", r.SeriesInstanceUID, "sop_instance_uid", r.SOPInstanceUID, "kind", r.Kind,
			"attempts", r.Attempts+1, "err", reason)
		return
	}
	e.metrics.Exported.WithLabelValues(d.Name, "failed").Inc()
	e.log.Log(ctx, level, "export failed; will retry", "destination", d.Name, "series_instance_uid", r.SeriesInstanceUID,
		"sop_instance_uid", r.SOPInstanceUID, "kind", r.Kind, "attempt", r.Attempts+1, "next_attempt", next, "err", reason)
}

func (e *Exporter) dead(ctx context.Context, d Destination, r index.Export, reason string) {
	if err := e.idx.MarkExportDead(ctx, r.ID, reason); err != nil {
		e.log.Error("export mark dead", "destination", d.Name, "series_instance_uid", r.SeriesInstanceUID, "err", err)
		return
	}
	e.metrics.Exported.WithLabelValues(d.Name, "dead").Inc()
	e.log.Error("export dead", "destination", d.Name, "series_instance_uid", r.SeriesInstanceUID,
		"sop_instance_uid", r.SOPInstanceUID, "kind", r.Kind, "err", reason)
}

// proposals offers each SOP class of the batch in each stored transfer
// syntax (and the uncompressed ones), at most the 128 contexts an
// association can carry; a row whose class did not fit fails with
// ErrNoContext and goes in a later batch.
func proposals(rows []index.Export) []dimse.Proposal {
	pairs := make([][2]string, len(rows))
	for i, r := range rows {
		pairs[i] = [2]string{r.SOPClassUID, r.TransferSyntaxUID}
	}
	return dimse.StorageProposalsFor(pairs)
}
