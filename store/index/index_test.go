package index

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otonode/otonode/store/header"

	"github.com/otonode/otonode/internal/testenv"
)

// newPostgres creates a database of the test's own, dropped at cleanup.
func newPostgres(t testing.TB) string { return testenv.Postgres(t, "otonode_test") }

// backend opens a fresh index; open may be called again for a second
// handle on the same database (a second node).
type backend struct {
	name string
	new  func(t testing.TB) (open func() *Index)
}

var backends = []backend{
	{"sqlite", func(t testing.TB) func() *Index {
		path := filepath.Join(t.TempDir(), "index.db")
		return func() *Index {
			return mustOpen(t, func(ctx context.Context) (*Index, error) { return OpenSQLite(ctx, path) })
		}
	}},
	{"postgres", func(t testing.TB) func() *Index {
		dsn := newPostgres(t)
		return func() *Index {
			return mustOpen(t, func(ctx context.Context) (*Index, error) { return OpenPostgres(ctx, dsn) })
		}
	}},
}

func mustOpen(t testing.TB, f func(context.Context) (*Index, error)) *Index {
	x, err := f(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

// each runs a test body against every backend.
func each(t *testing.T, body func(t *testing.T, open func() *Index)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			body(t, b.new(t))
		})
	}
}

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func attrs(study, series, sop string, n int) *header.Attributes {
	thick := 0.6
	return &header.Attributes{
		TransferSyntaxUID: "1.2.840.10008.1.2.1", PatientID: "P1", PatientName: "Doe^Jane",
		StudyInstanceUID: study, SeriesInstanceUID: series, SOPInstanceUID: sop,
		SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", Modality: "CT", InstanceNumber: &n,
		SliceThickness: &thick, ConvolutionKernel: []string{"H70h"}, ImageType: []string{"ORIGINAL", "PRIMARY", "AXIAL"},
		ImagePositionPatient: []float64{0, 0, float64(n) * 0.6}, PixelSpacing: []float64{0.25, 0.25},
	}
}

func record(t *testing.T, x *Index, a *header.Attributes, version int, at time.Time) Recorded {
	t.Helper()
	r, err := x.RecordInstance(context.Background(), Instance{Attrs: a, Location: a.StudyInstanceUID + "/" + a.SeriesInstanceUID + "/" + a.SOPInstanceUID + ".dcm",
		Version: version, Size: 1000, SHA256: "00", SourceAE: "CT1", ReceivedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRecordInstance(t *testing.T) {
	each(t, func(t *testing.T, open func() *Index) {
		x := open()
		ctx := context.Background()
		for i := 1; i <= 3; i++ {
			r := record(t, x, attrs("1.1", "1.1.1", fmt.Sprintf("1.1.1.%d", i), i), 1, t0.Add(time.Duration(i)*time.Second))
			if r.Duplicate || r.Revision != 1 || r.NewRevision {
				t.Fatalf("instance %d: %+v", i, r)
			}
		}
		if r := record(t, x, attrs("1.1", "1.1.1", "1.1.1.2", 2), 1, t0.Add(9*time.Second)); !r.Duplicate {
			t.Errorf("recording twice: %+v", r)
		}
		// A new version is recorded but is not a new instance.
		if r := record(t, x, attrs("1.1", "1.1.1", "1.1.1.2", 2), 2, t0.Add(4*time.Second)); r.Duplicate {
			t.Errorf("version 2: %+v", r)
		}
		s, err := x.Series(ctx, "1.1.1")
		if err != nil {
			t.Fatal(err)
		}
		if s.Instances != 3 || s.State != Receiving || s.Revision != 1 || !s.LastInstanceAt.Equal(t0.Add(4*time.Second)) ||
			s.Modality != "CT" || *s.SliceThickness != 0.6 || s.ConvolutionKernel[0] != "H70h" || len(s.PixelSpacing) != 2 {
			t.Errorf("series %+v", s)
		}
		ins, err := x.Instances(ctx, "1.1.1")
		if err != nil {
			t.Fatal(err)
		}
		if len(ins) != 3 || ins[1].Version != 2 || *ins[2].InstanceNumber != 3 || math.Abs(ins[2].ImagePositionPatient[2]-1.8) > 1e-9 {
			t.Errorf("instances %+v", ins)
		}
		if _, err := x.Series(ctx, "9.9"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown series: %v", err)
		}
	})
}

func TestCompletionRules(t *testing.T) {
	pol := Policy{QuietPeriod: 2 * time.Second, InactivityTimeout: 30 * time.Second}
	tests := []struct {
		name     string
		expected *int
		release  time.Duration // after t0; 0: none
		late     time.Duration // another instance after the release; 0: none
		notAt    time.Duration
		dueAt    time.Duration
		reason   string
	}{
		{"released then quiet", nil, 5 * time.Second, 0, 6900 * time.Millisecond, 7 * time.Second, ReasonReleased},
		{"instance after release waits", nil, 5 * time.Second, 6 * time.Second, 20 * time.Second, 36 * time.Second, ReasonInactivity},
		{"inactivity", nil, 0, 0, 32900 * time.Millisecond, 33 * time.Second, ReasonInactivity},
		{"expected count", ptr(3), 0, 0, -1, 4 * time.Second, ReasonExpectedCount},
		{"expected count not reached", ptr(4), 0, 0, 32 * time.Second, 33 * time.Second, ReasonInactivity},
	}
	each(t, func(t *testing.T, open func() *Index) {
		x := open()
		ctx := context.Background()
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				series := fmt.Sprintf("2.%d", i)
				for n := 1; n <= 3; n++ {
					a := attrs("2", series, fmt.Sprintf("%s.%d", series, n), n)
					a.ImagesInAcquisition = tt.expected
					record(t, x, a, 1, t0.Add(time.Duration(n)*time.Second))
				}
				if tt.release > 0 {
					if err := x.MarkReleased(ctx, []string{series}, t0.Add(tt.release)); err != nil {
						t.Fatal(err)
					}
				}
				if tt.late > 0 {
					record(t, x, attrs("2", series, series+".9", 9), 1, t0.Add(tt.late))
				}
				if tt.notAt >= 0 {
					if c, err := x.CompleteDue(ctx, t0.Add(tt.notAt), pol); err != nil || len(c) != 0 {
						t.Fatalf("at %v: %+v, %v", tt.notAt, c, err)
					}
				}
				c, err := x.CompleteDue(ctx, t0.Add(tt.dueAt), pol)
				if err != nil || len(c) != 1 || c[0].SeriesInstanceUID != series || c[0].Reason != tt.reason || c[0].OutboxID == 0 {
					t.Fatalf("at %v: %+v, %v", tt.dueAt, c, err)
				}
				if c, _ := x.CompleteDue(ctx, t0.Add(time.Hour), pol); len(c) != 0 {
					t.Errorf("completed twice: %+v", c)
				}
				s, _ := x.Series(ctx, series)
				if s.State != Complete || s.Reason != tt.reason || !s.CompletedAt.Equal(t0.Add(tt.dueAt)) {
					t.Errorf("series %+v", s)
				}
			})
		}
	})
}

func ptr[T any](v T) *T { return &v }

func TestPendingSurvivesReopen(t *testing.T) {
	each(t, func(t *testing.T, open func() *Index) {
		x := open()
		ctx := context.Background()
		record(t, x, attrs("3", "3.1", "3.1.1", 1), 1, t0)
		x.MarkReleased(ctx, []string{"3.1"}, t0.Add(time.Second))
		x.Close()
		// A restarted node (or another one) arms its timer from the database.
		y := open()
		p, err := y.Pending(ctx)
		if err != nil || len(p) != 1 {
			t.Fatalf("%+v %v", p, err)
		}
		pol := Policy{}
		if d := p[0].Deadline(pol); !d.Equal(t0.Add(3 * time.Second)) {
			t.Errorf("deadline %v", d)
		}
	})
}

func TestExplicitAndLateInstances(t *testing.T) {
	each(t, func(t *testing.T, open func() *Index) {
		x := open()
		ctx := context.Background()
		pol := Policy{}
		record(t, x, attrs("4", "4.1", "4.1.1", 1), 1, t0)
		c, err := x.Complete(ctx, "4.1", t0.Add(time.Second), pol)
		if err != nil || c.Reason != ReasonExplicit || c.Revision != 1 {
			t.Fatalf("%+v %v", c, err)
		}
		if _, err := x.Complete(ctx, "4.1", t0.Add(time.Second), pol); !errors.Is(err, ErrState) {
			t.Errorf("second explicit completion: %v", err)
		}
		// A re-sent identical instance changes nothing.
		if r := record(t, x, attrs("4", "4.1", "4.1.1", 1), 1, t0.Add(2*time.Second)); !r.Duplicate || r.NewRevision {
			t.Errorf("duplicate after completion: %+v", r)
		}
		// A late instance opens revision 2 and cancels the complete revision 1.
		r := record(t, x, attrs("4", "4.1", "4.1.2", 2), 1, t0.Add(3*time.Second))
		if !r.NewRevision || r.Revision != 2 || r.Cancelled != 1 {
			t.Fatalf("late instance: %+v", r)
		}
		if r := record(t, x, attrs("4", "4.1", "4.1.3", 3), 1, t0.Add(4*time.Second)); r.NewRevision || r.Revision != 2 {
			t.Errorf("second late instance: %+v", r)
		}
		x.MarkReleased(ctx, []string{"4.1"}, t0.Add(5*time.Second))
		cs, err := x.CompleteDue(ctx, t0.Add(8*time.Second), pol)
		if err != nil || len(cs) != 1 || cs[0].Revision != 2 || cs[0].Instances != 3 {
			t.Fatalf("revision 2: %+v %v", cs, err)
		}
		// A revision being analysed is not cancelled by a late instance.
		if err := x.Transition(ctx, Transition{SeriesInstanceUID: "4.1", Revision: 2, From: []State{Complete}, To: Queued}, t0.Add(9*time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := x.Transition(ctx, Transition{SeriesInstanceUID: "4.1", Revision: 2, From: []State{Queued}, To: Analysing}, t0.Add(9*time.Second)); err != nil {
			t.Fatal(err)
		}
		if r := record(t, x, attrs("4", "4.1", "4.1.4", 4), 1, t0.Add(10*time.Second)); r.Revision != 3 || r.Cancelled != 0 {
			t.Errorf("late instance during analysis: %+v", r)
		}
		err = x.Transition(ctx, Transition{SeriesInstanceUID: "4.1", Revision: 1, From: []State{Complete}, To: Queued}, t0)
		if !errors.Is(err, ErrState) {
			t.Errorf("queueing a cancelled revision: %v", err)
		}
		ss, err := x.StudySeries(ctx, "4")
		if err != nil || len(ss) != 1 || ss[0].Revision != 3 || ss[0].State != Receiving || ss[0].Instances != 4 {
			t.Errorf("study series %+v %v", ss, err)
		}
	})
}

func TestOutbox(t *testing.T) {
	each(t, func(t *testing.T, open func() *Index) {
		x := open()
		ctx := context.Background()
		for i := 1; i <= 3; i++ {
			s := fmt.Sprintf("5.%d", i)
			record(t, x, attrs("5", s, s+".1", 1), 1, t0)
			if _, err := x.Complete(ctx, s, t0, Policy{}); err != nil {
				t.Fatal(err)
			}
		}
		msg := Message{Subject: "otonode.work.series", MsgID: "5.1/1/work", Data: []byte(`{}`)}
		if err := x.Transition(ctx, Transition{SeriesInstanceUID: "5.1", Revision: 1, From: []State{Complete}, To: Queued, Message: &msg}, t0); err != nil {
			t.Fatal(err)
		}
		rows, err := x.PendingOutbox(ctx, 10)
		if err != nil || len(rows) != 4 {
			t.Fatalf("%d rows, %v", len(rows), err)
		}
		if rows[0].MsgID != "5.1/1" || rows[3].Subject != "otonode.work.series" || len(rows[0].Data) == 0 {
			t.Errorf("rows %+v", rows)
		}
		if again, _ := x.PendingOutbox(ctx, 10); len(again) != 0 {
			t.Errorf("leased rows handed out again: %d", len(again))
		}
		if err := x.MarkOutboxSent(ctx, []int64{rows[0].ID, rows[1].ID}); err != nil {
			t.Fatal(err)
		}
		var unsent int
		x.db.QueryRow(`SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL`).Scan(&unsent)
		if unsent != 2 {
			t.Errorf("%d unsent rows, want 2", unsent)
		}
	})
}

// TestTwoNodes runs two index handles (two node processes) on one
// database: concurrent recording into one new series and concurrent
// completion give one series row and exactly one completion each.
func TestTwoNodes(t *testing.T) {
	each(t, func(t *testing.T, open func() *Index) {
		nodes := []*Index{open(), open()}
		ctx := context.Background()
		const series, perNode = 6, 10
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for n, x := range nodes {
			for s := range series {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perNode {
						uid := fmt.Sprintf("6.%d", s)
						a := attrs("6", uid, fmt.Sprintf("%s.%d.%d", uid, n, i), i)
						if _, err := x.RecordInstance(ctx, Instance{Attrs: a, Location: "x", Version: 1, ReceivedAt: t0}); err != nil {
							errs <- err
						}
					}
				}()
			}
		}
		wg.Wait()
		var total []Completion
		var mu sync.Mutex
		for _, x := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := x.CompleteDue(ctx, t0.Add(time.Minute), Policy{})
				if err != nil {
					errs <- err
				}
				mu.Lock()
				total = append(total, c...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if len(total) != series {
			t.Errorf("%d completions of %d series", len(total), series)
		}
		ss, _ := nodes[0].StudySeries(ctx, "6")
		for _, s := range ss {
			if s.Instances != 2*perNode || s.State != Complete {
				t.Errorf("series %s: %d instances, %s", s.SeriesInstanceUID, s.Instances, s.State)
			}
		}
		var outbox int
		nodes[1].db.QueryRow(`SELECT COUNT(*) FROM outbox`).Scan(&outbox)
		if outbox != series {
			t.Errorf("%d outbox rows", outbox)
		}
	})
}

func TestExpiredSources(t *testing.T) {
	each(t, func(t *testing.T, open func() *Index) {
		x := open()
		ctx := context.Background()
		record(t, x, attrs("7", "7.1", "7.1.1", 1), 1, t0)
		res := attrs("7", "7.2", "7.2.1", 1)
		res.SOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
		if _, err := x.RecordInstance(ctx, Instance{Attrs: res, Location: "r", Version: 1, Result: true, ReceivedAt: t0}); err != nil {
			t.Fatal(err)
		}
		record(t, x, attrs("7", "7.3", "7.3.1", 1), 1, t0) // still receiving
		for _, s := range []string{"7.1", "7.2"} {
			x.Complete(ctx, s, t0, Policy{})
			for _, st := range []State{Queued, Analysing, Done} {
				prev := map[State]State{Queued: Complete, Analysing: Queued, Done: Analysing}[st]
				if err := x.Transition(ctx, Transition{SeriesInstanceUID: s, Revision: 1, From: []State{prev}, To: st}, t0.Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if got, _ := x.ExpiredSources(ctx, t0.Add(time.Hour), 10); len(got) != 0 {
			t.Errorf("expired too early: %+v", got)
		}
		got, err := x.ExpiredSources(ctx, t0.Add(48*time.Hour), 10)
		if err != nil || len(got) != 1 || got[0].SOPInstanceUID != "7.1.1" {
			t.Fatalf("%+v %v", got, err)
		}
		if err := x.MarkDeleted(ctx, "7.1.1", 1, t0.Add(48*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if got, _ := x.ExpiredSources(ctx, t0.Add(48*time.Hour), 10); len(got) != 0 {
			t.Errorf("deleted instance still listed: %+v", got)
		}
		if ins, _ := x.Instances(ctx, "7.1"); len(ins) != 0 {
			t.Errorf("deleted instance listed: %+v", ins)
		}
	})
}

func BenchmarkRecordInstance(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			x := be.new(b)()
			ctx := context.Background()
			i := 0
			for b.Loop() {
				i++
				a := attrs("8", fmt.Sprintf("8.%d", i/400), fmt.Sprintf("8.%d.%d", i/400, i), i)
				if _, err := x.RecordInstance(ctx, Instance{Attrs: a, Location: "x", Version: 1, ReceivedAt: t0}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "inserts/s")
		})
	}
}

// BenchmarkRecordInstanceParallel records from 8 goroutines, as parallel
// associations do; commits share WAL flushes.
func BenchmarkRecordInstanceParallel(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			x := be.new(b)()
			ctx := context.Background()
			var n atomic.Int64
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(n.Add(1))
					a := attrs("9", fmt.Sprintf("9.%d", i%8), fmt.Sprintf("9.%d.%d", i%8, i), i)
					if _, err := x.RecordInstance(ctx, Instance{Attrs: a, Location: "x", Version: 1, ReceivedAt: t0}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "inserts/s")
		})
	}
}
