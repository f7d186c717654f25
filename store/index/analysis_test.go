package index

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// queuedSeries records a series of n instances, completes and queues it.
func queuedSeries(t *testing.T, x *Index, series string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 1; i <= n; i++ {
		record(t, x, attrs("9.1", series, fmt.Sprintf("%s.%d", series, i), i), 1, t0)
	}
	if _, err := x.Complete(ctx, series, t0.Add(time.Second), Policy{}); err != nil {
		t.Fatal(err)
	}
	if err := x.Transition(ctx, Transition{SeriesInstanceUID: series, Revision: 1, From: []State{Complete}, To: Queued}, t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestClaimProtocol(t *testing.T) {
	each(t, func(t *testing.T, open func() *Index) {
		x := open()
		ctx := context.Background()
		queuedSeries(t, x, "9.1.1", 2)
		k := ClaimKey{SeriesInstanceUID: "9.1.1", Revision: 1, ModelSHA256: "abc"}
		now := t0.Add(time.Minute)
		c, err := x.TakeClaim(ctx, k, "w1", 30*time.Second, now)
		if err != nil || c.Attempt != 1 || c.Outcome != ClaimRunning {
			t.Fatalf("first claim %+v, %v", c, err)
		}
		if s, _ := x.Series(ctx, "9.1.1"); s.State != Analysing {
			t.Errorf("state after claim %s", s.State)
		}
		if _, err := x.TakeClaim(ctx, k, "w2", 30*time.Second, now.Add(10*time.Second)); !errors.Is(err, ErrClaimed) {
			t.Errorf("second worker during the lease: %v", err)
		}
		if err := x.RenewClaim(ctx, k, "w1", 30*time.Second, now.Add(20*time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := x.TakeClaim(ctx, k, "w2", 30*time.Second, now.Add(45*time.Second)); !errors.Is(err, ErrClaimed) {
			t.Errorf("second worker within the renewed lease: %v", err)
		}
		// w1 dies: after the lease w2 takes over, and w1 can neither renew
		// nor finish.
		c, err = x.TakeClaim(ctx, k, "w2", 30*time.Second, now.Add(51*time.Second))
		if err != nil || c.Attempt != 2 || c.Worker != "w2" {
			t.Fatalf("takeover %+v, %v", c, err)
		}
		if err := x.RenewClaim(ctx, k, "w1", 30*time.Second, now.Add(52*time.Second)); !errors.Is(err, ErrClaimed) {
			t.Errorf("renewal by the dead worker: %v", err)
		}
		vol, unc := 150.5, 0.003
		f := Finish{Key: k, Worker: "w2", Outcome: "flagged", To: Done, Reason: "analysed",
			Analyses: []Analysis{{StudyInstanceUID: "9.1", Ear: "R", ModelName: "m", ModelVersion: "1", Status: "flagged",
				Timings: `{"infer":1.5}`, VolumeMM3: &vol, Helicotrema: []float64{1, 2.5, -3}, Uncertainty: &unc,
				Flagged: true, FlagReasons: "uncertainty high"}},
			Messages: []Message{{Subject: "otonode.events.analysis.done", MsgID: "done/9.1.1/1", Data: []byte(`{}`)}}}
		bad := f
		bad.Worker = "w1"
		if err := x.FinishAnalysis(ctx, bad, now.Add(53*time.Second)); !errors.Is(err, ErrClaimed) {
			t.Errorf("finish by the dead worker: %v", err)
		}
		if err := x.FinishAnalysis(ctx, f, now.Add(54*time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := x.FinishAnalysis(ctx, f, now.Add(55*time.Second)); !errors.Is(err, ErrFinished) {
			t.Errorf("finishing twice: %v", err)
		}
		if _, err := x.TakeClaim(ctx, k, "w3", 30*time.Second, now.Add(time.Hour)); !errors.Is(err, ErrFinished) {
			t.Errorf("claim after finish: %v", err)
		}
		s, _ := x.Series(ctx, "9.1.1")
		if s.State != Done || s.Reason != "analysed" {
			t.Errorf("series %s %q", s.State, s.Reason)
		}
		rows, err := x.Analyses(ctx, "9.1.1")
		if err != nil || len(rows) != 1 {
			t.Fatalf("analyses %+v %v", rows, err)
		}
		a := rows[0]
		if a.Worker != "w2" || *a.VolumeMM3 != vol || a.Helicotrema[1] != 2.5 || !a.Flagged || a.OvalWindow != nil || a.ModelSHA256 != "abc" {
			t.Errorf("row %+v", a)
		}
		recent, err := x.RecentAnalyses(ctx, 10, true)
		if err != nil || len(recent) != 1 {
			t.Errorf("recent flagged %v %v", recent, err)
		}
		out, err := x.PendingOutbox(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, m := range out {
			found = found || m.MsgID == "done/9.1.1/1"
		}
		if !found {
			t.Errorf("no event in the outbox: %+v", out)
		}
	})
}

func TestClaimRefusesCancelledRevision(t *testing.T) {
	each(t, func(t *testing.T, open func() *Index) {
		x := open()
		ctx := context.Background()
		queuedSeries(t, x, "9.1.2", 2)
		// A late instance cancels the queued revision 1.
		record(t, x, attrs("9.1", "9.1.2", "9.1.2.9", 9), 1, t0.Add(3*time.Second))
		_, err := x.TakeClaim(ctx, ClaimKey{"9.1.2", 1, "abc"}, "w1", time.Minute, t0.Add(4*time.Second))
		if !errors.Is(err, ErrState) {
			t.Fatalf("claim of a cancelled revision: %v", err)
		}
	})
}

// TestClaimRace: many workers (two handles, as two processes) race for
// one analysis; exactly one wins.
func TestClaimRace(t *testing.T) {
	each(t, func(t *testing.T, open func() *Index) {
		x, y := open(), open()
		queuedSeries(t, x, "9.1.3", 2)
		k := ClaimKey{"9.1.3", 1, "abc"}
		var won, lost atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			db := x
			if i%2 == 1 {
				db = y
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := db.TakeClaim(context.Background(), k, fmt.Sprintf("w%d", i), time.Minute, t0.Add(time.Minute))
				switch {
				case err == nil:
					won.Add(1)
				case errors.Is(err, ErrClaimed):
					lost.Add(1)
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if won.Load() != 1 || lost.Load() != 7 {
			t.Fatalf("won %d lost %d", won.Load(), lost.Load())
		}
	})
}

func TestResultObjects(t *testing.T) {
	each(t, func(t *testing.T, open func() *Index) {
		x := open()
		ctx := context.Background()
		o := ResultObject{SOPInstanceUID: "2.25.1", SOPClassUID: "1.2.840.10008.5.1.4.1.1.66.4", Kind: KindSEG,
			SeriesInstanceUID: "9.1.1", Revision: 1, ModelSHA256: "abc", ForDiagnosis: false}
		for range 2 {
			if err := x.RecordResultObject(ctx, o, t0); err != nil {
				t.Fatal(err)
			}
		}
		got, err := x.ResultObject(ctx, "2.25.1")
		if err != nil || got.Kind != KindSEG || got.ForDiagnosis || got.Revision != 1 {
			t.Errorf("%+v %v", got, err)
		}
		if _, err := x.ResultObject(ctx, "2.25.2"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown object: %v", err)
		}
		if list, _ := x.ResultObjects(ctx, "9.1.1"); len(list) != 1 {
			t.Errorf("list %+v", list)
		}
	})
}
