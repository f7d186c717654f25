package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/header"
	"github.com/otonode/otonode/store/index"
)

const (
	ctImage  = "1.2.840.10008.5.1.4.1.1.2"
	explicit = "1.2.840.10008.1.2.1"
)

// dataSet builds an explicit VR LE CT header with a small pixel data
// element; extra is appended before Pixel Data (sorted by the caller).
func dataSet(study, series, sop string, n int) []byte {
	var b []byte
	add := func(g, e uint16, vr, v string) {
		if len(v)%2 == 1 {
			if vr == "UI" {
				v += "\x00"
			} else {
				v += " "
			}
		}
		b = binary.LittleEndian.AppendUint16(b, g)
		b = binary.LittleEndian.AppendUint16(b, e)
		b = append(b, vr...)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
		b = append(b, v...)
	}
	add(0x0008, 0x0016, "UI", ctImage)
	add(0x0008, 0x0018, "UI", sop)
	add(0x0008, 0x0060, "CS", "CT")
	add(0x0010, 0x0020, "LO", "PID")
	add(0x0020, 0x000d, "UI", study)
	add(0x0020, 0x000e, "UI", series)
	add(0x0020, 0x0013, "IS", fmt.Sprint(n))
	b = append(b, 0xe0, 0x7f, 0x10, 0x00, 'O', 'W', 0, 0, 8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8)
	return b
}

func meta(sop string) files.Meta {
	return files.Meta{SOPClassUID: ctImage, SOPInstanceUID: sop, TransferSyntaxUID: explicit, SourceAETitle: "CT1"}
}

// trace is one ordered log shared by the recording file system and index.
type trace struct {
	mu      sync.Mutex
	log     []string
	renamed map[string]string // staging file → instance file
}

func (t *trace) add(s string) { t.mu.Lock(); t.log = append(t.log, s); t.mu.Unlock() }

type recFS struct {
	files.OS
	t *trace
}

// recFile records the durability calls on segment and instance files.
type recFile struct {
	*os.File
	t *trace
}

func (f recFile) Sync() error {
	f.t.add("fsync " + f.kind())
	return f.File.Sync()
}

func (f recFile) Datasync() error {
	f.t.add("fdatasync " + f.kind())
	return f.File.Sync()
}

func (f recFile) WriteAt(b []byte, off int64) (int, error) {
	switch {
	case bytes.HasPrefix(b, []byte("OTOREC02")):
		f.t.add("record")
	case bytes.HasPrefix(b, []byte("OTOSEG01")):
		f.t.add("mark")
	}
	return f.File.WriteAt(b, off)
}

func (f recFile) kind() string {
	if strings.HasSuffix(f.Name(), ".seg") {
		return "segment"
	}
	f.t.mu.Lock()
	name := f.t.renamed[f.Name()]
	f.t.mu.Unlock()
	return "file " + strings.TrimSuffix(filepath.Base(name), ".dcm")
}

func (r recFS) OpenFile(name string, flag int) (files.File, error) {
	f, err := os.OpenFile(name, flag, 0o644)
	if err != nil {
		return nil, err
	}
	return recFile{f, r.t}, nil
}

func (r recFS) CreateTemp(dir, pattern string) (files.File, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return recFile{f, r.t}, nil
}

func (r recFS) Rename(oldname, newname string) error {
	r.t.mu.Lock()
	if r.t.renamed == nil {
		r.t.renamed = map[string]string{}
	}
	r.t.renamed[oldname] = newname
	r.t.mu.Unlock()
	return r.OS.Rename(oldname, newname)
}
func (r recFS) SyncDir(n string) error {
	r.t.add("fsync dir " + filepath.Base(n))
	return r.OS.SyncDir(n)
}

type recIndex struct {
	Index
	t *trace
}

func (r recIndex) RecordInstance(ctx context.Context, in index.Instance) (index.Recorded, error) {
	r.t.add("index")
	return r.Index.RecordInstance(ctx, in)
}

func openIndex(t testing.TB) *index.Index {
	x, err := index.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

// TestDurabilityOrder proves the order of one C-STORE: the record written
// to a segment and fdatasynced, then the index, and only then does Store
// return (where the SCP sends its response). In the background: the
// instance file fsynced, its directory fsynced, and only then the
// segment's mark moved past the record.
func TestDurabilityOrder(t *testing.T) {
	ctx := context.Background()
	tr := &trace{}
	fs, err := files.Open(ctx, t.TempDir(), files.Options{FS: recFS{t: tr}})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	g := &Ingest{Files: fs, Index: recIndex{openIndex(t), tr}}
	for i, sop := range []string{"1.2.3.4.5.1", "1.2.3.4.5.2"} {
		tr.mu.Lock()
		tr.log = nil
		tr.mu.Unlock()
		if _, err := g.Store(ctx, bytes.NewReader(dataSet("1.2.3", "1.2.3.4", sop, i)), meta(sop)); err != nil {
			t.Fatal(err)
		}
		tr.add("response")
		if err := fs.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		tr.mu.Lock()
		log := slices.Clone(tr.log)
		tr.mu.Unlock()
		at := func(from int, s string) int {
			if j := slices.Index(log[max(from, 0):], s); j >= 0 {
				return from + j
			}
			return -1
		}
		rec := at(0, "record")
		sync := at(rec, "fdatasync segment")
		idx, rsp := at(sync, "index"), at(sync, "response")
		file := at(sync, "fsync file "+sop)
		dir := at(file, "fsync dir 1.2.3.4")
		mark := at(dir, "mark")
		markSync := at(mark, "fdatasync segment")
		if rec != 0 || !(rec < sync && sync < idx && idx < rsp) || !(sync < file && file < dir && dir < mark && mark < markSync) {
			t.Errorf("instance %d: %s", i, strings.Join(log, ","))
		}
		if at(0, "mark") < dir {
			t.Errorf("instance %d: a mark before the file was durable: %s", i, strings.Join(log, ","))
		}
	}
}

func TestStoreAndRefusals(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fs, err := files.Open(ctx, dir, files.Options{})
	if err != nil {
		t.Fatal(err)
	}
	x := openIndex(t)
	g := &Ingest{Files: fs, Index: x}
	ds := dataSet("1.2.3", "1.2.3.4", "1.2.3.4.9", 1)
	st, err := g.Store(ctx, bytes.NewReader(ds), meta("1.2.3.4.9\x00"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Outcome != files.Created || st.Recorded.Revision != 1 || st.Attrs.Modality != "CT" {
		t.Errorf("stored %+v", st)
	}
	if err := fs.Flush(ctx); err != nil { // the file, not only the segment record
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, st.Location))
	if !bytes.HasSuffix(b, ds) {
		t.Error("stored file does not end with the data set verbatim")
	}
	if st2, err := g.Store(ctx, bytes.NewReader(ds), meta("1.2.3.4.9")); err != nil || st2.Outcome != files.Duplicate || !st2.Recorded.Duplicate {
		t.Errorf("re-sent: %+v %v", st2, err)
	}

	tests := []struct {
		name   string
		ds     []byte
		m      files.Meta
		status uint16
		series string // the refusal names the series when the header was read
	}{
		{"garbage", []byte("this is not a data set at all, just text"), meta("1.2.3.4.10"), 0xC000, ""},
		{"truncated", ds[:len(ds)-25], meta("1.2.3.4.9"), 0xC000, ""},
		{"UID escaping the directory", dataSet("1.2.3", "1.2.3.4", "../../x", 1), meta("../../x"), 0xC000, ""},
		{"study UID escaping", dataSet("../..", "1.2.3.4", "1.2.3.4.11", 1), meta("1.2.3.4.11"), 0xC000, ""},
		{"other SOP instance than the command", dataSet("1.2.3", "1.2.3.4", "1.2.3.4.12", 1), meta("1.2.3.4.13"), 0xA900, "1.2.3.4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := g.Store(ctx, bytes.NewReader(tt.ds), tt.m)
			var r *Refusal
			if !errors.As(err, &r) || r.Status() != tt.status || r.Comment == "" || len(r.Comment) > 64 {
				t.Fatalf("error %v, want a refusal with status %#x", err, tt.status)
			}
			if r.SeriesInstanceUID != tt.series {
				t.Errorf("refusal names series %q, want %q", r.SeriesInstanceUID, tt.series)
			}
			t.Logf("%#x %s", r.Status(), r.Comment)
		})
	}
	ss, _ := x.StudySeries(ctx, "1.2.3")
	if len(ss) != 1 || ss[0].Instances != 1 {
		t.Errorf("refused instances were indexed: %+v", ss)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Errorf("staging files left: %d", len(ents))
	}
	// Above the watermark: 0xA700 and nothing written.
	full, _ := files.Open(ctx, dir, files.Options{MinFreeFraction: 1.01})
	g.Files = full
	_, err = g.Store(ctx, bytes.NewReader(dataSet("1.2.3", "1.2.3.4", "1.2.3.4.14", 1)), meta("1.2.3.4.14"))
	var r *Refusal
	if !errors.As(err, &r) || r.Status() != 0xA700 || !errors.Is(err, files.ErrInsufficientStorage) {
		t.Errorf("above the watermark: %v", err)
	}
}

// TestCorpus sends every corpus file through Ingest: each is stored with
// its data set bytes intact or refused with a status and comment.
func TestCorpus(t *testing.T) {
	dir := os.Getenv("OTONODE_CORPUS")
	if dir == "" {
		dir = "../../shared/testdata/dicom-corpus"
	}
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("corpus: %v", err)
		}
		t.Skipf("corpus: %v", err)
	}
	ctx := context.Background()
	data := t.TempDir()
	fs, err := files.Open(ctx, data, files.Options{NoSync: true}) // durability is tested above
	if err != nil {
		t.Fatal(err)
	}
	g := &Ingest{Files: fs, Index: openIndex(t)}
	var stored, refused int
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		m, ds := splitPart10(b)
		st, err := g.Store(ctx, bytes.NewReader(ds), m)
		var r *Refusal
		switch {
		case err == nil:
			stored++
			var got []byte
			if f, err := fs.Open(ctx, st.Location); err == nil { // waits for the file
				got, _ = io.ReadAll(f)
				f.Close()
			}
			if !bytes.HasSuffix(got, ds) {
				t.Errorf("%s: stored data set differs", p)
			}
		case errors.As(err, &r):
			refused++
		default:
			t.Errorf("%s: %v", p, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stored %d, refused %d", stored, refused)
	if stored < 200 {
		t.Errorf("only %d corpus files stored", stored)
	}
}

// splitPart10 plays the SCP: the meta becomes the C-STORE command's UIDs
// and the negotiated transfer syntax, the rest is the data set stream.
func splitPart10(b []byte) (files.Meta, []byte) {
	m := files.Meta{SOPClassUID: "1.2.3", SOPInstanceUID: "1.2.3", TransferSyntaxUID: header.ImplicitVRLittleEndian}
	if len(b) < 132 || string(b[128:132]) != "DICM" {
		return m, b
	}
	off := 132
	for off+8 <= len(b) && binary.LittleEndian.Uint16(b[off:]) == 2 {
		elem := binary.LittleEndian.Uint16(b[off+2:])
		vr := string(b[off+4 : off+6])
		var vl, h int
		if vr == "OB" || vr == "UN" || vr == "UT" || vr == "SQ" {
			if off+12 > len(b) {
				break
			}
			vl, h = int(binary.LittleEndian.Uint32(b[off+8:])), 12
		} else {
			vl, h = int(binary.LittleEndian.Uint16(b[off+6:])), 8
		}
		if off+h+vl > len(b) || vl < 0 {
			break
		}
		v := strings.TrimRight(string(b[off+h:off+h+vl]), "\x00 ")
		switch elem {
		case 0x0002:
			m.SOPClassUID = v
		case 0x0003:
			m.SOPInstanceUID = v
		case 0x0010:
			m.TransferSyntaxUID = v
		}
		off += h + vl
	}
	return m, b[off:]
}

func TestRetention(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fs, _ := files.Open(ctx, dir, files.Options{})
	x := openIndex(t)
	t0 := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	g := &Ingest{Files: fs, Index: x, Now: func() time.Time { return t0 },
		IsResult: func(m files.Meta, _ *header.Attributes) bool { return m.SourceAETitle == "OTONODE_WORKER" }}
	src, err := g.Store(ctx, bytes.NewReader(dataSet("1.5", "1.5.1", "1.5.1.1", 1)), meta("1.5.1.1"))
	if err != nil {
		t.Fatal(err)
	}
	rm := meta("1.5.2.1")
	rm.SourceAETitle = "OTONODE_WORKER"
	res, err := g.Store(ctx, bytes.NewReader(dataSet("1.5", "1.5.2", "1.5.2.1", 1)), rm)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"1.5.1", "1.5.2"} {
		if _, err := x.Complete(ctx, s, t0, index.Policy{}); err != nil {
			t.Fatal(err)
		}
		for _, step := range [][2]index.State{{index.Complete, index.Queued}, {index.Queued, index.Analysing}, {index.Analysing, index.Done}} {
			if err := x.Transition(ctx, index.Transition{SeriesInstanceUID: s, Revision: 1, From: []index.State{step[0]}, To: step[1]}, t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	exists := func(loc string) bool { _, err := os.Stat(filepath.Join(dir, loc)); return err == nil }
	tests := []struct {
		name    string
		pol     RetentionPolicy
		at      time.Time
		deleted int
	}{
		{"keep", RetentionPolicy{}, t0.AddDate(1, 0, 0), 0},
		{"not yet", RetentionPolicy{DeleteSourcesAfter: 7 * 24 * time.Hour}, t0.AddDate(0, 0, 6), 0},
		{"after 7 days", RetentionPolicy{DeleteSourcesAfter: 7 * 24 * time.Hour}, t0.AddDate(0, 0, 8), 1},
		{"again", RetentionPolicy{DeleteSourcesAfter: 7 * 24 * time.Hour}, t0.AddDate(0, 0, 9), 0},
	}
	for _, tt := range tests {
		rep, err := ApplyRetention(ctx, x, fs, tt.pol, tt.at)
		if err != nil || rep.Deleted != tt.deleted {
			t.Errorf("%s: %+v %v, want %d deleted", tt.name, rep, err, tt.deleted)
		}
	}
	if exists(src.Location) || !exists(res.Location) {
		t.Errorf("source kept %v, result kept %v", exists(src.Location), exists(res.Location))
	}
}

func BenchmarkIngest512KiB(b *testing.B) {
	pixels := make([]byte, 512<<10)
	for _, noSync := range []bool{false, true} {
		b.Run(fmt.Sprintf("sqlite/nosync=%v", noSync), func(b *testing.B) {
			ctx := context.Background()
			fs, _ := files.Open(ctx, b.TempDir(), files.Options{NoSync: noSync})
			g := &Ingest{Files: fs, Index: openIndex(b)}
			i := 0
			for b.Loop() {
				i++
				sop := fmt.Sprintf("1.9.9.%d", i)
				ds := dataSet("1.9", "1.9.9", sop, i)
				ds = ds[:len(ds)-20] // replace the tiny pixel data
				ds = append(ds, 0xe0, 0x7f, 0x10, 0x00, 'O', 'W', 0, 0)
				ds = binary.LittleEndian.AppendUint32(ds, uint32(len(pixels)))
				if _, err := g.Store(ctx, io.MultiReader(bytes.NewReader(ds), bytes.NewReader(pixels)), meta(sop)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestReindexMark: a Reindex that finds nothing to add leaves a mark, and
// the next walks only the files since; one that adds rows leaves the mark
// where it was.
func TestReindexMark(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fs, err := files.Open(ctx, dir, files.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	x := openIndex(t)
	g := &Ingest{Files: fs, Index: x}
	fs.SetHashSink(g.RecordHashes)
	var old []string
	for i, sop := range []string{"1.6.2.1", "1.6.2.2"} {
		st, err := g.Store(ctx, bytes.NewReader(dataSet("1.6", "1.6.2", sop, i)), meta(sop))
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, st.Location)
	}
	if err := fs.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-3 * time.Hour)
	for _, loc := range old {
		if err := os.Chtimes(filepath.Join(dir, loc), long, long); err != nil {
			t.Fatal(err)
		}
	}
	reindex := func(want ReindexReport) time.Time {
		t.Helper()
		rep, err := g.Reindex(ctx, time.Time{})
		if err != nil || rep != want {
			t.Fatalf("reindex %+v %v, want %+v", rep, err, want)
		}
		m, err := fs.Mark(ctx, reindexMark)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m1 := reindex(ReindexReport{Checked: 2})
	if d := time.Since(m1); d < markMargin || d > markMargin+time.Minute {
		t.Errorf("mark %v, %v ago", m1, d)
	}
	crashed := &Ingest{Files: fs, Index: failingIndex{x}}
	if _, err := crashed.Store(ctx, bytes.NewReader(dataSet("1.6", "1.6.2", "1.6.2.3", 3)), meta("1.6.2.3")); err == nil {
		t.Fatal("store with a failing index succeeded")
	}
	if m2 := reindex(ReindexReport{Checked: 1, Indexed: 1}); !m2.Equal(m1) {
		t.Errorf("a reindex that added rows moved the mark from %v to %v", m1, m2)
	}
	if m3 := reindex(ReindexReport{Checked: 1}); !m3.After(m1) {
		t.Errorf("mark %v did not move past %v", m3, m1)
	}
}
