package worker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otonode/otonode/analysis"
	"github.com/otonode/otonode/analysis/phantom"
	"github.com/otonode/otonode/analysis/volume"
	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/scp"
	"github.com/otonode/otonode/scp/config"
	"github.com/otonode/otonode/scp/events"
	"github.com/otonode/otonode/store/index"

	"github.com/otonode/otonode/internal/testenv"
)

const natsURL = "nats://127.0.0.1:4222"

// need stops the test when a service it needs is missing (testenv.Require).
func need(t testing.TB, what string, err error) { t.Helper(); testenv.Require(t, what, err) }

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newPostgres creates a database for the test and returns its DSN.
func newPostgres(t testing.TB) string { return testenv.Postgres(t, "otonode_worker") }

// testJS connects to the test NATS server and deletes the topology's
// streams at cleanup.
func testJS(t testing.TB, topo events.Topology) jetstream.JetStream {
	nc, err := nats.Connect(natsURL, nats.Timeout(3*time.Second))
	need(t, "NATS at 127.0.0.1:4222", err)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer nc.Close()
		for _, s := range []string{topo.WorkStream(), topo.EventsStream(), topo.DeadLetterStream(), topo.AdvisoryStream()} {
			js.DeleteStream(context.Background(), s)
		}
	})
	return js
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func testLogger(t testing.TB, lvl slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: lvl}))
}

// env is a running node (on the test NATS server, with its own prefix)
// and a handle on its database.
type env struct {
	cfg   config.Config
	node  *scp.Node
	index *index.Index
	js    jetstream.JetStream
	topo  events.Topology
}

// startNode starts a node; database "" is SQLite under the data directory,
// "postgres" a fresh PostgreSQL database.
func startNode(t *testing.T, database string) *env {
	t.Helper()
	c := config.Default()
	c.DataDir = filepath.Join(t.TempDir(), "data")
	c.DICOM.Host = "127.0.0.1"
	c.DICOM.Port = freePort(t)
	c.HTTP.Listen = ""
	c.NATS.URL = natsURL
	c.NATS.Prefix = "w" + testenv.RandHex(4)
	c.Completion.QuietPeriod = 200 * time.Millisecond
	c.Completion.StudySettle = 200 * time.Millisecond
	c.Storage.MinFreeBytes = 0
	c.Storage.Fsync = false
	c.Selection.MinInstances = 4
	if database == "postgres" {
		c.Database = newPostgres(t)
	}
	e := &env{cfg: c, topo: events.Topology{Prefix: c.NATS.Prefix}}
	e.js = testJS(t, e.topo)
	ctx, cancel := context.WithCancel(context.Background())
	n, err := scp.New(ctx, c, testLogger(t, slog.LevelWarn))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	e.node = n
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	})
	if c.Database == "" {
		e.index, err = index.OpenSQLite(ctx, filepath.Join(c.DataDir, "index.db"))
	} else {
		e.index, err = index.OpenPostgres(ctx, c.Database)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.index.Close() })
	return e
}

// worker returns a worker on the node's stream with short timings.
func (e *env) worker(t testing.TB, id string, a Analyzer) *Worker {
	return &Worker{ID: id, JS: e.js, Topology: e.topo, Index: e.index, Analyzer: a,
		AckWait: 3 * time.Second, Heartbeat: 500 * time.Millisecond, RetryDelay: 300 * time.Millisecond,
		MaxDeliver: 3, Logger: testLogger(t, slog.LevelInfo)}
}

// run runs w until the test ends.
func run(t testing.TB, w *Worker) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// phantomSeries writes a small phantom CT (an ear, 48×48×24 at 0.25 mm)
// with fresh UIDs into dir and returns the study and series UIDs.
func phantomSeries(t *testing.T, dir string, seed uint64) (study, series string) {
	t.Helper()
	v, err := phantom.ParseVariant("right")
	if err != nil {
		t.Fatal(err)
	}
	v.Size = [3]int{48, 48, 24}
	v.SpacingMM = [3]float64{0.25, 0.25, 0.25}
	c, err := phantom.Generate(context.Background(), seed, v, phantom.Options{NoSupersample: true, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Fresh identity per test: the phantom's UIDs depend on the seed only.
	c.Info.Identity.StudyInstanceUID = "2.25." + decimal(t)
	c.Info.Identity.SeriesUID = "2.25." + decimal(t)
	if _, err := phantom.WriteSeries(context.Background(), dir, c.CT, &c.Info, phantom.SeriesOptions{Workers: 1}); err != nil {
		t.Fatal(err)
	}
	return c.Info.Identity.StudyInstanceUID, c.Info.Identity.SeriesUID
}

func decimal(t testing.TB) string {
	b := make([]byte, 12)
	rand.Read(b)
	var s strings.Builder
	for i, c := range b {
		if i == 0 && c%9 == 0 {
			c++
		}
		fmt.Fprintf(&s, "%d", int(c)%9+1)
	}
	return s.String()
}

// push sends the files of dir to the node by C-STORE.
func (e *env) push(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := dimse.Dial(context.Background(), fmt.Sprintf("127.0.0.1:%d", e.cfg.DICOM.Port), dimse.DialOptions{
		CallingAETitle: "CT1", CalledAETitle: e.cfg.DICOM.AETitle,
		Proposals: []dimse.Proposal{{AbstractSyntax: dimse.CTImageStorage, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range ents {
		if _, err := a.StoreFile(context.Background(), filepath.Join(dir, f.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// waitState waits for the series' current revision to reach one of states.
func (e *env) waitState(t *testing.T, series string, timeout time.Duration, states ...index.State) index.Series {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var s index.Series
	var err error
	for time.Now().Before(deadline) {
		s, err = e.index.Series(context.Background(), series)
		if err == nil {
			for _, st := range states {
				if s.State == st {
					return s
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("series %s: %s (%q), err %v; want %v", series, s.State, s.Reason, err, states)
	return s
}

// fakeAnalyzer reads the series like the real one and "segments" a fixed
// box, so the SEG and SR are real objects on the series' geometry.
type fakeAnalyzer struct {
	delay  time.Duration
	status string // "" done; or analysis.StatusNoInnerEar
	err    error
	flag   bool

	mu      sync.Mutex
	calls   int
	dirs    []string       // folder of the files of each call
	running map[string]int // series → analyses running now
	overlap bool           // two analyses of one series ran at once
}

func (f *fakeAnalyzer) Model() analysis.Model {
	return analysis.Model{Name: "fake", Version: "1", SHA256: strings.Repeat("ab", 32), NotForDiagnosis: true,
		Statement: "test model"}
}

func (f *fakeAnalyzer) Analyze(ctx context.Context, files []string) (*analysis.Result, error) {
	in, err := analysis.LoadInput(ctx, files)
	if err != nil {
		return nil, err
	}
	key := in.Layout.SeriesInstanceUID
	f.mu.Lock()
	f.calls++
	f.dirs = append(f.dirs, filepath.Dir(files[0]))
	if f.running == nil {
		f.running = map[string]int{}
	}
	f.running[key]++
	f.overlap = f.overlap || f.running[key] > 1
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running[key]--
		f.mu.Unlock()
	}()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(f.delay):
	}
	if f.err != nil {
		return nil, f.err
	}
	res := &analysis.Result{Model: f.Model(), Status: analysis.StatusDone,
		Stages: []analysis.Stage{{Name: "roi", Duration: time.Millisecond}, {Name: "ear1/infer", Duration: 2 * time.Millisecond}}}
	if f.status != "" {
		res.Status, res.Reason = f.status, "no inner ear found: test"
		return res, nil
	}
	lab := volume.New[uint8](in.CT.Grid)
	n := 0
	for k := 8; k < 16; k++ {
		for j := 20; j < 28; j++ {
			for i := 20; i < 28; i++ {
				lab.Set(i, j, k, 1)
				n++
			}
		}
	}
	sp := in.CT.Affine.Spacing()
	ear := analysis.Ear{Laterality: analysis.Right, Label: lab, VolumeMM3: float64(n) * sp[0] * sp[1] * sp[2],
		Uncertainty: 0.002}
	for _, name := range analysis.LandmarkOrder {
		mm := in.CT.Affine.Apply([3]float64{24, 24, 12})
		ear.Landmarks = append(ear.Landmarks, analysis.Landmark{Name: name, Voxel: [3]float64{24, 24, 12}, PatientMM: mm, Peak: 0.9})
	}
	if f.flag {
		ear.Flag = analysis.Flag{Raised: true, Reason: "uncertainty 0.012 above threshold 0.004"}
	}
	res.Ears = []analysis.Ear{ear}
	return res, nil
}

func (f *fakeAnalyzer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

var errTransient = errors.New("fake: transient failure")
