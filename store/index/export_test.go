package index

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// exportFixture stores a CT series of three slices and its results: a SEG
// for diagnosis, an SR not for diagnosis, and a result instance the worker
// never recorded. It returns the SOP instance UIDs by name.
func exportFixture(t *testing.T, x *Index) map[string]string {
	t.Helper()
	ctx := context.Background()
	uids := map[string]string{}
	for n := 1; n <= 3; n++ {
		a := attrs("5", "5.1", "5.1."+string(rune('0'+n)), n)
		record(t, x, a, 1, t0)
		uids["ct"+string(rune('0'+n))] = a.SOPInstanceUID
	}
	results := []struct {
		name, sop, series, class, kind string
		forDiagnosis, recorded         bool
	}{
		{"seg", "5.9.1", "5.9", "1.2.840.10008.5.1.4.1.1.66.4", KindSEG, true, true},
		{"sr", "5.8.1", "5.8", "1.2.840.10008.5.1.4.1.1.88.34", KindSR, false, true},
		{"stray", "5.7.1", "5.7", "1.2.840.10008.5.1.4.1.1.88.34", KindSR, true, false},
	}
	for _, r := range results {
		a := attrs("5", r.series, r.sop, 1)
		a.SOPClassUID, a.Modality = r.class, "SEG"
		if r.recorded {
			if err := x.RecordResultObject(ctx, ResultObject{SOPInstanceUID: r.sop, SOPClassUID: r.class, Kind: r.kind,
				SeriesInstanceUID: "5.1", Revision: 1, ModelSHA256: "ab", ForDiagnosis: r.forDiagnosis}, t0); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := x.RecordInstance(ctx, Instance{Attrs: a, Location: "5/" + r.series + "/" + r.sop + ".dcm", Version: 1,
			Size: 10, SHA256: "00", SourceAE: "WORKER", Result: true, ReceivedAt: t0}); err != nil {
			t.Fatal(err)
		}
		uids[r.name] = r.sop
	}
	return uids
}

func sops(es []Export) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.SOPInstanceUID)
	}
	slices.Sort(out)
	return out
}

func TestPlanExports(t *testing.T) {
	each(t, func(t *testing.T, open func() *Index) {
		x := open()
		ctx := context.Background()
		u := exportFixture(t, x)
		tests := []struct {
			plan ExportPlan
			want []string
			held map[string]string // SOP instance -> reason
		}{
			{ExportPlan{Destination: "PACS"}, []string{u["seg"]},
				map[string]string{u["sr"]: HeldNotForDiagnosis, u["stray"]: HeldUnknownResult}},
			{ExportPlan{Destination: "DEMO", AllowNotForDiagnosis: true}, []string{u["seg"], u["sr"]},
				map[string]string{u["stray"]: HeldUnknownResult}},
			{ExportPlan{Destination: "ARCHIVE", Sources: true}, []string{u["ct1"], u["ct2"], u["ct3"], u["seg"]},
				map[string]string{u["sr"]: HeldNotForDiagnosis, u["stray"]: HeldUnknownResult}},
		}
		for _, tt := range tests {
			n, err := x.PlanExports(ctx, tt.plan, t0)
			if err != nil || n != len(tt.want) {
				t.Fatalf("%s: planned %d, %v; want %d", tt.plan.Destination, n, err, len(tt.want))
			}
			if n, err := x.PlanExports(ctx, tt.plan, t0.Add(time.Second)); err != nil || n != 0 {
				t.Fatalf("%s: planned again %d, %v", tt.plan.Destination, n, err)
			}
			rows, err := x.Exports(ctx, ExportFilter{Destination: tt.plan.Destination})
			if err != nil {
				t.Fatal(err)
			}
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if got := sops(rows); !slices.Equal(got, want) {
				t.Errorf("%s: rows %v, want %v", tt.plan.Destination, got, want)
			}
			for _, r := range rows {
				if r.State != ExportPending || r.SeriesInstanceUID != "5.1" || r.Location == "" || r.SOPClassUID == "" || r.Kind == "" {
					t.Errorf("%s: row %+v", tt.plan.Destination, r)
				}
				if (r.Kind == KindSource) != (r.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2") {
					t.Errorf("%s: kind %q for class %s", tt.plan.Destination, r.Kind, r.SOPClassUID)
				}
			}
			held, err := x.HeldExports(ctx, tt.plan, 100)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, h := range held {
				got[h.SOPInstanceUID] = h.Reason
			}
			if len(got) != len(tt.held) {
				t.Errorf("%s: held %v, want %v", tt.plan.Destination, got, tt.held)
			}
			for k, v := range tt.held {
				if got[k] != v {
					t.Errorf("%s: held %s for %q, want %q", tt.plan.Destination, k, got[k], v)
				}
			}
		}
		// Sources go first: lower ids, due at the same time.
		due, err := x.DueExports(ctx, "ARCHIVE", t0, time.Minute, 10)
		if err != nil || len(due) != 4 || due[3].SOPInstanceUID != u["seg"] {
			t.Fatalf("due %+v, %v", due, err)
		}
	})
}

func TestExportLifecycle(t *testing.T) {
	each(t, func(t *testing.T, open func() *Index) {
		x, other := open(), open()
		ctx := context.Background()
		exportFixture(t, x)
		if _, err := x.PlanExports(ctx, ExportPlan{Destination: "PACS", Sources: true}, t0); err != nil {
			t.Fatal(err)
		}
		if due, err := x.DueExports(ctx, "PACS", t0.Add(-time.Second), time.Minute, 10); err != nil || len(due) != 0 {
			t.Fatalf("due before their time: %v, %v", due, err)
		}
		// A second node sees nothing while the first holds the lease.
		due, err := x.DueExports(ctx, "PACS", t0, time.Minute, 3)
		if err != nil || len(due) != 3 {
			t.Fatalf("due %v, %v", due, err)
		}
		rest, err := other.DueExports(ctx, "PACS", t0, time.Minute, 10)
		if err != nil || len(rest) != 1 || slices.Contains(sops(due), rest[0].SOPInstanceUID) {
			t.Fatalf("second node got %v (first %v), %v", sops(rest), sops(due), err)
		}
		if again, _ := other.DueExports(ctx, "PACS", t0.Add(30*time.Second), time.Minute, 10); len(again) != 0 {
			t.Fatalf("leased rows handed out again: %v", sops(again))
		}

		if err := x.MarkExportSent(ctx, due[0].ID, t0); err != nil {
			t.Fatal(err)
		}
		// Three failures of at most three: pending, pending, dead.
		for i, want := range []ExportState{ExportPending, ExportPending, ExportDead} {
			st, err := x.MarkExportFailed(ctx, due[1].ID, "A-ASSOCIATE-RJ", t0.Add(time.Duration(i+1)*time.Second), 3)
			if err != nil || st != want {
				t.Fatalf("failure %d: %s, %v; want %s", i+1, st, err, want)
			}
		}
		if _, err := x.MarkExportFailed(ctx, due[1].ID, "again", t0, 3); !errors.Is(err, ErrNotFound) {
			t.Fatalf("failing a dead row: %v", err)
		}
		if err := x.DeferExports(ctx, []int64{due[2].ID, rest[0].ID}, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		counts, err := x.ExportCounts(ctx)
		if err != nil || counts["PACS"][ExportSent] != 0 || counts["PACS"][ExportDead] != 1 || counts["PACS"][ExportPending] != 2 {
			t.Fatalf("counts %v, %v", counts, err)
		}
		dead, err := x.Exports(ctx, ExportFilter{State: ExportDead})
		if err != nil || len(dead) != 1 || dead[0].Attempts != 3 || dead[0].LastError != "A-ASSOCIATE-RJ" {
			t.Fatalf("dead %+v, %v", dead, err)
		}
		sent, _ := x.Exports(ctx, ExportFilter{State: ExportSent})
		if len(sent) != 1 || sent[0].Attempts != 1 || !sent[0].SentAt.Equal(t0) {
			t.Fatalf("sent %+v", sent)
		}

		// Retry: only dead rows, unknown ids are not found.
		if err := x.RetryExport(ctx, due[0].ID, t0); !errors.Is(err, ErrState) {
			t.Errorf("retrying a sent row: %v", err)
		}
		if err := x.RetryExport(ctx, 999999, t0); !errors.Is(err, ErrNotFound) {
			t.Errorf("retrying an unknown row: %v", err)
		}
		if err := x.RetryExport(ctx, due[1].ID, t0.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		again, err := x.DueExports(ctx, "PACS", t0.Add(2*time.Hour), time.Minute, 10)
		if err != nil || len(again) != 3 {
			t.Fatalf("after retry and defer: %v, %v", sops(again), err)
		}
		for _, e := range again {
			if e.ID == due[1].ID && (e.Attempts != 0 || e.State != ExportPending) {
				t.Errorf("retried row %+v", e)
			}
		}
		for _, e := range again {
			if _, err := x.MarkExportFailed(ctx, e.ID, "refused", t0, 1); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := x.RetryDeadExports(ctx, "OTHER", t0); err != nil || n != 0 {
			t.Fatalf("retry of another destination: %d, %v", n, err)
		}
		if n, err := x.RetryDeadExports(ctx, "", t0); err != nil || n != 3 {
			t.Fatalf("retry all: %d, %v", n, err)
		}

		// An instance retention deleted is handed out without a location,
		// and can be ended at once.
		gone := due[1].SOPInstanceUID
		if err := x.MarkDeleted(ctx, gone, 1, t0); err != nil {
			t.Fatal(err)
		}
		due, err = x.DueExports(ctx, "PACS", t0.Add(3*time.Hour), time.Minute, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range due {
			if (e.SOPInstanceUID == gone) != (e.Location == "") {
				t.Errorf("row %+v", e)
			}
			if e.Location == "" {
				if err := x.MarkExportDead(ctx, e.ID, "instance no longer stored"); err != nil {
					t.Fatal(err)
				}
			}
		}
		if dead, _ := x.Exports(ctx, ExportFilter{State: ExportDead, Destination: "PACS"}); len(dead) != 1 || dead[0].SOPInstanceUID != gone {
			t.Errorf("dead %+v", dead)
		}
	})
}

// BenchmarkPlanExportsNothingNew measures a planner pass over 10 000 stored
// results that all have their row already: the price of one look when
// nothing is new.
func BenchmarkPlanExportsNothingNew(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			x := be.new(b)()
			ctx := context.Background()
			const n = 10000
			for i := range n {
				sop := fmt.Sprintf("9.%d", i)
				a := attrs("9", fmt.Sprintf("9.s%d", i/4), sop, 1)
				if err := x.RecordResultObject(ctx, ResultObject{SOPInstanceUID: sop, SOPClassUID: a.SOPClassUID, Kind: KindSR,
					SeriesInstanceUID: "9.src", Revision: 1, ModelSHA256: "a", ForDiagnosis: true}, t0); err != nil {
					b.Fatal(err)
				}
				if _, err := x.RecordInstance(ctx, Instance{Attrs: a, Location: "x", Version: 1, Result: true, ReceivedAt: t0}); err != nil {
					b.Fatal(err)
				}
			}
			if k, err := x.PlanExports(ctx, ExportPlan{Destination: "pacs"}, t0); err != nil || k != n {
				b.Fatal(k, err)
			}
			b.ResetTimer()
			for range b.N {
				if k, err := x.PlanExports(ctx, ExportPlan{Destination: "pacs"}, t0); err != nil || k != 0 {
					b.Fatal(k, err)
				}
			}
		})
	}
}
