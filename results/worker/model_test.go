//go:build cgo

package worker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otonode/otonode/analysis"
	"github.com/otonode/otonode/analysis/infer"
	"github.com/otonode/otonode/analysis/phantom"
	"github.com/otonode/otonode/analysis/tta"
	"github.com/otonode/otonode/store/index"
)

// TestReferenceModel runs the worker with the real reference model (ONNX
// Runtime, one TTA pass for time: about 2 min on 2 busy cores) on a phantom ear: the series is
// analysed, and the row and objects agree with what the model found.
func TestReferenceModel(t *testing.T) {
	lib := os.Getenv("ORT_LIB")
	if lib == "" {
		lib, _ = filepath.Abs("../../third_party/onnxruntime/libonnxruntime.so.1")
	}
	if _, err := os.Stat(lib); err != nil {
		need(t, "ONNX Runtime (ORT_LIB)", err)
	}
	if testing.Short() {
		t.Skip("minutes of CPU")
	}
	passes, err := tta.ByName([]string{"identity"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := OpenModel("../../analysis/model/reference/model.json", lib, infer.Options{Threads: 2}, analysis.Options{TTA: passes})
	if err != nil {
		t.Fatal(err)
	}
	// Closed after the worker's cleanup has stopped it (cleanups run last
	// first): a deferred Close ran before it and could free the ONNX Runtime
	// session under an analysis still in flight (a segfault seen under load).
	t.Cleanup(func() { a.Close() })
	e := startNode(t, "sqlite")
	dir := t.TempDir()
	v, _ := phantom.ParseVariant("right")
	v.Size = [3]int{96, 96, 80}
	v.SpacingMM = [3]float64{0.25, 0.25, 0.25}
	c, err := phantom.Generate(context.Background(), 3, v, phantom.Options{NoSupersample: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := phantom.WriteSeries(context.Background(), dir, c.CT, &c.Info, phantom.SeriesOptions{}); err != nil {
		t.Fatal(err)
	}
	w := e.worker(t, "real", a)
	w.AckWait = 15 * time.Second
	w.Heartbeat = 5 * time.Second
	run(t, w)
	start := time.Now()
	e.push(t, dir)
	s := e.waitState(t, c.Info.Identity.SeriesUID, 10*time.Minute, index.Done, index.Failed)
	t.Logf("%s (%q) %.1f s after the push", s.State, s.Reason, time.Since(start).Seconds())
	rows, _ := e.index.Analyses(context.Background(), s.SeriesInstanceUID)
	objs, _ := e.index.ResultObjects(context.Background(), s.SeriesInstanceUID)
	if len(rows) == 0 {
		t.Fatal("no analysis row")
	}
	for _, r := range rows {
		t.Logf("row: ear %s status %s volume %v uncertainty %v flag %q timings %s", r.Ear, r.Status, deref(r.VolumeMM3),
			deref(r.Uncertainty), r.FlagReasons, r.Timings)
		if r.ModelName != "otonode-reference-phantom" {
			t.Errorf("model %q", r.ModelName)
		}
	}
	switch s.State {
	case index.Done:
		if rows[0].Ear != "R" || len(rows) != 1 {
			t.Errorf("the right-ear phantom gave rows %+v", rows)
		}
		// Either SEG and SR (and a KOS when flagged) or a reason why not.
		if len(objs) < 2 && !strings.Contains(s.Reason, "no SEG/SR") {
			t.Errorf("done without results or reason: %q, %d objects", s.Reason, len(objs))
		}
		for _, o := range objs {
			if o.ForDiagnosis {
				t.Errorf("the phantom-trained model's %s is marked for diagnosis", o.Kind)
			}
		}
	default:
		t.Errorf("series %s: %q", s.State, s.Reason)
	}
}

func deref(p *float64) float64 {
	if p == nil {
		return -1
	}
	return *p
}
