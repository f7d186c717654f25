package worker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"

	"github.com/otonode/otonode/analysis"
	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/results"
	"github.com/otonode/otonode/scp"
	"github.com/otonode/otonode/scp/events"
	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/index"
)

// lastEvent returns the last event on subject, waiting for the node's
// publisher to move it from the outbox.
func (e *env) lastEvent(t *testing.T, subject string) Event {
	t.Helper()
	var ev Event
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s, err := e.js.Stream(context.Background(), e.topo.EventsStream())
		if err == nil {
			m, err := s.GetLastMsgForSubject(context.Background(), subject)
			if err == nil {
				if err := json.Unmarshal(m.Data, &ev); err != nil {
					t.Fatal(err)
				}
				return ev
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no event on %s", subject)
	return ev
}

func streamCount(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// waitEmpty waits for the work stream to drain (acknowledgements and
// terminations are asynchronous).
func (e *env) waitEmpty(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for streamCount(t, e.js, e.topo.WorkStream()) != 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if c := streamCount(t, e.js, e.topo.WorkStream()); c != 0 {
		t.Errorf("%d jobs left in the work stream", c)
	}
}

func TestAnalysisDone(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			e := startNode(t, db)
			dir := t.TempDir()
			study, series := phantomSeries(t, dir, 1)
			fake := &fakeAnalyzer{flag: true}
			w := e.worker(t, "w1", fake)
			run(t, w)
			e.push(t, dir)
			s := e.waitState(t, series, 30*time.Second, index.Done, index.Failed)
			if s.State != index.Done || !strings.HasPrefix(s.Reason, "flagged") {
				t.Fatalf("series %s %q", s.State, s.Reason)
			}
			if !strings.HasPrefix(fake.dirs[0], e.node.Source.DataDir) {
				t.Errorf("analysed files in %s, not the node's files", fake.dirs[0])
			}
			ctx := context.Background()
			rows, err := e.index.Analyses(ctx, series)
			if err != nil || len(rows) != 1 {
				t.Fatalf("analyses %+v %v", rows, err)
			}
			r := rows[0]
			if r.Ear != "R" || r.Status != StatusFlagged || !r.Flagged || r.StudyInstanceUID != study || r.Worker != "w1" ||
				r.VolumeMM3 == nil || *r.VolumeMM3 <= 0 || len(r.Helicotrema) != 3 || r.ModelSHA256 != fake.Model().SHA256 {
				t.Errorf("row %+v", r)
			}
			var tm map[string]float64
			if err := json.Unmarshal([]byte(r.Timings), &tm); err != nil {
				t.Fatal(err)
			}
			for _, stage := range []string{"input", "roi", "infer", "write", "store"} {
				if _, ok := tm[stage]; !ok {
					t.Errorf("timings %s lack %s", r.Timings, stage)
				}
			}
			objs, err := e.index.ResultObjects(ctx, series)
			if err != nil || len(objs) != 3 {
				t.Fatalf("result objects %+v %v", objs, err)
			}
			kinds := map[string]bool{}
			for _, o := range objs {
				kinds[o.Kind] = true
			}
			if !kinds[index.KindSEG] || !kinds[index.KindSR] || !kinds[index.KindKOSFlag] {
				t.Errorf("kinds %v, want seg, sr and the peer-review KOS", kinds)
			}
			isResult := scp.IsResult(e.index)
			for _, o := range objs {
				if o.ForDiagnosis {
					t.Errorf("%s of a not-for-diagnosis model marked for diagnosis", o.Kind)
				}
				// The node stored the object and tells it is a result.
				if ok, err := e.index.HasInstance(ctx, o.SOPInstanceUID, 1); !ok || err != nil {
					t.Errorf("%s %s not at the node: %v", o.Kind, o.SOPInstanceUID, err)
				}
				if !isResult(files.Meta{SOPClassUID: o.SOPClassUID, SOPInstanceUID: o.SOPInstanceUID}, nil) {
					t.Errorf("%s not recognised as a result", o.Kind)
				}
			}
			if isResult(files.Meta{SOPClassUID: results.SegmentationStorage, SOPInstanceUID: "2.25.99"}, nil) {
				t.Error("an unrecorded SEG counts as a result")
			}
			done := e.lastEvent(t, e.topo.AnalysisDoneSubject())
			flagged := e.lastEvent(t, e.topo.AnalysisFlaggedSubject())
			for _, ev := range []Event{done, flagged} {
				if ev.SeriesInstanceUID != series || ev.Status != StatusFlagged || len(ev.Ears) != 1 || !ev.Ears[0].Flagged ||
					ev.SEG == "" || ev.SR == "" || ev.KOS == "" || ev.ForDiagnosis {
					t.Errorf("event %+v", ev)
				}
			}
			e.waitEmpty(t, 5*time.Second)
			var m dto.Metric
			w.Metrics.Analyses.WithLabelValues(StatusFlagged).Write(&m)
			if n := m.GetCounter().GetValue(); n != 1 {
				t.Errorf("otonode_worker_analyses_total{status=flagged} = %v", n)
			}
		})
	}
}

// TestNewRevisionRejectsOldResults: a late instance opens revision 2; its
// analysis sends an IOCM rejection note for revision 1's SEG and SR, and
// its SR names revision 1's SR as replaced.
func TestNewRevisionRejectsOldResults(t *testing.T) {
	e := startNode(t, "sqlite")
	dir := t.TempDir()
	_, series := phantomSeries(t, dir, 8)
	late := t.TempDir()
	ents, _ := os.ReadDir(dir)
	last := ents[len(ents)-1].Name()
	if err := os.Rename(filepath.Join(dir, last), filepath.Join(late, last)); err != nil {
		t.Fatal(err)
	}
	run(t, e.worker(t, "w1", &fakeAnalyzer{}))
	e.push(t, dir)
	if s := e.waitState(t, series, 30*time.Second, index.Done, index.Failed); s.State != index.Done || s.Revision != 1 {
		t.Fatalf("revision 1: %s %q", s.State, s.Reason)
	}
	e.push(t, late)
	s := e.waitState(t, series, 30*time.Second, index.Done, index.Failed)
	for s.Revision != 2 || s.State != index.Done {
		time.Sleep(200 * time.Millisecond)
		s = e.waitState(t, series, 30*time.Second, index.Done, index.Failed)
	}
	objs, _ := e.index.ResultObjects(context.Background(), series)
	byRev := map[int]map[string]string{}
	for _, o := range objs {
		if byRev[o.Revision] == nil {
			byRev[o.Revision] = map[string]string{}
		}
		byRev[o.Revision][o.Kind] = o.SOPInstanceUID
	}
	rej := byRev[2][index.KindKOSRejection]
	if len(byRev[1]) != 2 || len(byRev[2]) != 3 || rej == "" {
		t.Fatalf("objects by revision %v", byRev)
	}
	// The rejection note the node stored references revision 1's objects.
	b := storedFile(t, e, rej)
	for _, uid := range []string{byRev[1][index.KindSEG], byRev[1][index.KindSR]} {
		if !strings.Contains(string(b), uid) {
			t.Errorf("rejection note lacks %s", uid)
		}
	}
	if !strings.Contains(string(storedFile(t, e, byRev[2][index.KindSR])), byRev[1][index.KindSR]) {
		t.Error("the new SR does not name the SR it replaces")
	}
}

// storedFile reads the node's file of an instance (named for its SOP
// Instance UID under the node's instance folder).
func storedFile(t *testing.T, e *env, sop string) []byte {
	t.Helper()
	// The node writes instance files in the background; flush them.
	if err := e.node.Files.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var loc string
	filepath.WalkDir(e.node.Source.DataDir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), sop+".") {
			loc = path
		}
		return nil
	})
	if loc == "" {
		ins, _ := e.index.HasInstance(context.Background(), sop, 1)
		t.Fatalf("no file of %s under %s (indexed: %v)", sop, e.node.Source.DataDir, ins)
	}
	b, err := os.ReadFile(loc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestResultsAreDeterministic: the same analysis written twice gives the
// same bytes and UIDs (a re-run after a crash sends the same objects).
func TestResultsAreDeterministic(t *testing.T) {
	dir := t.TempDir()
	_, series := phantomSeries(t, dir, 2)
	ents, _ := os.ReadDir(dir)
	var paths []string
	for _, f := range ents {
		paths = append(paths, filepath.Join(dir, f.Name()))
	}
	fake := &fakeAnalyzer{}
	res, err := fake.Analyze(context.Background(), paths)
	if err != nil {
		t.Fatal(err)
	}
	job := events.SeriesComplete{SeriesInstanceUID: series, Revision: 1, CompletedAt: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}
	w := &Worker{}
	src, err := results.ReadSource(context.Background(), paths)
	if err != nil {
		t.Fatal(err)
	}
	seg1, sr1, err := w.writer(job, res.Model).Write(src, res, nil)
	if err != nil {
		t.Fatal(err)
	}
	seg2, sr2, err := w.writer(job, res.Model).Write(src, res, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(seg1.File) != string(seg2.File) || string(sr1.File) != string(sr2.File) {
		t.Error("the same analysis written twice differs")
	}
	job.Revision = 2
	seg3, _, _ := w.writer(job, res.Model).Write(src, res, nil)
	if seg3.SOPInstanceUID == seg1.SOPInstanceUID {
		t.Error("a new revision reuses the SEG's SOP Instance UID")
	}
}

// TestTwoWorkersShareOneStream: two workers on one stream, every job
// published twice (as the node's reconciler may): both work, no revision
// is analysed twice or by both.
func TestTwoWorkersShareOneStream(t *testing.T) {
	e := startNode(t, "postgres")
	fake := &fakeAnalyzer{delay: 800 * time.Millisecond}
	var byWorker [2]atomic.Int32
	for i := range 2 {
		w := e.worker(t, fmt.Sprintf("w%d", i+1), fake)
		w.AfterAnalyze = func(string) { byWorker[i].Add(1) }
		run(t, w)
	}
	const n = 4
	var all []string
	for i := range n {
		dir := t.TempDir()
		_, series := phantomSeries(t, dir, uint64(10+i))
		all = append(all, series)
		e.push(t, dir)
	}
	// Duplicates of every job under another message id.
	for _, series := range all {
		e.waitState(t, series, 30*time.Second, index.Queued, index.Analysing, index.Done)
		se, err := e.index.Series(context.Background(), series)
		if err != nil {
			t.Fatal(err)
		}
		m, err := scp.WorkMessage(e.topo, e.node.Source, se)
		if err != nil {
			t.Fatal(err)
		}
		msg := nats.NewMsg(m.Subject)
		msg.Data = m.Data
		if _, err := e.js.PublishMsg(context.Background(), msg, jetstream.WithMsgID(m.MsgID+"/dup")); err != nil {
			t.Fatal(err)
		}
	}
	for _, series := range all {
		if s := e.waitState(t, series, 60*time.Second, index.Done, index.Failed); s.State != index.Done {
			t.Fatalf("series %s %s %q", series, s.State, s.Reason)
		}
		rows, _ := e.index.Analyses(context.Background(), series)
		objs, _ := e.index.ResultObjects(context.Background(), series)
		if len(rows) != 1 || len(objs) != 2 {
			t.Errorf("series %s: %d analysis rows, %d result objects", series, len(rows), len(objs))
		}
	}
	if fake.overlap {
		t.Error("one revision was analysed by two workers at once")
	}
	if fake.count() != n {
		t.Errorf("%d analyses for %d series", fake.count(), n)
	}
	if byWorker[0].Load() == 0 || byWorker[1].Load() == 0 {
		t.Errorf("load not shared: %d and %d", byWorker[0].Load(), byWorker[1].Load())
	}
	// The duplicates come back after the lease and are dropped.
	e.waitEmpty(t, 15*time.Second)
}

func TestPermanentErrors(t *testing.T) {
	tests := []struct {
		name   string
		fake   *fakeAnalyzer
		status string
		reason string
	}{
		{"not analysable", &fakeAnalyzer{err: fmt.Errorf("%w: voxel size 2 mm", analysis.ErrInput)},
			analysis.StatusNotAnalysable, "voxel size 2 mm"},
		{"no inner ear", &fakeAnalyzer{status: analysis.StatusNoInnerEar}, StatusFailed, "no inner ear found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startNode(t, "sqlite")
			dir := t.TempDir()
			_, series := phantomSeries(t, dir, 3)
			run(t, e.worker(t, "w1", tt.fake))
			e.push(t, dir)
			s := e.waitState(t, series, 30*time.Second, index.Failed, index.Done)
			if s.State != index.Failed || !strings.Contains(s.Reason, tt.reason) {
				t.Fatalf("series %s %q", s.State, s.Reason)
			}
			rows, _ := e.index.Analyses(context.Background(), series)
			if len(rows) != 1 || rows[0].Status != tt.status || rows[0].Ear != "" || !strings.Contains(rows[0].Reason, tt.reason) {
				t.Errorf("rows %+v", rows)
			}
			if objs, _ := e.index.ResultObjects(context.Background(), series); len(objs) != 0 {
				t.Errorf("result objects of a failed analysis: %+v", objs)
			}
			if ev := e.lastEvent(t, e.topo.AnalysisFailedSubject()); ev.SeriesInstanceUID != series || ev.Status != tt.status {
				t.Errorf("failed event %+v", ev)
			}
			// Terminated at the first delivery, with a copy in the DLQ.
			if tt.fake.count() != 1 {
				t.Errorf("analysed %d times", tt.fake.count())
			}
			deadline := time.Now().Add(5 * time.Second)
			for streamCount(t, e.js, e.topo.DeadLetterStream()) != 1 && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if c := streamCount(t, e.js, e.topo.DeadLetterStream()); c != 1 {
				t.Errorf("%d dead letters", c)
			}
			e.waitEmpty(t, 5*time.Second)
		})
	}
}

// TestTransientErrorsEndInDeadLetters: a job that fails every time is
// retried MaxDeliver times and then moved to the DLQ by the node, which
// marks the series failed.
func TestTransientErrorsEndInDeadLetters(t *testing.T) {
	e := startNode(t, "sqlite")
	dir := t.TempDir()
	_, series := phantomSeries(t, dir, 4)
	fake := &fakeAnalyzer{err: errTransient}
	run(t, e.worker(t, "w1", fake))
	e.push(t, dir)
	s := e.waitState(t, series, 30*time.Second, index.Failed, index.Done)
	if !strings.Contains(s.Reason, "dead letter (max_deliveries)") {
		t.Errorf("reason %q", s.Reason)
	}
	if fake.count() != 3 {
		t.Errorf("%d attempts, want MaxDeliver=3", fake.count())
	}
	if c := streamCount(t, e.js, e.topo.DeadLetterStream()); c != 1 {
		t.Errorf("%d dead letters", c)
	}
}

// TestRemoteWorkerFetchesByCGET: a worker that cannot read the node's files
// fetches the series over C-GET and makes the same objects.
func TestRemoteWorkerFetchesByCGET(t *testing.T) {
	e := startNode(t, "sqlite")
	dir := t.TempDir()
	_, series := phantomSeries(t, dir, 5)
	fake := &fakeAnalyzer{}
	w := e.worker(t, "remote", fake)
	w.DataDir = "-"
	w.TempDir = t.TempDir()
	run(t, w)
	e.push(t, dir)
	if s := e.waitState(t, series, 30*time.Second, index.Done, index.Failed); s.State != index.Done {
		t.Fatalf("series %s %q", s.State, s.Reason)
	}
	objs, _ := e.index.ResultObjects(context.Background(), series)
	if len(objs) != 2 {
		t.Fatalf("result objects %+v", objs)
	}
	if fake.dirs[0] == "" || !strings.HasPrefix(fake.dirs[0], w.TempDir) {
		t.Errorf("analysed files in %q, not a C-GET download under %s", fake.dirs, w.TempDir)
	}
	ents, _ := os.ReadDir(w.TempDir)
	if len(ents) != 0 {
		t.Errorf("C-GET download left behind: %d entries", len(ents))
	}
	// A worker reading the original files writes the same SEG bytes.
	files, _ := os.ReadDir(dir)
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join(dir, f.Name()))
	}
	res, err := (&fakeAnalyzer{}).Analyze(context.Background(), paths)
	if err != nil {
		t.Fatal(err)
	}
	src, err := results.ReadSource(context.Background(), paths)
	if err != nil {
		t.Fatal(err)
	}
	se, _ := e.index.Series(context.Background(), series)
	job := events.SeriesComplete{SeriesInstanceUID: series, Revision: 1, CompletedAt: se.CompletedAt}
	seg, _, err := w.writer(job, res.Model).Write(src, res, &results.Extras{})
	if err != nil {
		t.Fatal(err)
	}
	// The node writes its own file meta (with the sender's AE title).
	stored, local := dataSet(t, storedFile(t, e, seg.SOPInstanceUID)), dataSet(t, seg.File)
	if !bytes.Equal(stored, local) {
		t.Errorf("the remote worker's SEG data set (%d bytes) differs from a local one's (%d bytes)", len(stored), len(local))
	}
}

// dataSet is a Part 10 file without its preamble and file meta.
func dataSet(t *testing.T, file []byte) []byte {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(file))
	if _, err := dimse.ReadFileMeta(br); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	return rest
}

// TestMain lets the test binary run as a worker process (the kill -9 and
// crash tests).
func TestMain(m *testing.M) {
	if os.Getenv("OTONODE_TEST_WORKER") != "" {
		os.Exit(childWorker())
	}
	os.Exit(m.Run())
}

func childWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var x *index.Index
	var err error
	if dsn := os.Getenv("OTONODE_TEST_DB"); strings.HasPrefix(dsn, "postgres://") {
		x, err = index.OpenPostgres(ctx, dsn)
	} else {
		x, err = index.OpenSQLite(ctx, dsn)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	js, _ := jetstream.New(nc)
	delay, _ := time.ParseDuration(os.Getenv("OTONODE_TEST_DELAY"))
	var a Analyzer = &fakeAnalyzer{delay: delay}
	if os.Getenv("OTONODE_TEST_CRASH") != "" {
		a = crashingAnalyzer{}
	}
	w := &Worker{ID: os.Getenv("OTONODE_TEST_WORKER"), JS: js, Topology: events.Topology{Prefix: os.Getenv("OTONODE_TEST_PREFIX")},
		Index: x, Analyzer: a, AckWait: 3 * time.Second, Heartbeat: 500 * time.Millisecond, MaxDeliver: 3,
		RetryDelay: 300 * time.Millisecond}
	w.Run(ctx)
	return 0
}

// crashingAnalyzer takes its process down, as a crash in ONNX Runtime would.
type crashingAnalyzer struct{}

func (crashingAnalyzer) Model() analysis.Model { return (&fakeAnalyzer{}).Model() }
func (crashingAnalyzer) Analyze(context.Context, []string) (*analysis.Result, error) {
	os.Exit(3)
	return nil, nil
}

// child starts the test binary as a worker process.
func (e *env) child(t *testing.T, id string, extra ...string) *exec.Cmd {
	t.Helper()
	db := e.cfg.Database
	if db == "" {
		db = filepath.Join(e.cfg.DataDir, "index.db")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "OTONODE_TEST_WORKER="+id, "OTONODE_TEST_DB="+db, "OTONODE_TEST_PREFIX="+e.topo.Prefix)
	cmd.Env = append(cmd.Env, extra...)
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// TestKillWorkerMidAnalysis: kill -9 a worker process while it analyses;
// the job comes back after AckWait, another worker takes the expired claim
// over, and exactly one set of results exists.
func TestKillWorkerMidAnalysis(t *testing.T) {
	e := startNode(t, "sqlite")
	dir := t.TempDir()
	_, series := phantomSeries(t, dir, 6)
	cmd := e.child(t, "doomed", "OTONODE_TEST_DELAY=60s")
	e.push(t, dir)
	e.waitState(t, series, 30*time.Second, index.Analysing)
	model := (&fakeAnalyzer{}).Model()
	key := index.ClaimKey{SeriesInstanceUID: series, Revision: 1, ModelSHA256: model.SHA256}
	if c, err := e.index.GetClaim(context.Background(), key); err != nil || c.Worker != "doomed" {
		t.Fatalf("claim %+v %v", c, err)
	}
	time.Sleep(time.Second) // a heartbeat or two
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed := time.Now()
	fake := &fakeAnalyzer{}
	run(t, e.worker(t, "survivor", fake))
	s := e.waitState(t, series, 30*time.Second, index.Done, index.Failed)
	if s.State != index.Done {
		t.Fatalf("series %s %q", s.State, s.Reason)
	}
	t.Logf("done %.1f s after the kill", time.Since(killed).Seconds())
	c, err := e.index.GetClaim(context.Background(), key)
	if err != nil || c.Worker != "survivor" || c.Attempt != 2 || c.Outcome != StatusDone {
		t.Errorf("claim %+v %v", c, err)
	}
	rows, _ := e.index.Analyses(context.Background(), series)
	objs, _ := e.index.ResultObjects(context.Background(), series)
	if len(rows) != 1 || len(objs) != 2 || fake.count() != 1 {
		t.Errorf("%d rows, %d objects, %d analyses by the survivor", len(rows), len(objs), fake.count())
	}
}

// TestCrashEveryAttempt: a worker process that dies on every attempt (and
// is restarted, as serve's supervisor does) leaves the job to the node's
// dead-letter mover: the job ends in the DLQ and the series failed.
func TestCrashEveryAttempt(t *testing.T) {
	e := startNode(t, "sqlite")
	dir := t.TempDir()
	_, series := phantomSeries(t, dir, 7)
	e.push(t, dir)
	deadline := time.Now().Add(60 * time.Second)
	crashes := 0
	for time.Now().Before(deadline) {
		s, err := e.index.Series(context.Background(), series)
		if err == nil && s.State == index.Failed {
			break
		}
		cmd := e.child(t, fmt.Sprintf("crashy%d", crashes), "OTONODE_TEST_CRASH=1")
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
			crashes++
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	s := e.waitState(t, series, 10*time.Second, index.Failed)
	if !strings.Contains(s.Reason, "max_deliveries") {
		t.Errorf("reason %q", s.Reason)
	}
	if crashes != 3 {
		t.Errorf("%d crashes, want MaxDeliver=3", crashes)
	}
	if c := streamCount(t, e.js, e.topo.DeadLetterStream()); c != 1 {
		t.Errorf("%d dead letters", c)
	}
	e.waitEmpty(t, 5*time.Second)
}
