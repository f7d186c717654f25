package export

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/store"
	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/header"
	"github.com/otonode/otonode/store/index"

	"github.com/otonode/otonode/internal/testenv"
)

// need finds a tool (testenv.Tool: a failure under CI=true, a skip elsewhere).
func need(t testing.TB, name string) string { t.Helper(); return testenv.Tool(t, name) }

// openIndex opens a fresh index of the named backend; calling the returned
// function again opens a second handle on the same database (a restarted
// node).
func openIndex(t *testing.T, backend string) func() *index.Index {
	t.Helper()
	var open func(context.Context) (*index.Index, error)
	switch backend {
	case "sqlite":
		path := filepath.Join(t.TempDir(), "index.db")
		open = func(ctx context.Context) (*index.Index, error) { return index.OpenSQLite(ctx, path) }
	case "postgres":
		dsn := testenv.Postgres(t, "otonode_export")
		open = func(ctx context.Context) (*index.Index, error) { return index.OpenPostgres(ctx, dsn) }
	}
	return func() *index.Index {
		x, err := open(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { x.Close() })
		return x
	}
}

// each runs body against SQLite and PostgreSQL.
func each(t *testing.T, body func(t *testing.T, open func() *index.Index)) {
	for _, b := range []string{"sqlite", "postgres"} {
		t.Run(b, func(t *testing.T) { body(t, openIndex(t, b)) })
	}
}

// SOP classes of the test objects.
const (
	ctStorage  = "1.2.840.10008.5.1.4.1.1.2"
	segStorage = "1.2.840.10008.5.1.4.1.1.66.4"
	srStorage  = "1.2.840.10008.5.1.4.1.1.88.34"
	kosStorage = "1.2.840.10008.5.1.4.1.1.88.59"
)

// node is what the exporter needs of a node: its files and index, filled
// the way the node fills them (store.Ingest).
type node struct {
	t       *testing.T
	dir     string
	files   *files.Local
	idx     *index.Index
	ingest  *store.Ingest
	results map[string]bool
}

func newNode(t *testing.T, idx *index.Index) *node {
	t.Helper()
	dir := t.TempDir()
	f, err := files.Open(context.Background(), filepath.Join(dir, "instances"), files.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, dir: dir, files: f, idx: idx, results: map[string]bool{}}
	n.ingest = &store.Ingest{Files: f, Index: idx, IsResult: func(m files.Meta, _ *header.Attributes) bool { return n.results[m.SOPInstanceUID] }}
	return n
}

// element appends one explicit VR little endian string element.
func element(b []byte, group, elem uint16, vr, v string) []byte {
	if len(v)%2 == 1 {
		pad := " "
		if vr == "UI" {
			pad = "\x00"
		}
		v += pad
	}
	b = binary.LittleEndian.AppendUint16(b, group)
	b = binary.LittleEndian.AppendUint16(b, elem)
	b = append(b, vr...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// storeInstance stores a minimal instance through store.Ingest, as the
// node's C-STORE SCP does, in explicit VR little endian.
func (n *node) storeInstance(study, series, sop, class, modality string, number int) {
	n.t.Helper()
	n.store(dataSet(study, series, sop, class, modality, number), sop, class, dimse.ExplicitVRLittleEndian)
}

// storeDeflated stores a minimal instance in deflated explicit VR little
// endian (PS3.5 A.5: the data set is one raw deflate stream).
func (n *node) storeDeflated(study, series, sop, class, modality string, number int) {
	n.t.Helper()
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestCompression)
	w.Write(dataSet(study, series, sop, class, modality, number))
	w.Close()
	n.store(b.Bytes(), sop, class, dimse.DeflatedExplicitVRLittleEndian)
}

func (n *node) store(ds []byte, sop, class, ts string) {
	n.t.Helper()
	_, err := n.ingest.Store(context.Background(), bytes.NewReader(ds),
		files.Meta{SOPClassUID: class, SOPInstanceUID: sop, TransferSyntaxUID: ts, SourceAETitle: "TEST"})
	if err != nil {
		n.t.Fatal(err)
	}
}

func dataSet(study, series, sop, class, modality string, number int) []byte {
	var ds []byte
	ds = element(ds, 0x0008, 0x0016, "UI", class)
	ds = element(ds, 0x0008, 0x0018, "UI", sop)
	ds = element(ds, 0x0008, 0x0060, "CS", modality)
	ds = element(ds, 0x0010, 0x0010, "PN", "Export^Test")
	ds = element(ds, 0x0010, 0x0020, "LO", "EXP-1")
	ds = element(ds, 0x0020, 0x000D, "UI", study)
	ds = element(ds, 0x0020, 0x000E, "UI", series)
	return element(ds, 0x0020, 0x0013, "IS", strconv.Itoa(number))
}

// result records a result object of revision 1 as the worker does, then
// stores it.
func (n *node) result(source, sop, class, kind string, forDiagnosis bool) {
	n.t.Helper()
	n.resultOf(source, 1, sop, class, kind, forDiagnosis)
}

// resultOf records a result object of a revision, then stores it.
func (n *node) resultOf(source string, revision int, sop, class, kind string, forDiagnosis bool) {
	n.t.Helper()
	err := n.idx.RecordResultObject(context.Background(), index.ResultObject{SOPInstanceUID: sop, SOPClassUID: class, Kind: kind,
		SeriesInstanceUID: source, Revision: revision, ModelSHA256: "ab12", ForDiagnosis: forDiagnosis}, time.Now())
	if err != nil {
		n.t.Fatal(err)
	}
	n.results[sop] = true
	n.storeInstance("1.2.826.0.1.7", sop+".0", sop, class, map[string]string{segStorage: "SEG", srStorage: "SR", kosStorage: "KO"}[class], 1)
}

// scene is one analysed CT series of three slices with a SEG for diagnosis
// and an SR not for diagnosis.
type scene struct {
	source       string
	ct           []string
	seg, sr, kos string
}

func (n *node) scene(prefix string) scene {
	s := scene{source: prefix + ".1"}
	for i := 1; i <= 3; i++ {
		sop := fmt.Sprintf("%s.1.%d", prefix, i)
		n.storeInstance("1.2.826.0.1.7", s.source, sop, ctStorage, "CT", i)
		s.ct = append(s.ct, sop)
	}
	s.seg, s.sr = prefix+".9.1", prefix+".8.1"
	n.result(s.source, s.seg, segStorage, index.KindSEG, true)
	n.result(s.source, s.sr, srStorage, index.KindSR, false)
	return s
}

// freePort returns a loopback port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// storeSCP is dcmtk's storescp: a real C-STORE SCP that writes every
// instance it receives to a file of its own (+uf), so re-sends show.
type storeSCP struct {
	t    *testing.T
	ae   string
	port int
	dir  string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	mu   sync.Mutex
}

func newStoreSCP(t *testing.T, ae string, port int) *storeSCP {
	s := &storeSCP{t: t, ae: ae, port: port, dir: t.TempDir()}
	return s
}

// start runs storescp, with extra options if given, and waits until it
// accepts connections.
func (s *storeSCP) start(extra ...string) {
	s.t.Helper()
	bin := need(s.t, "storescp")
	s.log = &bytes.Buffer{}
	args := append(append([]string{"-v", "+uf"}, extra...), "-aet", s.ae, "-od", s.dir, strconv.Itoa(s.port))
	s.cmd = exec.Command(bin, args...)
	s.cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	s.cmd.Stdout, s.cmd.Stderr = syncWriter{&s.mu, s.log}, syncWriter{&s.mu, s.log}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(s.stop)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port)); err == nil {
			c.Close()
			return
		}
	}
	s.t.Fatalf("storescp on %d did not start:\n%s", s.port, s.output())
}

// stop kills storescp (a PACS that goes away).
func (s *storeSCP) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	s.cmd.Wait()
	s.cmd = nil
}

func (s *storeSCP) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// associations counts the associations storescp accepted so far (the
// readiness probe connects but never associates).
func (s *storeSCP) associations() int {
	return bytes.Count([]byte(s.output()), []byte("Association Acknowledged"))
}

// received counts the instances storescp wrote, by SOP Instance UID.
func (s *storeSCP) received() map[string]int {
	s.t.Helper()
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		s.t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(s.dir, e.Name()))
		if err != nil {
			s.t.Fatal(err)
		}
		fm, err := dimse.ReadFileMeta(bufio.NewReader(f))
		f.Close()
		if err != nil {
			continue // a file storescp is still writing
		}
		out[fm.MediaStorageSOPInstanceUID]++
	}
	return out
}

type syncWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// logBuffer collects slog lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out after %v waiting for %s", d, what)
}
