package export

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/store/index"
)

// value reads a counter or gauge.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func dest(name string, scp *storeSCP) Destination {
	return Destination{Name: name, AETitle: scp.ae, Addr: fmt.Sprintf("127.0.0.1:%d", scp.port), CallingAETitle: "OTONODE"}
}

func counts(sops ...string) map[string]int {
	m := map[string]int{}
	for _, s := range sops {
		m[s]++
	}
	return m
}

func checkReceived(t *testing.T, scp *storeSCP, want map[string]int) {
	t.Helper()
	if got := scp.received(); !maps.Equal(got, want) {
		t.Errorf("%s received %v\nwant %v", scp.ae, got, want)
	}
}

// TestExportDelivers: results reach each destination once, in one
// association per batch; the analysed series goes only where asked for;
// results not for diagnosis are held (and logged once) unless the
// destination allows them; a restarted exporter sends nothing again.
func TestExportDelivers(t *testing.T) {
	each(t, func(t *testing.T, open func() *index.Index) {
		ctx := context.Background()
		idx := open()
		n := newNode(t, idx)
		s := n.scene("1.2.826.0.1.7.1")
		pacs, archive := newStoreSCP(t, "PACS", freePort(t)), newStoreSCP(t, "ARCHIVE", freePort(t))
		pacs.start()
		archive.start()
		ar := dest("archive", archive)
		ar.Sources, ar.AllowNotForDiagnosis = true, true
		opt := Options{Destinations: []Destination{dest("pacs", pacs), ar}}
		var logs logBuffer
		reg := prometheus.NewRegistry()
		ex, err := New(idx, n.files, opt, reg, logs.logger())
		if err != nil {
			t.Fatal(err)
		}
		if err := ex.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		checkReceived(t, pacs, counts(s.seg))
		checkReceived(t, archive, counts(append(s.ct, s.seg, s.sr)...))
		if pacs.associations() != 1 || archive.associations() != 1 {
			t.Errorf("associations: pacs %d, archive %d; want one each\n%s", pacs.associations(), archive.associations(), pacs.output())
		}
		held := func() int {
			return strings.Count(logs.String(), `msg="results held from export" destination=pacs series_instance_uid=`+s.source)
		}
		if held() != 1 || !strings.Contains(logs.String(), "not for diagnosis") {
			t.Errorf("held SR logged %d times:\n%s", held(), logs.String())
		}
		if strings.Contains(logs.String(), `msg="results held from export" destination=archive`) {
			t.Errorf("the archive allows results not for diagnosis, yet some were held")
		}
		if got := value(t, ex.metrics.Exported.WithLabelValues("archive", "sent")); got != 5 {
			t.Errorf("archive sent metric %v", got)
		}

		// Nothing new: nothing sent, nothing logged again.
		if err := ex.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		if held() != 1 || pacs.associations() != 1 {
			t.Errorf("second pass: held logged %d times, %d associations", held(), pacs.associations())
		}
		// A newly held result of another series is logged, the old one not
		// again.
		other := "1.2.826.0.1.7.1.2.8.1"
		n.result("1.2.826.0.1.7.1.2", other, srStorage, index.KindSR, false)
		if err := ex.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		if c := strings.Count(logs.String(), `msg="results held from export" destination=pacs series_instance_uid=1.2.826.0.1.7.1.2 `); held() != 1 || c != 1 {
			t.Errorf("held lines: first series %d, second %d\n%s", held(), c, logs.String())
		}

		// A restarted node (new exporter, new database handle) sends only
		// what is new: a peer-review KOS arriving later.
		kos := "1.2.826.0.1.7.1.7.1"
		n.result(s.source, kos, kosStorage, index.KindKOSFlag, true)
		ex2, err := New(open(), n.files, opt, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := ex2.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		checkReceived(t, pacs, counts(s.seg, kos))
		checkReceived(t, archive, counts(append(s.ct, s.seg, s.sr, kos, other)...))
		sent, err := idx.Exports(ctx, index.ExportFilter{State: index.ExportSent})
		if err != nil || len(sent) != 9 { // the archive took the second series' SR too
			t.Fatalf("%d sent rows, %v", len(sent), err)
		}
		for _, r := range sent {
			if r.Attempts != 1 || (r.SeriesInstanceUID != s.source) != (r.SOPInstanceUID == other) || r.LastError != "" {
				t.Errorf("row %+v", r)
			}
		}
		if pending, _ := idx.Exports(ctx, index.ExportFilter{State: index.ExportPending}); len(pending) != 0 {
			t.Errorf("pending rows left: %+v", pending)
		}
	})
}

// maxAttemptsWithin is the most attempts the backoff allows in d: the
// first at once, then after each wait, every wait at least half of its
// doubling step.
func maxAttemptsWithin(d time.Duration, o Options) int {
	n, t, w := 1, time.Duration(0), o.BackoffBase
	for {
		t += min(w, o.BackoffMax) / 2
		if t > d {
			return n
		}
		n++
		w *= 2
	}
}

// TestExportRetriesUntilPACSReturns: with the destination down, rows are
// retried with growing waits (an outage does not burn attempts), and are
// delivered once each when it comes back.
func TestExportRetriesUntilPACSReturns(t *testing.T) {
	each(t, func(t *testing.T, open func() *index.Index) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		idx := open()
		n := newNode(t, idx)
		s := n.scene("1.2.826.0.1.7.2")
		pacs := newStoreSCP(t, "PACS", freePort(t)) // not started: the PACS is down
		d := dest("pacs", pacs)
		d.AllowNotForDiagnosis = true
		opt := Options{Destinations: []Destination{d}, PollInterval: 10 * time.Millisecond,
			BackoffBase: 100 * time.Millisecond, BackoffMax: 400 * time.Millisecond, MaxAttempts: 1000, Timeout: 2 * time.Second}
		var logs logBuffer
		ex, err := New(idx, n.files, opt, nil, logs.logger())
		if err != nil {
			t.Fatal(err)
		}
		started := time.Now()
		var wg sync.WaitGroup
		wg.Go(func() { ex.Run(ctx) })
		defer wg.Wait()
		defer cancel()

		time.Sleep(1500 * time.Millisecond)
		rows, err := idx.Exports(ctx, index.ExportFilter{Destination: "pacs"})
		elapsed := time.Since(started)
		if err != nil || len(rows) != 2 {
			t.Fatalf("rows %+v, %v", rows, err)
		}
		limit := maxAttemptsWithin(elapsed, opt.withDefaults())
		for _, r := range rows {
			if r.State != index.ExportPending || r.Attempts < 1 || r.Attempts > limit || !strings.Contains(r.LastError, "association") {
				t.Errorf("while down, after %v (at most %d attempts): %+v", elapsed, limit, r)
			}
		}
		t.Logf("after %v down: attempts %d and %d (the 10 ms poll alone would allow %d)", elapsed.Round(time.Millisecond),
			rows[0].Attempts, rows[1].Attempts, int(elapsed/opt.PollInterval))

		pacs.start()
		waitFor(t, "delivery after the PACS returned", 20*time.Second, func() bool {
			sent, _ := idx.Exports(ctx, index.ExportFilter{State: index.ExportSent})
			return len(sent) == 2
		})
		checkReceived(t, pacs, counts(s.seg, s.sr))
		if !strings.Contains(logs.String(), "series_instance_uid="+s.source) {
			t.Errorf("no log line names the series:\n%s", logs.String())
		}
	})
}

// TestExportDeadAndRetry: after MaxAttempts failures a row is dead and
// stays so; retried, it is delivered. An instance that retention deleted
// meanwhile ends its row at once without holding up the rest of the batch.
func TestExportDeadAndRetry(t *testing.T) {
	each(t, func(t *testing.T, open func() *index.Index) {
		ctx := context.Background()
		idx := open()
		n := newNode(t, idx)
		s := n.scene("1.2.826.0.1.7.3")
		pacs := newStoreSCP(t, "PACS", freePort(t))
		d := dest("pacs", pacs)
		d.Sources = true
		opt := Options{Destinations: []Destination{d}, BackoffBase: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
			MaxAttempts: 3, Timeout: 2 * time.Second}
		reg := prometheus.NewRegistry()
		ex, err := New(idx, n.files, opt, reg, nil)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "every row dead", 20*time.Second, func() bool {
			if err := ex.Pass(ctx); err != nil {
				t.Fatal(err)
			}
			dead, _ := idx.Exports(ctx, index.ExportFilter{State: index.ExportDead})
			return len(dead) == 4 // three slices and the SEG
		})
		dead, _ := idx.Exports(ctx, index.ExportFilter{State: index.ExportDead})
		for _, r := range dead {
			if r.Attempts != 3 || !strings.Contains(r.LastError, "association") {
				t.Errorf("dead row %+v", r)
			}
		}
		if got := value(t, ex.metrics.Dead.WithLabelValues("pacs")); got != 4 {
			t.Errorf("dead gauge %v", got)
		}
		time.Sleep(50 * time.Millisecond)
		if err := ex.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		if again, _ := idx.Exports(ctx, index.ExportFilter{State: index.ExportDead}); len(again) != 4 || again[0].Attempts != 3 {
			t.Fatalf("dead rows changed: %+v", again)
		}

		// Retention deleted the first slice meanwhile: its row dies at
		// once, the others go in the same association.
		gone := dead[len(dead)-1] // newest first: the last is the first slice
		if gone.SOPInstanceUID != s.ct[0] {
			t.Fatalf("oldest dead row is %s, want %s", gone.SOPInstanceUID, s.ct[0])
		}
		if err := idx.MarkDeleted(ctx, gone.SOPInstanceUID, 1, time.Now()); err != nil {
			t.Fatal(err)
		}
		pacs.start()
		if k, err := idx.RetryDeadExports(ctx, "", time.Now()); err != nil || k != 4 {
			t.Fatalf("retried %d, %v", k, err)
		}
		if err := ex.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		checkReceived(t, pacs, counts(s.ct[1], s.ct[2], s.seg))
		if pacs.associations() != 1 {
			t.Errorf("%d associations, want 1", pacs.associations())
		}
		after, _ := idx.Exports(ctx, index.ExportFilter{State: index.ExportDead})
		if len(after) != 1 || after[0].SOPInstanceUID != s.ct[0] || !strings.Contains(after[0].LastError, "no longer stored") {
			t.Errorf("dead after retry: %+v", after)
		}
	})
}

// TestExportWakesOnResult: with a poll and plan interval of an hour, a
// result the node indexes still goes out at once, because indexing it
// wakes the exporter; without the wake, the plan interval finds it.
func TestExportWakesOnResult(t *testing.T) {
	tests := []struct {
		name            string
		wake            bool
		poll, planEvery time.Duration
	}{
		{"woken", true, time.Hour, time.Hour},
		{"plan interval", false, 20 * time.Millisecond, 300 * time.Millisecond},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			idx := openIndex(t, "sqlite")()
			n := newNode(t, idx)
			pacs := newStoreSCP(t, "PACS", freePort(t))
			pacs.start()
			ex, err := New(idx, n.files, Options{Destinations: []Destination{dest("pacs", pacs)}, PollInterval: tt.poll,
				PlanInterval: tt.planEvery}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wake {
				n.ingest.Index = ex.WakeOnResults(n.ingest.Index)
			}
			var wg sync.WaitGroup
			wg.Go(func() { ex.Run(ctx) })
			defer wg.Wait()
			defer cancel()
			time.Sleep(200 * time.Millisecond) // past the first pass
			s := n.scene(fmt.Sprintf("1.2.826.0.1.7.6.%d", i))
			waitFor(t, "the SEG at the destination", 10*time.Second, func() bool { return pacs.received()[s.seg] == 1 })
		})
	}
}

// TestExportToFolder: a folder destination gets each object once as a
// whole file, named by the analysed series and kind; a folder that cannot
// be made is retried, not fatal.
func TestExportToFolder(t *testing.T) {
	each(t, func(t *testing.T, open func() *index.Index) {
		ctx := context.Background()
		idx := open()
		n := newNode(t, idx)
		s := n.scene("1.2.826.0.1.7.7")
		root := t.TempDir()
		blocker := filepath.Join(root, "file")
		os.WriteFile(blocker, nil, 0o644)
		opt := Options{Destinations: []Destination{
			{Name: "out", Folder: filepath.Join(root, "out"), Sources: true, AllowNotForDiagnosis: true},
			{Name: "broken", Folder: filepath.Join(blocker, "out")},
		}}
		ex, err := New(idx, n.files, opt, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second pass finds nothing to do
			if err := ex.Pass(ctx); err != nil {
				t.Fatal(err)
			}
		}
		want := []string{"seg-" + s.seg + ".dcm", "source-" + s.ct[0] + ".dcm", "source-" + s.ct[1] + ".dcm",
			"source-" + s.ct[2] + ".dcm", "sr-" + s.sr + ".dcm"}
		ents, err := os.ReadDir(filepath.Join(root, "out", s.source))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range ents {
			got = append(got, e.Name())
		}
		if !slices.Equal(got, want) {
			t.Fatalf("folder holds %v, want %v", got, want)
		}
		rows, _ := idx.Exports(ctx, index.ExportFilter{Destination: "out", State: index.ExportSent})
		for _, r := range rows {
			f, err := n.files.Open(ctx, r.Location)
			if err != nil {
				t.Fatal(err)
			}
			stored, _ := io.ReadAll(f)
			f.Close()
			copied, err := os.ReadFile(filepath.Join(root, "out", s.source, r.Kind+"-"+r.SOPInstanceUID+".dcm"))
			if err != nil || !bytes.Equal(stored, copied) || string(copied[128:132]) != "DICM" {
				t.Errorf("%s: copy differs from the stored file (%v)", r.SOPInstanceUID, err)
			}
		}
		if len(rows) != 5 {
			t.Errorf("%d rows sent to the folder", len(rows))
		}
		broken, _ := idx.Exports(ctx, index.ExportFilter{Destination: "broken"})
		if len(broken) != 1 || broken[0].State != index.ExportPending || broken[0].Attempts != 1 || !strings.Contains(broken[0].LastError, "not a directory") {
			t.Errorf("broken folder rows %+v", broken)
		}
	})
}

// TestExportDecompresses: a source slice stored deflated goes to a
// storescp that takes only uncompressed syntaxes, decompressed, when the
// exporter has a Decompress; without one it fails and is retried.
func TestExportDecompresses(t *testing.T) {
	ctx := context.Background()
	var lastSCPDir string
	idx := openIndex(t, "sqlite")()
	n := newNode(t, idx)
	const source, slice = "1.2.826.0.1.7.8.1", "1.2.826.0.1.7.8.1.1"
	n.storeDeflated("1.2.826.0.1.7", source, slice, ctStorage, "CT", 1)
	n.result(source, "1.2.826.0.1.7.8.9.1", segStorage, index.KindSEG, true)
	inflate := func(r io.Reader, ts string) (io.Reader, error) {
		if ts != "1.2.840.10008.1.2.1.99" {
			return nil, fmt.Errorf("cannot decompress %s", ts)
		}
		return flate.NewReader(r), nil
	}
	for _, tt := range []struct {
		name       string
		decompress func(io.Reader, string) (io.Reader, error)
		want       int
	}{{"without Decompress", nil, 0}, {"with Decompress", inflate, 1}} {
		pacs := newStoreSCP(t, "PACS", freePort(t))
		lastSCPDir = pacs.dir
		pacs.start() // default: uncompressed transfer syntaxes only
		d := dest("pacs", pacs)
		d.Sources = true
		ex, err := New(idx, n.files, Options{Destinations: []Destination{d}, Decompress: tt.decompress}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		rows, _ := idx.Exports(ctx, index.ExportFilter{State: index.ExportPending})
		var ids []int64
		for _, r := range rows {
			ids = append(ids, r.ID)
		}
		idx.DeferExports(ctx, ids, time.Now()) // due now, whatever the last failure said
		if err := ex.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		got := pacs.received()[slice]
		if got != tt.want {
			t.Errorf("%s: the deflated slice arrived %d times, want %d", tt.name, got, tt.want)
		}
		if tt.want == 0 {
			r, _ := idx.Exports(ctx, index.ExportFilter{State: index.ExportPending})
			if len(r) != 1 || r[0].SOPInstanceUID != slice || !strings.Contains(r[0].LastError, "no accepted presentation context") {
				t.Errorf("%s: pending %+v", tt.name, r)
			}
		}
	}
	rows, _ := idx.Exports(ctx, index.ExportFilter{State: index.ExportSent})
	if len(rows) != 2 {
		t.Fatalf("sent %+v", rows)
	}
	// What arrived is the data set, inflated: storescp read it whole and
	// wrote it in the syntax it received.
	want := dataSet("1.2.826.0.1.7", source, slice, ctStorage, "CT", 1)
	found := false
	filepath.WalkDir(lastSCPDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		br := bufio.NewReader(f)
		fm, err := dimse.ReadFileMeta(br)
		if err != nil || fm.MediaStorageSOPInstanceUID != slice {
			return nil
		}
		body, _ := io.ReadAll(br)
		found = fm.TransferSyntaxUID == dimse.ExplicitVRLittleEndian && bytes.Equal(body, want)
		return nil
	})
	if !found {
		t.Error("the slice did not arrive as the inflated data set in explicit VR little endian")
	}
}

// TestExportSuppressesSuperseded: results of revision 1 still waiting for
// a PACS that is down when revision 2's results arrive are never sent;
// their rows end suppressed with the reason, counted and logged, while
// revision 2's SEG, SR and IOCM rejection note go out. The source series
// and another series' pending result are not touched.
func TestExportSuppressesSuperseded(t *testing.T) {
	each(t, func(t *testing.T, open func() *index.Index) {
		ctx := context.Background()
		idx := open()
		n := newNode(t, idx)
		s := n.scene("1.2.826.0.1.7.5")
		flag := "1.2.826.0.1.7.5.7.1"
		n.result(s.source, flag, kosStorage, index.KindKOSFlag, true)
		other := "1.2.826.0.1.7.6.9.1"
		n.result("1.2.826.0.1.7.6.1", other, segStorage, index.KindSEG, true)
		pacs := newStoreSCP(t, "PACS", freePort(t))
		d := dest("pacs", pacs)
		d.Sources, d.AllowNotForDiagnosis = true, true
		var logs logBuffer
		reg := prometheus.NewRegistry()
		ex, err := New(idx, n.files, Options{Destinations: []Destination{d}, BackoffBase: 10 * time.Millisecond,
			BackoffMax: 20 * time.Millisecond, Timeout: 2 * time.Second}, reg, logs.logger())
		if err != nil {
			t.Fatal(err)
		}
		// PACS down: everything waits.
		if err := ex.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		if pending, _ := idx.Exports(ctx, index.ExportFilter{State: index.ExportPending}); len(pending) != 7 {
			t.Fatalf("%d pending rows, want 7 (3 slices, SEG, SR, KOS, other SEG)", len(pending))
		}
		// Revision 2 is analysed: SEG, SR and the rejection note of
		// revision 1's SEG and SR reach the node.
		seg2, sr2, rej := "1.2.826.0.1.7.5.9.2", "1.2.826.0.1.7.5.8.2", "1.2.826.0.1.7.5.6.2"
		n.resultOf(s.source, 2, seg2, segStorage, index.KindSEG, true)
		n.resultOf(s.source, 2, sr2, srStorage, index.KindSR, true)
		n.resultOf(s.source, 2, rej, kosStorage, index.KindKOSRejection, true)
		pacs.start()
		waitFor(t, "nothing pending", 20*time.Second, func() bool {
			time.Sleep(25 * time.Millisecond) // past the backoff
			if err := ex.Pass(ctx); err != nil {
				t.Fatal(err)
			}
			pending, _ := idx.Exports(ctx, index.ExportFilter{State: index.ExportPending})
			return len(pending) == 0
		})
		checkReceived(t, pacs, counts(append(s.ct, other, seg2, sr2, rej)...))
		sup, err := idx.Exports(ctx, index.ExportFilter{State: index.ExportSuppressed})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range sup {
			got = append(got, r.SOPInstanceUID)
			if r.LastError != "superseded by revision 2 (not sent)" || !r.SentAt.IsZero() || r.SeriesInstanceUID != s.source {
				t.Errorf("suppressed row %+v", r)
			}
		}
		if want := []string{s.seg, s.sr, flag}; !sameSet(got, want) {
			t.Errorf("suppressed %q, want %q", got, want)
		}
		if v := value(t, ex.metrics.Exported.WithLabelValues("pacs", "suppressed")); v != 3 {
			t.Errorf("suppressed metric %v, want 3", v)
		}
		if c := strings.Count(logs.String(), `msg="exports suppressed" destination=pacs series_instance_uid=`+s.source); c != 1 {
			t.Errorf("suppression logged %d times, want once:\n%s", c, logs.String())
		}
	})
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
