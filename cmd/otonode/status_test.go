package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otonode/otonode/store/header"
	"github.com/otonode/otonode/store/index"
)

func TestStatusListsAnalyses(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	x, err := index.OpenSQLite(ctx, filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, sop := range []string{"1.2.3.4.1", "1.2.3.4.2"} {
		n := i + 1
		a := &header.Attributes{StudyInstanceUID: "1.2.3", SeriesInstanceUID: "1.2.3.4", SOPInstanceUID: sop,
			SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", Modality: "CT", InstanceNumber: &n}
		if _, err := x.RecordInstance(ctx, index.Instance{Attrs: a, Location: sop, ReceivedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := x.Complete(ctx, "1.2.3.4", now, index.Policy{}); err != nil {
		t.Fatal(err)
	}
	x.Transition(ctx, index.Transition{SeriesInstanceUID: "1.2.3.4", Revision: 1, From: []index.State{index.Complete}, To: index.Queued}, now)
	k := index.ClaimKey{SeriesInstanceUID: "1.2.3.4", Revision: 1, ModelSHA256: "abc"}
	if _, err := x.TakeClaim(ctx, k, "w1", time.Minute, now); err != nil {
		t.Fatal(err)
	}
	vol, unc := 181.25, 0.0123
	err = x.FinishAnalysis(ctx, index.Finish{Key: k, Worker: "w1", Outcome: "flagged", To: index.Done, Reason: "flagged",
		Analyses: []index.Analysis{{StudyInstanceUID: "1.2.3", Ear: "L", ModelName: "ref", ModelVersion: "1", Status: "flagged",
			Timings: "{}", VolumeMM3: &vol, Uncertainty: &unc, Flagged: true, FlagReasons: "uncertainty above threshold"}}}, now)
	if err != nil {
		t.Fatal(err)
	}
	x.Close()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"status", "--data_dir", dir, "--flagged"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"1.2.3.4", "L", "FLAG: uncertainty above threshold", "181.2", "0.01230", "ref 1"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, stdout.String())
		}
	}
	stdout.Reset()
	if code := run(ctx, []string{"status", "--data_dir", dir, "--json"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), `"Flagged":true`) {
		t.Errorf("json: %d %s %s", code, stdout.String(), stderr.String())
	}
}
