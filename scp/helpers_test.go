package scp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otonode/otonode/scp/config"
	"github.com/otonode/otonode/scp/events"
	"github.com/otonode/otonode/store/files"

	"github.com/otonode/otonode/internal/testenv"
)

const (
	ctImage  = "1.2.840.10008.5.1.4.1.1.2"
	explicit = "1.2.840.10008.1.2.1"
)

// need stops the test when a service it needs is missing (testenv.Require).
func need(t testing.TB, what string, err error) { t.Helper(); testenv.Require(t, what, err) }

// uidRoot makes UIDs unique per test run (a UUID-derived 2.25 root).
func uidRoot() string {
	b := make([]byte, 8)
	rand.Read(b)
	return fmt.Sprintf("2.25.%d", binary.BigEndian.Uint64(b)>>1)
}

// seriesSpec describes a small generated CT series.
type seriesSpec struct {
	Study, Series string
	Number        int
	N             int
	Thickness     string
	Kernel        string
	Description   string
	Localizer     bool
	Modality      string
	SOPClass      string // default CT Image Storage
	Size          int    // rows and columns (default 16)
	Expected      int    // ImagesInAcquisition, 0: left out
}

// dataSet encodes one instance of s in explicit VR little endian, with a
// patient name that must never reach a message.
func (s seriesSpec) dataSet(i int) (sop string, b []byte) {
	sop = fmt.Sprintf("%s.%d", s.Series, i+1)
	put := func(g, e uint16, vr string, v []byte) {
		b = binary.LittleEndian.AppendUint16(b, g)
		b = binary.LittleEndian.AppendUint16(b, e)
		b = append(b, vr...)
		switch vr {
		case "OB", "OW", "SQ", "UN", "UT":
			b = append(b, 0, 0)
			b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		default:
			b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
		}
		b = append(b, v...)
	}
	str := func(g, e uint16, vr, v string) {
		if len(v)%2 == 1 {
			if vr == "UI" {
				v += "\x00"
			} else {
				v += " "
			}
		}
		put(g, e, vr, []byte(v))
	}
	us := func(g, e uint16, v uint16) { put(g, e, "US", binary.LittleEndian.AppendUint16(nil, v)) }
	it := `ORIGINAL\PRIMARY\AXIAL`
	if s.Localizer {
		it = `ORIGINAL\PRIMARY\LOCALIZER`
	}
	mod := s.Modality
	if mod == "" {
		mod = "CT"
	}
	str(0x0008, 0x0008, "CS", it)
	class := s.SOPClass
	if class == "" {
		class = ctImage
	}
	str(0x0008, 0x0016, "UI", class)
	str(0x0008, 0x0018, "UI", sop)
	str(0x0008, 0x0060, "CS", mod)
	str(0x0008, 0x103e, "LO", s.Description)
	str(0x0010, 0x0010, "PN", "Doe^Jane")
	str(0x0010, 0x0020, "LO", "PID-1")
	str(0x0018, 0x0050, "DS", s.Thickness)
	str(0x0018, 0x0088, "DS", s.Thickness)
	str(0x0018, 0x1210, "SH", s.Kernel)
	str(0x0020, 0x000d, "UI", s.Study)
	str(0x0020, 0x000e, "UI", s.Series)
	str(0x0020, 0x0011, "IS", fmt.Sprint(s.Number))
	str(0x0020, 0x0013, "IS", fmt.Sprint(i+1))
	str(0x0020, 0x0032, "DS", fmt.Sprintf(`-4\-4\%d`, i))
	str(0x0020, 0x0037, "DS", `1\0\0\0\1\0`)
	if s.Expected > 0 {
		str(0x0020, 0x1002, "IS", fmt.Sprint(s.Expected))
	}
	us(0x0028, 0x0002, 1)
	str(0x0028, 0x0004, "CS", "MONOCHROME2")
	size := s.Size
	if size == 0 {
		size = 16
	}
	us(0x0028, 0x0010, uint16(size))
	us(0x0028, 0x0011, uint16(size))
	str(0x0028, 0x0030, "DS", `0.5\0.5`)
	us(0x0028, 0x0100, 16)
	us(0x0028, 0x0101, 16)
	us(0x0028, 0x0102, 15)
	us(0x0028, 0x0103, 1)
	px := make([]byte, size*size*2)
	for j := range px {
		px[j] = byte(i + j)
	}
	put(0x7fe0, 0x0010, "OW", px)
	return sop, b
}

// write stores the series as Part 10 files under dir and returns, per SOP
// instance UID, the data set bytes (what the node must store verbatim).
func (s seriesSpec) write(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for i := range s.N {
		sop, ds := s.dataSet(i)
		f := files.AppendMetaHeader(nil, files.Meta{SOPClassUID: ctImage, SOPInstanceUID: sop, TransferSyntaxUID: explicit})
		if err := os.WriteFile(filepath.Join(dir, sop+".dcm"), append(f, ds...), 0o644); err != nil {
			t.Fatal(err)
		}
		out[sop] = ds
	}
	return out
}

// newPostgres creates a database for the test, dropped at cleanup.
func newPostgres(t testing.TB) string { return testenv.Postgres(t, "otonode_scp") }

// externalNATS checks the NATS server at 127.0.0.1:4222 and removes the
// test's streams at cleanup.
func externalNATS(t testing.TB, topo events.Topology) string {
	const url = "nats://127.0.0.1:4222"
	nc, err := nats.Connect(url, nats.Timeout(3*time.Second))
	need(t, "NATS at 127.0.0.1:4222", err)
	t.Cleanup(func() {
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return
		}
		for _, s := range []string{topo.WorkStream(), topo.EventsStream(), topo.DeadLetterStream(), topo.AdvisoryStream()} {
			js.DeleteStream(context.Background(), s)
		}
	})
	return url
}

// testConfig is a node on free loopback ports with fast timers.
func testConfig(t testing.TB) config.Config {
	c := config.Default()
	c.DataDir = filepath.Join(t.TempDir(), "data")
	c.DICOM.Host = "127.0.0.1"
	c.DICOM.Port = freePort(t)
	c.HTTP.Listen = "127.0.0.1:0"
	c.NATS.Prefix = "t" + testenv.RandHex(4)
	c.Completion.QuietPeriod = 300 * time.Millisecond
	c.Completion.StudySettle = 300 * time.Millisecond
	c.Storage.MinFreeBytes = 0
	c.Storage.Segments = 2 // nodes in tests hold little; their segments cost less to make
	c.Selection.MinInstances = 4
	return c
}

// startNode runs a node until the test ends.
func startNode(t testing.TB, c config.Config) *Node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n, err := New(ctx, c, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	})
	return n
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// streamMessages returns every message of a stream, by sequence.
func streamMessages(t testing.TB, js jetstream.JetStream, name string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		out = append(out, m)
	}
	return out
}

func lookTool(t testing.TB, name string) string {
	p, err := exec.LookPath(name)
	need(t, name, err)
	return p
}

// eventually polls f until it returns nil or the time is up.
func eventually(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	end := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(end) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort asks the system for a free loopback port (config refuses 0).
func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
