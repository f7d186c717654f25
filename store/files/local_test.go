package files

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

const (
	ctImage  = "1.2.840.10008.5.1.4.1.1.2"
	explicit = "1.2.840.10008.1.2.1"
	study    = "1.2.3.4"
	series   = "1.2.3.4.5"
)

// dataSet returns a small explicit VR LE data set: SOPClassUID,
// SOPInstanceUID, StudyInstanceUID, SeriesInstanceUID, plus a PatientID
// that makes versions differ.
func dataSet(sop, patientID string) []byte {
	var b []byte
	add := func(g, e uint16, vr, v string) {
		if len(v)%2 == 1 {
			if vr == "UI" {
				v += "\x00"
			} else {
				v += " "
			}
		}
		b = append(b, byte(g), byte(g>>8), byte(e), byte(e>>8), vr[0], vr[1], byte(len(v)), byte(len(v)>>8))
		b = append(b, v...)
	}
	add(0x0008, 0x0016, "UI", ctImage)
	add(0x0008, 0x0018, "UI", sop)
	add(0x0010, 0x0020, "LO", patientID)
	add(0x0020, 0x000d, "UI", study)
	add(0x0020, 0x000e, "UI", series)
	return b
}

func meta(sop string) Meta {
	return Meta{SOPClassUID: ctImage + "\x00", SOPInstanceUID: sop, TransferSyntaxUID: explicit, SourceAETitle: "SCANNER1 "}
}

func store(t *testing.T, l *Local, sop string, ds []byte) Stored {
	t.Helper()
	ctx := context.Background()
	s, err := l.Stage(ctx, bytes.NewReader(ds), meta(sop))
	if err != nil {
		t.Fatal(err)
	}
	st, err := l.Commit(ctx, s, study, series)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func requireTool(t *testing.T, name string) string {
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

func TestStageCommitWritesPart10(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ds := dataSet("1.2.3.4.5.6", "P1")
	st := store(t, l, "1.2.3.4.5.6", ds)
	if st.Outcome != Created || st.Version != 1 || st.Location != study+"/"+series+"/1.2.3.4.5.6.dcm" {
		t.Fatalf("stored %+v", st)
	}
	b, err := os.ReadFile(filepath.Join(dir, st.Location))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != st.Size || !bytes.HasSuffix(b, ds) || string(b[128:132]) != "DICM" {
		t.Fatalf("file of %d bytes does not end with the data set verbatim", len(b))
	}
	off, err := MetaHeaderLen(bytes.NewReader(b))
	if err != nil || off != int64(len(b)-len(ds)) {
		t.Fatalf("MetaHeaderLen = %d, %v; data set starts at %d", off, err, len(b)-len(ds))
	}
	// dcmdump reads our file meta like any other Part 10 file.
	out, err := exec.Command(requireTool(t, "dcmdump"), "-M", "-Un", "+P", "0002,0010", "+P", "0002,0016", "+P", "0002,0012", "+P", "0008,0018", filepath.Join(dir, st.Location)).CombinedOutput()
	if err != nil {
		t.Fatalf("dcmdump: %v\n%s", err, out)
	}
	for _, want := range []string{explicit, "SCANNER1", ImplementationClassUID, "1.2.3.4.5.6"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dcmdump output lacks %q:\n%s", want, out)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, tmpDir)); len(ents) != 0 {
		t.Errorf("staging files left: %v", ents)
	}
}

func TestResentInstance(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sop := "1.2.3.4.5.7"
	steps := []struct {
		patientID string
		outcome   Outcome
		version   int
	}{
		{"A", Created, 1},
		{"A", Duplicate, 1},
		{"B", NewVersion, 2},
		{"B", Duplicate, 2},
		{"A", Duplicate, 1}, // identical to an earlier version: nothing new
		{"C", NewVersion, 3},
	}
	for i, s := range steps {
		st := store(t, l, sop, dataSet(sop, s.patientID))
		if st.Outcome != s.outcome || st.Version != s.version {
			t.Errorf("step %d (%s): got %v v%d, want %v v%d", i, s.patientID, st.Outcome, st.Version, s.outcome, s.version)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dir, study, series))
	if len(ents) != 3 {
		t.Errorf("%d files, want 3 versions", len(ents))
	}
}

func TestConcurrentSameInstance(t *testing.T) {
	l, err := Open(context.Background(), t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	sop := "1.2.3.4.5.8"
	var wg sync.WaitGroup
	res := make([]Stored, 8)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			s, err := l.Stage(ctx, bytes.NewReader(dataSet(sop, fmt.Sprint(i%2))), meta(sop))
			if err != nil {
				t.Error(err)
				return
			}
			res[i], err = l.Commit(ctx, s, study, series)
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	versions := map[int]bool{}
	created := 0
	for _, r := range res {
		versions[r.Version] = true
		if r.Outcome != Duplicate {
			created++
		}
	}
	if len(versions) != 2 || created != 2 {
		t.Errorf("two distinct data sets sent 4 times each gave versions %v, %d new files", versions, created)
	}
}

func TestRefusesEscapingUIDs(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, sop := range []string{"../../etc/x", "1.2/../3", "..", "1.2.3/"} {
		if _, err := l.Stage(ctx, bytes.NewReader(nil), meta(sop)); !errors.Is(err, ErrInvalidUID) {
			t.Errorf("Stage with SOP %q: %v, want ErrInvalidUID", sop, err)
		}
	}
	s, err := l.Stage(ctx, bytes.NewReader(dataSet("1.2.3.9", "A")), meta("1.2.3.9"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Commit(ctx, s, "..", series); !errors.Is(err, ErrInvalidUID) {
		t.Errorf("Commit with study \"..\": %v", err)
	}
	for _, loc := range []string{"../x", "1.2/1.3/../../../etc/passwd", "/etc/passwd", "1.2/x/y.dcm"} {
		if _, err := l.Open(ctx, loc); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Open(%q) = %v, want a refusal", loc, err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, tmpDir)); len(ents) != 0 {
		t.Errorf("staging files left: %v", ents)
	}
}

// fullFS reports a nearly full disk and can fail writes with ENOSPC.
type fullFS struct {
	OS
	free, total uint64
}

func (f fullFS) Space(string) (uint64, uint64, error) { return f.free, f.total, nil }

func TestWatermark(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		opt    Options
		refuse bool
	}{
		{"no watermark", Options{FS: fullFS{free: 10, total: 1000}}, false},
		{"bytes above", Options{FS: fullFS{free: 500, total: 1000}, MinFreeBytes: 400}, false},
		{"bytes below", Options{FS: fullFS{free: 300, total: 1000}, MinFreeBytes: 400}, true},
		{"fraction below", Options{FS: fullFS{free: 50, total: 1000}, MinFreeFraction: 0.1}, true},
		{"quota", Options{MaxBytes: 100}, true}, // a 300-byte file passes it
		{"quota roomy", Options{MaxBytes: 1 << 20}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := Open(ctx, dir, tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			s, err := l.Stage(ctx, bytes.NewReader(dataSet("1.2.3.10", "A")), meta("1.2.3.10"))
			if tt.refuse != errors.Is(err, ErrInsufficientStorage) {
				t.Fatalf("Stage: %v, want refusal %v", err, tt.refuse)
			}
			if err == nil {
				s.Discard()
			}
			if ents, _ := os.ReadDir(filepath.Join(dir, tmpDir)); len(ents) != 0 {
				t.Errorf("staging files left: %v", ents)
			}
		})
	}
}

func TestQuotaCountsExistingFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, _ := Open(ctx, dir, Options{})
	st := store(t, l, "1.2.3.11", dataSet("1.2.3.11", "A"))
	l2, err := Open(ctx, dir, Options{MaxBytes: st.Size + 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.Admit(ctx); err != nil {
		t.Fatalf("Admit with room for 10 bytes: %v", err)
	}
	if _, err := l2.Stage(ctx, bytes.NewReader(dataSet("1.2.3.12", "A")), meta("1.2.3.12")); !errors.Is(err, ErrInsufficientStorage) {
		t.Fatalf("second file passes the quota: %v", err)
	}
	if err := l2.Remove(ctx, st.Location); err != nil {
		t.Fatal(err)
	}
	store(t, l2, "1.2.3.12", dataSet("1.2.3.12", "A"))
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("association aborted")
	}
	k := min(len(p), r.n)
	r.n -= k
	return k, nil
}

func TestFailedStreamLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l, _ := Open(ctx, dir, Options{})
	if _, err := l.Stage(ctx, &failingReader{n: 100000}, meta("1.2.3.13")); err == nil {
		t.Fatal("Stage of an aborted stream succeeded")
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, tmpDir)); len(ents) != 0 {
		t.Errorf("staging files left: %v", ents)
	}
}

func TestOpenRemovesStagingFiles(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l, _ := Open(ctx, dir, Options{})
	// A crash between Stage and Commit leaves the staging file.
	if _, err := l.Stage(ctx, bytes.NewReader(dataSet("1.2.3.14", "A")), meta("1.2.3.14")); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, tmpDir)); len(ents) != 1 {
		t.Fatalf("%d staging files, want 1", len(ents))
	}
	if _, err := Open(ctx, dir, Options{}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, tmpDir)); len(ents) != 0 {
		t.Errorf("staging files left after Open: %v", ents)
	}
}

// Recorder is an FS that logs the calls that matter for durability.
type recorder struct {
	OS
	mu  sync.Mutex
	log []string
}

func (r *recorder) add(op, name string) {
	r.mu.Lock()
	r.log = append(r.log, op+" "+filepath.Base(name))
	r.mu.Unlock()
}

type recFile struct {
	*os.File
	r *recorder
}

func (f recFile) Sync() error { f.r.add("fsync", f.Name()); return f.File.Sync() }

func (r *recorder) CreateTemp(dir, pattern string) (File, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return recFile{f, r}, nil
}
func (r *recorder) Link(o, n string) error    { r.add("link", n); return r.OS.Link(o, n) }
func (r *recorder) SyncDir(name string) error { r.add("syncdir", name); return r.OS.SyncDir(name) }
func (r *recorder) Mkdir(name string) error {
	err := r.OS.Mkdir(name)
	if err == nil {
		r.add("mkdir", name)
	}
	return err
}

func TestDurabilityOrder(t *testing.T) {
	rec := &recorder{}
	dir := t.TempDir()
	l, err := Open(context.Background(), dir, Options{FS: rec})
	if err != nil {
		t.Fatal(err)
	}
	rec.log = nil
	store(t, l, "1.2.3.15", dataSet("1.2.3.15", "A"))
	store(t, l, "1.2.3.16", dataSet("1.2.3.16", "A"))
	base := filepath.Base(dir)
	want := []string{
		"fsync 1.2.3.15", // placeholder: the staging file's random name
		"mkdir " + study, "mkdir " + series,
		"link 1.2.3.15.dcm",
		"syncdir " + series, "syncdir " + base, "syncdir " + study,
		"fsync x",
		"link 1.2.3.16.dcm",
		"syncdir " + series,
	}
	if len(rec.log) != len(want) {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(rec.log, "\n"), strings.Join(want, "\n"))
	}
	for i := range want {
		if strings.HasPrefix(want[i], "fsync ") {
			if !strings.HasPrefix(rec.log[i], "fsync ") || !strings.HasSuffix(rec.log[i], ".part") {
				t.Errorf("call %d = %q, want fsync of the staging file", i, rec.log[i])
			}
			continue
		}
		if rec.log[i] != want[i] {
			t.Errorf("call %d = %q, want %q", i, rec.log[i], want[i])
		}
	}
}

func TestNoSyncSkipsFsync(t *testing.T) {
	rec := &recorder{}
	l, _ := Open(context.Background(), t.TempDir(), Options{FS: rec, NoSync: true})
	store(t, l, "1.2.3.17", dataSet("1.2.3.17", "A"))
	for _, c := range rec.log {
		if strings.HasPrefix(c, "fsync") || strings.HasPrefix(c, "syncdir") {
			t.Errorf("NoSync store called %s", c)
		}
	}
}

func BenchmarkStore512KiB(b *testing.B) {
	payload := make([]byte, 512<<10)
	rand.Read(payload)
	for _, mode := range []struct {
		name   string
		noSync bool
	}{{"fsync", false}, {"nosync", true}} {
		b.Run(mode.name, func(b *testing.B) {
			ctx := context.Background()
			l, err := Open(ctx, b.TempDir(), Options{NoSync: mode.noSync})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(payload)))
			i := 0
			for b.Loop() {
				i++
				sop := fmt.Sprintf("1.2.3.99.%d", i)
				s, err := l.Stage(ctx, io.MultiReader(bytes.NewReader(dataSet(sop, "A")), bytes.NewReader(payload)), meta(sop))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := l.Commit(ctx, s, study, series); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStore512KiBParallel stores from several goroutines, as parallel
// associations do: concurrent fsyncs share journal commits.
func BenchmarkStore512KiBParallel(b *testing.B) {
	payload := make([]byte, 512<<10)
	rand.Read(payload)
	for _, mode := range []struct {
		name   string
		noSync bool
	}{{"fsync", false}, {"nosync", true}} {
		b.Run(mode.name, func(b *testing.B) {
			ctx := context.Background()
			l, err := Open(ctx, b.TempDir(), Options{NoSync: mode.noSync})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(payload)))
			b.SetParallelism(4)
			var n atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					sop := fmt.Sprintf("1.2.3.98.%d", n.Add(1))
					s, err := l.Stage(ctx, io.MultiReader(bytes.NewReader(dataSet(sop, "A")), bytes.NewReader(payload)), meta(sop))
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := l.Commit(ctx, s, study, series); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkPut512KiB is the whole Put of a 512 KiB instance: durable
// (segment write and fdatasync; the files follow in the background) and
// NoSync.
func BenchmarkPut512KiB(b *testing.B) {
	payload := make([]byte, 512<<10)
	rand.Read(payload)
	locate := func(io.ReaderAt, int64, int64) (string, string, error) { return study, series, nil }
	for _, mode := range []struct {
		name   string
		noSync bool
	}{{"durable", false}, {"nosync", true}} {
		b.Run(mode.name, func(b *testing.B) {
			ctx := context.Background()
			l, err := Open(ctx, b.TempDir(), Options{NoSync: mode.noSync})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			b.SetBytes(int64(len(payload)))
			i := 0
			for b.Loop() {
				i++
				sop := fmt.Sprintf("1.2.3.97.%d", i)
				if _, err := l.Put(ctx, io.MultiReader(bytes.NewReader(dataSet(sop, "A")), bytes.NewReader(payload)), meta(sop), locate); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
