package files

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func locateFixed(io.ReaderAt, int64, int64) (string, string, error) { return study, series, nil }

func put(t *testing.T, l *Local, sop string, ds []byte) Stored {
	t.Helper()
	st, err := l.Put(context.Background(), bytes.NewReader(ds), meta(sop), locateFixed)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// part10 is the file a stored data set must become.
func part10(t *testing.T, sop string, ds []byte) []byte {
	t.Helper()
	m, err := meta(sop).Clean()
	if err != nil {
		t.Fatal(err)
	}
	return append(AppendMetaHeader(nil, m), ds...)
}

func readStored(t *testing.T, l *Local, loc string) []byte {
	t.Helper()
	r, err := l.Open(context.Background(), loc)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJournalPutBecomesFile(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ds := dataSet("1.2.3.30", "A")
	st := put(t, l, "1.2.3.30", ds)
	if st.Outcome != Created || st.Location != study+"/"+series+"/1.2.3.30.dcm" || st.Size != int64(len(part10(t, "1.2.3.30", ds))) {
		t.Fatalf("%+v", st)
	}
	// Open waits for the file if the materialiser has not written it yet.
	if got := readStored(t, l, st.Location); !bytes.Equal(got, part10(t, "1.2.3.30", ds)) {
		t.Error("stored bytes differ")
	}
	var walked []string
	if err := l.Walk(context.Background(), time.Time{}, func(fi FileInfo) error {
		walked = append(walked, fi.Location)
		return nil
	}); err != nil || len(walked) != 1 || walked[0] != st.Location {
		t.Errorf("walk: %v %v", walked, err)
	}
}

func TestJournalResent(t *testing.T) {
	l, err := Open(context.Background(), t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, b := dataSet("1.2.3.31", "A"), dataSet("1.2.3.31", "B")
	outcomes := []Outcome{put(t, l, "1.2.3.31", a).Outcome, put(t, l, "1.2.3.31", a).Outcome, put(t, l, "1.2.3.31", b).Outcome}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Again, now against the files rather than pending records.
	outcomes = append(outcomes, put(t, l, "1.2.3.31", b).Outcome, put(t, l, "1.2.3.31", a).Outcome)
	want := []Outcome{Created, Duplicate, NewVersion, Duplicate, Duplicate}
	if fmt.Sprint(outcomes) != fmt.Sprint(want) {
		t.Errorf("outcomes %v, want %v", outcomes, want)
	}
	if got := readStored(t, l, study+"/"+series+"/1.2.3.31.v2.dcm"); !bytes.Equal(got, part10(t, "1.2.3.31", b)) {
		t.Error("version 2 differs")
	}
}

func TestJournalConcurrentSameInstance(t *testing.T) {
	l, err := Open(context.Background(), t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var wg sync.WaitGroup
	res := make([]Outcome, 8)
	for i := range res {
		wg.Go(func() {
			st, err := l.Put(context.Background(), bytes.NewReader(dataSet("1.2.3.32", fmt.Sprint(i%2))), meta("1.2.3.32"), locateFixed)
			if err != nil {
				t.Error(err)
			}
			res[i] = st.Outcome
		})
	}
	wg.Wait()
	n := map[Outcome]int{}
	for _, o := range res {
		n[o]++
	}
	if n[Created] != 1 || n[NewVersion] != 1 || n[Duplicate] != 6 {
		t.Errorf("outcomes %v", res)
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(l.Dir(), study, series))
	if len(ents) != 2 {
		t.Errorf("%d files, want 2", len(ents))
	}
}

// brokenFS cannot create instance files (whose name contains only, if
// set): they stay in segments, as if the process died before its
// materialiser got to them.
type brokenFS struct {
	OS
	only  string
	plain bool // refuses to open files for direct I/O (or with any other extra flag)
}

func (b brokenFS) OpenFile(name string, flag int) (File, error) {
	if b.plain && flag&^(os.O_RDWR|os.O_CREATE|os.O_EXCL) != 0 {
		return nil, errors.New("injected: no direct I/O here")
	}
	return b.OS.OpenFile(name, flag)
}

func (b brokenFS) Rename(oldname, newname string) error {
	if strings.HasSuffix(newname, ".dcm") && strings.Contains(filepath.Base(newname), b.only) {
		return errors.New("injected failure")
	}
	return os.Rename(oldname, newname)
}

func TestJournalReplayAtOpen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l, err := Open(ctx, dir, Options{FS: brokenFS{}})
	if err != nil {
		t.Fatal(err)
	}
	ds1, ds2, ds3 := dataSet("1.2.3.33", "A"), dataSet("1.2.3.34", "A"), dataSet("1.2.3.35", "A")
	st1, st2 := put(t, l, "1.2.3.33", ds1), put(t, l, "1.2.3.34", ds2)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := l.Open(short, st1.Location); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("open of an instance that is still in a segment: %v", err)
	}
	// A third record, then its payload damaged on disk: a torn write.
	st3 := put(t, l, "1.2.3.35", ds3)
	if err := l.Close(); err == nil {
		t.Error("close hid the materialiser's failure")
	}
	seg := filepath.Join(dir, segDir, "00000001.seg") // the one last used
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.LastIndex(b, []byte("1.2.3.35"))
	if i < 0 {
		t.Fatal("record not in the newest segment")
	}
	b[i] ^= 0xff
	if err := os.WriteFile(seg, b, 0o644); err != nil {
		t.Fatal(err)
	}

	l2, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		st Stored
		ds []byte
	}{{st1, ds1}, {st2, ds2}} {
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(c.st.Location)))
		if err != nil || !bytes.Equal(got, part10(t, filepath.Base(c.st.Location[:len(c.st.Location)-4]), c.ds)) {
			t.Errorf("%s after replay: %v", c.st.Location, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(st3.Location))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("damaged record replayed: %v", err)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	// Replayed records are gone from the segments: a file removed now
	// does not come back at the next Open.
	if err := os.Remove(filepath.Join(dir, filepath.FromSlash(st1.Location))); err != nil {
		t.Fatal(err)
	}
	l3, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l3.Close()
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(st1.Location))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a record was replayed twice: %v", err)
	}
}

func TestJournalSegmentsStartOver(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	const size = 64 << 10
	l, err := Open(ctx, dir, Options{SegmentSize: size})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for i := range 60 {
		sop := fmt.Sprintf("1.2.3.36.%d", i)
		pad := 10 << 10
		if i%20 == 7 {
			pad = 3 * size // larger than a segment: it grows, and shrinks when it starts over
		}
		ds := append(dataSet(sop, "A"), bytes.Repeat([]byte{0x55}, pad)...)
		st := put(t, l, sop, ds)
		want[st.Location] = part10(t, sop, ds)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for loc, b := range want {
		if got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(loc))); err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s: %v", loc, err)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dir, segDir))
	if len(ents) > maxSegments {
		t.Errorf("%d segment files, at most %d wanted", len(ents), maxSegments)
	}
	big := 0
	for _, e := range ents {
		if fi, _ := e.Info(); fi.Size() > size {
			big++
		}
	}
	if big > 1 {
		t.Errorf("%d grown segments were not cut back", big)
	}
}

func TestJournalQuota(t *testing.T) {
	l, err := Open(context.Background(), t.TempDir(), Options{MaxBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ds := append(dataSet("1.2.3.37", "A"), make([]byte, 2000)...)
	if _, err := l.Put(context.Background(), bytes.NewReader(ds), meta("1.2.3.37"), locateFixed); !errors.Is(err, ErrInsufficientStorage) {
		t.Fatalf("over the quota: %v", err)
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.Dir(), study)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("something was stored: %v", err)
	}
}

// TestJournalTakenOver: a Local that was never closed must not write over
// the segment headers of a later Open of the same directory, or what the
// later one stores would be lost in its next crash.
func TestJournalTakenOver(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l1, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := dataSet("1.2.3.38", "A")
	put(t, l1, "1.2.3.38", a)
	// The second Open replays the first's record and starts its
	// segments over; its own instance stays in a segment (brokenFS).
	l2, err := Open(ctx, dir, Options{FS: brokenFS{only: "1.2.3.39"}})
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := l1.Flush(short); err == nil {
		t.Error("the first Local finished its work on segments taken over")
	}
	b := dataSet("1.2.3.39", "A")
	stB := put(t, l2, "1.2.3.39", b)
	// l2 "crashes" (never closed); the next Open must find its record.
	l3, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l3.Close()
	got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(stB.Location)))
	if err != nil || !bytes.Equal(got, part10(t, "1.2.3.39", b)) {
		t.Errorf("instance of the second Open lost: %v", err)
	}
	if _, err := l1.Put(ctx, bytes.NewReader(a), meta("1.2.3.40"), locateFixed); err == nil {
		t.Error("the first Local still stores")
	}
}
