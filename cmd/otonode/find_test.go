package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/dimse/dimsetest"
	"github.com/otonode/otonode/scp/qr"
	"github.com/otonode/otonode/store"
	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/index"
)

// qrNode serves three stored CT instances of one series with scp/qr.
func qrNode(t *testing.T) (*dimsetest.Server, *qr.Service) {
	t.Helper()
	ctx := context.Background()
	idx, err := index.OpenSQLite(ctx, filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idx.Close() })
	fs, err := files.Open(ctx, t.TempDir(), files.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := &store.Ingest{Files: fs, Index: idx}
	for i := 1; i <= 3; i++ {
		sop := fmt.Sprintf("2.25.55.1.1.%d", i)
		if _, err := g.Store(ctx, bytes.NewReader(ctSlice(sop, i)), files.Meta{SOPClassUID: dimse.CTImageStorage,
			SOPInstanceUID: sop, TransferSyntaxUID: dimse.ExplicitVRLittleEndian}); err != nil {
			t.Fatal(err)
		}
	}
	svc := qr.New(idx, fs, qr.Options{AETitle: "NODE"})
	mux := dimse.NewServeMux()
	svc.Register(mux)
	syn := append(qr.Syntaxes(), qr.WithGetRole([]dimse.Syntax{{AbstractSyntax: "",
		TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}}})...)
	srv := dimsetest.NewServer(&dimse.Server{Syntaxes: syn, Handler: mux})
	t.Cleanup(func() { srv.Close() })
	return srv, svc
}

// ctSlice is a minimal explicit VR little endian CT data set.
func ctSlice(sop string, n int) []byte {
	var b []byte
	add := func(tag uint32, vr, v string) {
		if len(v)%2 == 1 {
			v += map[bool]string{true: "\x00", false: " "}[vr == "UI"]
		}
		b = binary.LittleEndian.AppendUint32(b, tag<<16|tag>>16)
		b = append(b, vr...)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
		b = append(b, v...)
	}
	add(0x00080016, "UI", dimse.CTImageStorage)
	add(0x00080018, "UI", sop)
	add(0x00080060, "CS", "CT")
	add(0x00100010, "PN", "Doe^Jane")
	add(0x00100020, "LO", "P55")
	add(0x0020000D, "UI", "2.25.55")
	add(0x0020000E, "UI", "2.25.55.1")
	add(0x00200013, "IS", fmt.Sprint(n))
	return append(b, 0xE0, 0x7F, 0x10, 0x00, 'O', 'W', 0, 0, 4, 0, 0, 0, 1, 2, 3, 4)
}

func TestFindMoveGetCommands(t *testing.T) {
	srv, svc := qrNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := []string{"--host", srv.Host(), "--port", srv.Port(), "--called-aet", "NODE"}

	var out, errb bytes.Buffer
	err := runFind(ctx, append(conn, "--level", "IMAGE", "--json", "-k", "SeriesInstanceUID=2.25.55.1", "-k", "InstanceNumber", "-k", "PatientName=doe*"), &out, &errb)
	if err != nil {
		t.Fatalf("find: %v\n%s", err, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("find printed %d lines:\n%s", len(lines), out.String())
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil || m["PatientName"] != "Doe^Jane" || m["SOPInstanceUID"] == "" {
		t.Errorf("first match %v (%v)", m, err)
	}
	if !strings.Contains(errb.String(), "3 matches") {
		t.Errorf("no progress on stderr: %q", errb.String())
	}
	if err := runFind(ctx, append(conn, "-k", "NoSuchKeyword=1"), &out, &errb); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("unknown keyword: %v", err)
	}

	dir := t.TempDir()
	out.Reset()
	if err := runGet(ctx, append(conn, "--out", dir, "--level", "SERIES", "-k", "StudyInstanceUID=2.25.55", "-k", "SeriesInstanceUID=2.25.55.1"), &out, &errb); err != nil {
		t.Fatalf("get: %v\n%s", err, errb.String())
	}
	for i := 1; i <= 3; i++ {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("2.25.55.1.1.%d.dcm", i)))
		if err != nil || !bytes.HasSuffix(b, ctSlice(fmt.Sprintf("2.25.55.1.1.%d", i), i)) || string(b[128:132]) != "DICM" {
			t.Errorf("instance %d: %v", i, err)
		}
	}

	rec := &countingStore{n: map[string]int64{}}
	dest := dimsetest.NewServer(&dimse.Server{Syntaxes: []dimse.Syntax{{AbstractSyntax: "",
		TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}}}, Handler: rec})
	defer dest.Close()
	svc.SetDestination("SINK", qr.Destination{Addr: dest.Addr})
	out.Reset()
	if err := runMove(ctx, append(conn, "--dest", "SINK", "--level", "STUDY", "-k", "StudyInstanceUID=2.25.55"), &out, &errb); err != nil {
		t.Fatalf("move: %v\n%s", err, errb.String())
	}
	if len(rec.n) != 3 || !strings.Contains(out.String(), "moved 3 instances") {
		t.Errorf("move: destination got %d, output %q", len(rec.n), out.String())
	}
	if err := runMove(ctx, append(conn, "--dest", "NOWHERE", "--level", "STUDY", "-k", "StudyInstanceUID=2.25.55"), &out, &errb); err == nil {
		t.Error("move to an unknown destination succeeded")
	}
}
