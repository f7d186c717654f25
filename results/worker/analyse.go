package worker

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/otonode/otonode/analysis"
	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/results"
	"github.com/otonode/otonode/scp/events"
	"github.com/otonode/otonode/store/index"
)

// Outcomes of an analysis as the analyses table and the claims record them.
const (
	StatusDone    = "done"
	StatusFlagged = "flagged"
	StatusFailed  = "failed" // e.g. no inner ear found
)

// outcome is what one analysis produced.
type outcome struct {
	res     *analysis.Result
	outcome string // StatusDone, StatusFlagged, StatusFailed, analysis.StatusNotAnalysable
	reason  string
	segUID  string
	srUID   string
	kosUID  string
	// stages the worker timed around the analysis (input, write, store).
	stages []analysis.Stage
}

// failure is the outcome of a revision that cannot be analysed.
func failure(job events.SeriesComplete, m analysis.Model, status, reason string) *outcome {
	res := &analysis.Result{Status: status, Reason: reason, Model: m}
	out := &outcome{res: res, outcome: analysis.StatusNotAnalysable, reason: reason}
	if status == analysis.StatusNoInnerEar {
		out.outcome = StatusFailed
	}
	return out
}

// analyse runs one claimed job up to the results being at the node.
func (w *Worker) analyse(ctx context.Context, job events.SeriesComplete, log *slog.Logger) (*outcome, error) {
	var stages []analysis.Stage
	t := w.Now()
	lap := func(name string) {
		now := w.Now()
		stages = append(stages, analysis.Stage{Name: name, Duration: now.Sub(t)})
		t = now
	}
	paths, cleanup, err := w.input(ctx, job, log)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	lap("input")
	res, err := w.Analyzer.Analyze(ctx, paths)
	if err != nil {
		return nil, err
	}
	t = w.Now()
	if res.Status != analysis.StatusDone {
		out := failure(job, res.Model, res.Status, res.Reason)
		out.res, out.stages = res, stages
		return out, nil
	}
	if w.AfterAnalyze != nil {
		w.AfterAnalyze(job.SeriesInstanceUID)
	}
	out := &outcome{res: res, outcome: StatusDone, reason: "analysed"}
	for _, e := range res.Ears {
		if e.Flag.Raised {
			out.outcome, out.reason = StatusFlagged, "flagged: "+e.Flag.Reason
		}
	}
	if why := noDICOM(res); why != "" {
		out.reason += "; no SEG/SR: " + why
		log.Warn("no SEG/SR", "why", why)
		out.stages = stages
		return out, nil
	}
	objs, err := w.write(ctx, job, paths, res, out)
	if err != nil {
		return nil, err
	}
	lap("write")
	if err := w.send(ctx, job, objs); err != nil {
		return nil, err
	}
	lap("store")
	out.stages = stages
	return out, nil
}

// noDICOM says why a result cannot become a SEG and SR: every segment needs
// its ear's side and at least one voxel.
func noDICOM(res *analysis.Result) string {
	for n, e := range res.Ears {
		if e.Laterality != analysis.Right && e.Laterality != analysis.Left {
			return fmt.Sprintf("the side of ear %d could not be told", n+1)
		}
		if e.VolumeMM3 == 0 {
			return fmt.Sprintf("the %s ear's segmentation is empty", e.Laterality)
		}
	}
	return ""
}

// object is a result object ready to send.
type object struct {
	index.ResultObject
	file []byte
}

// write makes the SEG and SR (and the KOS documents, kos.go) with UIDs
// derived from the series, revision and model, so a re-run after a crash
// makes the same objects, and records them as results before anything is
// sent.
func (w *Worker) write(ctx context.Context, job events.SeriesComplete, paths []string, res *analysis.Result, out *outcome) ([]object, error) {
	src, err := results.ReadSource(ctx, paths)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	rejected, err := w.superseded(ctx, job.SeriesInstanceUID, job.Revision)
	if err != nil {
		return nil, err
	}
	rw := w.writer(job, res.Model)
	seg, sr, err := rw.Write(src, res, &results.Extras{Replaces: srsOf(rejected)})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	out.segUID, out.srUID = seg.SOPInstanceUID, sr.SOPInstanceUID
	base := index.ResultObject{SeriesInstanceUID: job.SeriesInstanceUID, Revision: job.Revision,
		ModelSHA256: res.Model.SHA256, ForDiagnosis: !res.Model.NotForDiagnosis}
	objs := []object{
		{with(base, seg.SOPInstanceUID, results.SegmentationStorage, index.KindSEG), seg.File},
		{with(base, sr.SOPInstanceUID, results.Comprehensive3DSRStorage, index.KindSR), sr.File},
	}
	extra, err := w.keyObjects(src, res, seg, sr, rejected, job.Revision, base, rw)
	if err != nil {
		return nil, err
	}
	for _, o := range extra {
		if o.Kind == index.KindKOSFlag {
			out.kosUID = o.SOPInstanceUID
		}
	}
	objs = append(objs, extra...)
	for _, o := range objs {
		if err := w.Index.RecordResultObject(ctx, o.ResultObject, w.Now()); err != nil {
			return nil, err
		}
	}
	return objs, nil
}

func with(o index.ResultObject, uid, class, kind string) index.ResultObject {
	o.SOPInstanceUID, o.SOPClassUID, o.Kind = uid, class, kind
	return o
}

// writer is the results writer of one analysis: deterministic UIDs and
// times, so the same analysis always gives byte-identical objects.
func (w *Worker) writer(job events.SeriesComplete, m analysis.Model) *results.Writer {
	at := job.CompletedAt
	if at.IsZero() {
		at = time.Unix(0, 0)
	}
	return &results.Writer{
		UIDs: results.HashUIDs{Seed: fmt.Sprintf("%s/%d/%s", job.SeriesInstanceUID, job.Revision, m.SHA256)},
		Now:  at.Local(),
		Equipment: results.Equipment{Manufacturer: "otonode", ModelName: "otonode worker",
			DeviceSerialNumber: "-", SoftwareVersions: m.Name + " " + m.Version},
	}
}

// send stores the objects at the node by C-STORE over one association: the
// same path for a worker beside the node and one elsewhere.
func (w *Worker) send(ctx context.Context, job events.SeriesComplete, objs []object) error {
	n := w.node(job.Source)
	seen := map[string]bool{}
	var props []dimse.Proposal
	for _, o := range objs {
		if !seen[o.SOPClassUID] {
			seen[o.SOPClassUID] = true
			props = append(props, dimse.Proposal{AbstractSyntax: o.SOPClassUID,
				TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}})
		}
	}
	a, err := dimse.Dial(ctx, w.nodeAddr(job.Source), dimse.DialOptions{CallingAETitle: w.AETitle,
		CalledAETitle: n.AETitle, Proposals: props})
	if err != nil {
		return fmt.Errorf("worker: C-STORE to %s: %w", w.nodeAddr(job.Source), err)
	}
	for _, o := range objs {
		br := bufio.NewReader(bytes.NewReader(o.file))
		fm, err := dimse.ReadFileMeta(br)
		if err == nil {
			_, err = a.Store(ctx, dimse.Instance{SOPClassUID: fm.MediaStorageSOPClassUID,
				SOPInstanceUID: fm.MediaStorageSOPInstanceUID, TransferSyntaxUID: fm.TransferSyntaxUID, DataSet: br})
		}
		if err != nil {
			a.Abort()
			return fmt.Errorf("worker: C-STORE %s %s: %w", o.Kind, o.SOPInstanceUID, err)
		}
	}
	if err := a.Release(ctx); err != nil {
		return fmt.Errorf("worker: release after C-STORE: %w", err)
	}
	return nil
}
