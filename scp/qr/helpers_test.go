package qr_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/dimse/dimsetest"
	"github.com/otonode/otonode/scp/qr"
	"github.com/otonode/otonode/store"
	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/header"
	"github.com/otonode/otonode/store/index"

	"github.com/otonode/otonode/internal/testenv"
)

const ctImage = "1.2.840.10008.5.1.4.1.1.2"

// inst is one instance of the test fixture.
type inst struct {
	pid, name, birth, study, date, time, acc, series, modality, sop string
	n                                                               int
}

// UIDs of the fixture, under a UUID-derived root.
const root = "2.25.1000"

var fixture = []inst{
	{"P1", "Müller^Jürgen", "19700101", root + ".1", "20260105", "101500", "ACC1", root + ".1.1", "CT", root + ".1.1.1", 1},
	{"P1", "Müller^Jürgen", "19700101", root + ".1", "20260105", "101500", "ACC1", root + ".1.1", "CT", root + ".1.1.2", 2},
	{"P1", "Müller^Jürgen", "19700101", root + ".1", "20260105", "101500", "ACC1", root + ".1.1", "CT", root + ".1.1.3", 3},
	{"P1", "Müller^Jürgen", "19700101", root + ".1", "20260105", "101500", "ACC1", root + ".1.2", "SEG", root + ".1.2.1", 1},
	{"P1", "Müller^Jürgen", "19700101", root + ".2", "20261127", "083000", "ACC2", root + ".2.1", "CT", root + ".2.1.1", 1},
	{"P2", "Doe^Jane", "19800202", root + ".3", "20250630", "120000", "ACC3", root + ".3.1", "MR", root + ".3.1.1", 1},
	{"P2", "Doe^Jane", "19800202", root + ".3", "20250630", "120000", "ACC3", root + ".3.1", "MR", root + ".3.1.2", 2},
}

// dataSet encodes an instance as an explicit VR little endian CT data set
// with a 4×4 16-bit image.
func dataSet(in inst) []byte {
	var b []byte
	add := func(tag uint32, vr, v string) {
		if len(v)%2 == 1 {
			if vr == "UI" {
				v += "\x00"
			} else {
				v += " "
			}
		}
		b = binary.LittleEndian.AppendUint16(b, uint16(tag>>16))
		b = binary.LittleEndian.AppendUint16(b, uint16(tag))
		b = append(b, vr...)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
		b = append(b, v...)
	}
	us := func(tag uint32, v uint16) {
		b = binary.LittleEndian.AppendUint32(b, tag<<16|tag>>16)
		b = append(b, 'U', 'S', 2, 0)
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	add(0x00080005, "CS", "ISO_IR 192")
	add(0x00080016, "UI", ctImage)
	add(0x00080018, "UI", in.sop)
	add(0x00080020, "DA", in.date)
	add(0x00080030, "TM", in.time)
	add(0x00080050, "SH", in.acc)
	add(0x00080060, "CS", in.modality)
	add(0x00100010, "PN", in.name)
	add(0x00100020, "LO", in.pid)
	add(0x00100030, "DA", in.birth)
	add(0x0020000D, "UI", in.study)
	add(0x0020000E, "UI", in.series)
	add(0x00200013, "IS", fmt.Sprint(in.n))
	add(0x00280004, "CS", "MONOCHROME2")
	us(0x00280010, 4)
	us(0x00280011, 4)
	us(0x00280100, 16)
	us(0x00280101, 12)
	us(0x00280102, 11)
	us(0x00280103, 0)
	b = append(b, 0xE0, 0x7F, 0x10, 0x00, 'O', 'W', 0, 0, 32, 0, 0, 0)
	for i := range 16 {
		b = binary.LittleEndian.AppendUint16(b, uint16(100*in.n+i))
	}
	return b
}

// node is a Q/R SCP over a fresh data directory and index.
type node struct {
	svc *qr.Service
	srv *dimsetest.Server
	idx *index.Index
	fs  *files.Local
	dir string
}

// backends opens a fresh index per database: SQLite always, PostgreSQL
// at 127.0.0.1:5432 (a failure under CI when absent, else skipped).
var backends = []struct {
	name string
	open func(t *testing.T) *index.Index
}{
	{"sqlite", func(t *testing.T) *index.Index {
		x, err := index.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "index.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { x.Close() })
		return x
	}},
	{"postgres", func(t *testing.T) *index.Index {
		dsn := newPostgres(t)
		x, err := index.OpenPostgres(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { x.Close() })
		return x
	}},
}

// newNode ingests the fixture (and extra Part-10 files) through
// store.Ingest and serves it.
func newNode(t *testing.T, idx *index.Index, extra ...string) *node {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	fs, err := files.Open(ctx, dir, files.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := &store.Ingest{Files: fs, Index: idx}
	for _, in := range fixture {
		m := files.Meta{SOPClassUID: ctImage, SOPInstanceUID: in.sop, TransferSyntaxUID: dimse.ExplicitVRLittleEndian, SourceAETitle: "CT1"}
		if _, err := g.Store(ctx, bytes.NewReader(dataSet(in)), m); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range extra {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(f)
		fm, err := dimse.ReadFileMeta(br)
		if err != nil {
			t.Fatal(err)
		}
		m := files.Meta{SOPClassUID: fm.MediaStorageSOPClassUID, SOPInstanceUID: fm.MediaStorageSOPInstanceUID, TransferSyntaxUID: fm.TransferSyntaxUID}
		if _, err := g.Store(ctx, br, m); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		f.Close()
	}
	n := &node{idx: idx, fs: fs, dir: dir}
	n.srv = newServer(t, idx, fs, &n.svc)
	return n
}

// newServer serves the Q/R service over idx and fs, wired as the node
// wires it: Verification, the Q/R classes, and storage classes with the
// SCP role for C-GET.
func newServer(t testing.TB, idx *index.Index, fs *files.Local, svc **qr.Service) *dimsetest.Server {
	*svc = qr.New(idx, fs, qr.Options{AETitle: "OTONODE"})
	mux := dimse.NewServeMux()
	(*svc).Register(mux)
	storage := []dimse.Syntax{{AbstractSyntax: "", TransferSyntaxes: []string{dimse.JPEGLosslessSV1, dimse.JPEGLossless,
		dimse.RLELossless, dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}}}
	syn := append([]dimse.Syntax{{AbstractSyntax: dimse.VerificationSOPClass, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}}},
		qr.Syntaxes()...)
	syn = append(syn, qr.WithGetRole(storage)...)
	srv := dimsetest.NewServer(&dimse.Server{AETitle: "OTONODE", Syntaxes: syn, Handler: mux, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	t.Cleanup(func() { srv.Close() })
	return srv
}

func newPostgresB(b *testing.B) string { return newPostgres(b) }
func storescpB(b *testing.B, ae string, args ...string) (string, string) {
	return storescp(b, ae, args...)
}
func destination(addr string) qr.Destination { return qr.Destination{Addr: addr} }

// corpus returns a file of the shared test corpus.
func corpus(t *testing.T, rel string) string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(here), "..", "..", "..", "shared", "testdata", "dicom-corpus", rel)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("corpus file missing: %v", err)
		}
		t.Skipf("corpus file missing: %v", err)
	}
	return p
}

// tool finds a peer program: a skip outside CI, a failure under CI.
func tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed: %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// run runs a dcmtk tool with TCP_NODELAY and returns its output.
func run(t *testing.T, ctx context.Context, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, tool(t, name), args...)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// freePort returns a loopback port nobody listens on right now.
func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}

// waitListening waits until addr accepts connections.
func waitListening(t testing.TB, addr string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s never listened", addr)
}

// storescp starts dcmtk's storage SCP writing into a new folder.
func storescp(t testing.TB, ae string, args ...string) (addr, dir string) {
	t.Helper()
	dir = t.TempDir()
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, tool(t, "storescp"), append(append([]string{"-aet", ae, "-od", dir}, args...), port)...)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	addr = "127.0.0.1:" + port
	waitListening(t, addr)
	return addr, dir
}

// received lists the SOP instance UIDs and transfer syntaxes of the Part-10
// files in dir.
func received(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fm, err := dimse.ReadFileMeta(bufio.NewReader(f))
		f.Close()
		if err != nil {
			continue
		}
		out[fm.MediaStorageSOPInstanceUID] = fm.TransferSyntaxUID
	}
	return out
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// readIdentifierFile reads a Part-10 file written by findscu -X.
func readIdentifierFile(t *testing.T, path string) *dimse.Identifier {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	fm, err := dimse.ReadFileMeta(br)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	id, err := dimse.ParseIdentifier(b, fm.TransferSyntaxUID)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// newPostgres creates a database of the test's own, dropped at cleanup.
func newPostgres(t testing.TB) string { return testenv.Postgres(t, "otonode_qr") }

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func newBufReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }

// indexQuery asks the index for one key of one instance.
func indexQuery(sop, key string) index.Query {
	return index.Query{Level: index.ImageLevel, Keys: map[string]string{"SOPInstanceUID": sop, key: ""}}
}

// addRows indexes n instances of one series of study directly, without
// files: enough for C-FIND.
func addRows(t *testing.T, idx *index.Index, study string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 1; i <= n; i++ {
		num := i
		a := &header.Attributes{TransferSyntaxUID: dimse.ExplicitVRLittleEndian, PatientID: "P9", PatientName: "Many^Rows",
			StudyInstanceUID: study, SeriesInstanceUID: study + ".1", SOPInstanceUID: fmt.Sprintf("%s.1.%d", study, i),
			SOPClassUID: ctImage, Modality: "CT", InstanceNumber: &num}
		if _, err := idx.RecordInstance(ctx, index.Instance{Attrs: a, Location: "none", Version: 1, Size: 1, SHA256: "00",
			ReceivedAt: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}); err != nil {
			t.Fatal(err)
		}
	}
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
