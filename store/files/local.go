// Package files keeps DICOM instances as Part 10 files that are durable
// before the caller acknowledges them. Local is the implementation on the
// local file system; FS is its seam for tests.
//
// Layout under the data directory:
//
//	STUDY_UID/SERIES_UID/SOP_UID.dcm      first version of an instance
//	STUDY_UID/SERIES_UID/SOP_UID.v2.dcm   a re-sent instance with other bytes
//	seg/NNNNNNNN.seg                      segments: instances durable, files not yet
//	tmp/*.part                            staging files, removed at Open
//
// A durable Put writes the instance into a segment with one fdatasync and
// returns; its file is written and made durable in the background (see
// journal). Open and Remove of such a pending location wait for the file;
// Walk sees files only. Stage and Commit write one file directly
// (staging file, fsync, link, directory fsync): the way Put worked before
// segments, kept for callers that want a file at once.
//
// UIDs are validated before they become path elements (CleanUID), so no
// name can leave the data directory.
package files

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrInsufficientStorage is returned when storing would pass the configured
// disk watermark or quota, or the disk is full. The SCP refuses new
// associations and answers C-STORE with 0xA700 (PS3.4 B.2.3); nothing is
// left on disk.
var ErrInsufficientStorage = errors.New("files: insufficient storage")

// ErrNotFound is returned by Open and Remove for a location that is not
// stored.
var ErrNotFound = errors.New("files: not found")

// Options configure a Local store. The zero value is durable, uses the
// operating system and has no watermark.
type Options struct {
	// FS replaces the operating system's file system (tests).
	FS FS
	// NoSync skips every fsync. Only for measuring what durability costs;
	// an acknowledged instance may then be lost in a crash.
	NoSync bool
	// MinFreeBytes and MinFreeFraction are the disk watermark: when the
	// file system holding the data directory has less free space than
	// either, Admit and Stage refuse.
	MinFreeBytes    uint64
	MinFreeFraction float64
	// MaxBytes is a quota on the bytes of instance files under the data
	// directory (0: none). Open sums the existing files once.
	MaxBytes int64
	// SegmentSize is the size of a segment file (0: DefaultSegmentSize).
	SegmentSize int64
	// Segments is how many segments Open makes ready (written with
	// zeros) if there are fewer (0: 2). Instances go into ready segments
	// at full speed; a stream that outgrows them makes more on its way,
	// each costing a segment's write (up to 24 in all). A node sets it to
	// hold a series, at the price of that disk space.
	Segments int
	// Log receives what replay refuses (nil: discarded).
	Log *slog.Logger
}

// Local stores instances as files under one data directory that it owns:
// one process per directory (a shared store is another implementation).
type Local struct {
	root string
	fs   FS
	opt  Options
	used atomic.Int64 // bytes of instance files, kept only with a quota
	j    *journal     // Put's segments
	sink atomic.Pointer[func(context.Context, []Hashed)]
}

const tmpDir = "tmp"

// Open prepares the data directory dir, creating it if needed, removes
// staging files a previous run left behind, so nothing half-written
// survives a crash, and writes the instances that a previous run left in
// segments to their files. One Local owns a directory: another process
// (or a second Open) must not use it at the same time.
func Open(ctx context.Context, dir string, opt Options) (*Local, error) {
	if opt.FS == nil {
		opt.FS = OS{}
	}
	l := &Local{root: filepath.Clean(dir), fs: opt.FS, opt: opt}
	for _, d := range []string{l.root, filepath.Join(l.root, tmpDir)} {
		if err := l.fs.Mkdir(d); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("files: open %s: %w", dir, err)
		}
	}
	ents, err := l.fs.ReadDir(filepath.Join(l.root, tmpDir))
	if err != nil {
		return nil, fmt.Errorf("files: open %s: %w", dir, err)
	}
	for _, e := range ents {
		if err := l.fs.Remove(filepath.Join(l.root, tmpDir, e.Name())); err != nil {
			return nil, fmt.Errorf("files: remove stale staging file: %w", err)
		}
	}
	if l.j, err = openJournal(ctx, l); err != nil {
		return nil, err
	}
	if opt.MaxBytes > 0 {
		n, err := l.usage(ctx)
		if err != nil {
			return nil, err
		}
		l.used.Store(n)
	}
	return l, nil
}

// usage sums the sizes of the instance files (study/series/file).
func (l *Local) usage(ctx context.Context) (int64, error) {
	var n int64
	var walk func(dir string, depth int) error
	walk = func(dir string, depth int) error {
		ents, err := l.fs.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return err
			}
			p := filepath.Join(dir, e.Name())
			switch {
			case depth == 0 && (e.Name() == tmpDir || e.Name() == segDir):
			case e.IsDir() && depth < 2:
				if err := walk(p, depth+1); err != nil {
					return err
				}
			case !e.IsDir() && depth == 2:
				fi, err := e.Info()
				if err != nil {
					return err
				}
				n += fi.Size()
			}
		}
		return nil
	}
	if err := walk(l.root, 0); err != nil {
		return 0, fmt.Errorf("files: sum usage: %w", err)
	}
	return n, nil
}

// Dir returns the data directory.
func (l *Local) Dir() string { return l.root }

// Admit reports ErrInsufficientStorage when the disk watermark or quota is
// passed. The SCP calls it before accepting an association; Stage calls it
// again for every instance.
func (l *Local) Admit(ctx context.Context) error {
	if l.opt.MaxBytes > 0 && l.used.Load() >= l.opt.MaxBytes {
		return fmt.Errorf("%w: quota of %d bytes used", ErrInsufficientStorage, l.opt.MaxBytes)
	}
	if l.opt.MinFreeBytes == 0 && l.opt.MinFreeFraction == 0 {
		return nil
	}
	free, total, err := l.fs.Space(l.root)
	if err != nil {
		return fmt.Errorf("files: admit: %w", err)
	}
	if free < l.opt.MinFreeBytes || float64(free) < l.opt.MinFreeFraction*float64(total) {
		return fmt.Errorf("%w: %d of %d bytes free, watermark %d bytes / %.3g",
			ErrInsufficientStorage, free, total, l.opt.MinFreeBytes, l.opt.MinFreeFraction)
	}
	return nil
}

// Staged is an instance written to a staging file and fsynced, not yet in
// its place. Read its header through ReadAt, then Commit or Discard it.
type Staged struct {
	l          *Local
	f          File
	meta       Meta
	size       int64
	dataOffset int64
	sum        [sha256.Size]byte
	done       bool
}

// Meta returns the cleaned file meta information.
func (s *Staged) Meta() Meta { return s.meta }

// Size is the size of the whole Part 10 file.
func (s *Staged) Size() int64 { return s.size }

// DataSetOffset is where the data set starts in the file.
func (s *Staged) DataSetOffset() int64 { return s.dataOffset }

// DataSetSHA256 is the hash of the data set bytes as received.
func (s *Staged) DataSetSHA256() [sha256.Size]byte { return s.sum }

// ReadAt reads the staged Part 10 file.
func (s *Staged) ReadAt(p []byte, off int64) (int, error) { return s.f.ReadAt(p, off) }

// Discard removes the staging file. It is safe after Commit.
func (s *Staged) Discard() error {
	if s.done {
		return nil
	}
	s.done = true
	return errors.Join(s.f.Close(), s.l.fs.Remove(s.f.Name()))
}

// copyBufSize suits socket reads of P-DATA and a 512 KiB CT slice.
const copyBufSize = 256 << 10

// Stage writes our file meta header for m followed by the data set bytes
// of r, verbatim, to a staging file and fsyncs it. The data set is in the
// transfer syntax m names (deflated bytes stay deflated). On any error the
// staging file is gone.
func (l *Local) Stage(ctx context.Context, r io.Reader, m Meta) (*Staged, error) {
	m, err := m.Clean()
	if err != nil {
		return nil, err
	}
	if err := l.Admit(ctx); err != nil {
		return nil, err
	}
	f, err := l.fs.CreateTemp(filepath.Join(l.root, tmpDir), "*.part")
	if err != nil {
		return nil, storageErr("create staging file", err)
	}
	s := &Staged{l: l, f: f, meta: m}
	fail := func(what string, err error) (*Staged, error) {
		return nil, errors.Join(storageErr(what, err), s.Discard())
	}
	hdr := AppendMetaHeader(nil, m)
	if _, err := f.Write(hdr); err != nil {
		return fail("write meta header", err)
	}
	h := sha256.New()
	buf := make([]byte, copyBufSize)
	n, err := io.CopyBuffer(io.MultiWriter(f, h), r, buf)
	if err != nil {
		return fail("write data set", err)
	}
	if err := ctx.Err(); err != nil {
		return fail("write data set", err)
	}
	s.dataOffset = int64(len(hdr))
	s.size = s.dataOffset + n
	h.Sum(s.sum[:0])
	if q := l.opt.MaxBytes; q > 0 && l.used.Load()+s.size > q {
		return fail("quota", fmt.Errorf("%w: %d bytes would pass the quota of %d", ErrInsufficientStorage, s.size, q))
	}
	if !l.opt.NoSync {
		if err := f.Sync(); err != nil {
			return fail("fsync staging file", err)
		}
	}
	return s, nil
}

// storageErr wraps err, marking a full disk or quota as
// ErrInsufficientStorage.
func storageErr(what string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("files: %s: %w: %w", what, ErrInsufficientStorage, err)
	}
	return fmt.Errorf("files: %s: %w", what, err)
}

// Outcome says what Commit did with an instance.
type Outcome int

const (
	// Created: the first copy of this SOP instance in its series.
	Created Outcome = iota + 1
	// Duplicate: an identical data set was already stored; nothing changed.
	Duplicate
	// NewVersion: the SOP instance was stored before with other bytes; this
	// one is kept beside it under a new version number. Callers log it.
	NewVersion
)

func (o Outcome) String() string {
	switch o {
	case Created:
		return "created"
	case Duplicate:
		return "duplicate"
	case NewVersion:
		return "new version"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Stored describes an instance file in its place.
type Stored struct {
	// Location is the slash-separated path relative to the data directory;
	// it is what the index keeps and what Open takes.
	Location string
	Version  int
	Size     int64
	Outcome  Outcome
	// DataSetSHA256 is the hash of the data set bytes (after the meta),
	// from Commit. Put leaves it zero: it does not hash on the way to the
	// C-STORE-RSP; the hash comes when the instance's file is written
	// (SetHashSink).
	DataSetSHA256 [sha256.Size]byte
}

// Hashed is the SHA-256 of the data set of an instance file that the
// background writer has just made durable.
type Hashed struct {
	Location       string
	SOPInstanceUID string
	Version        int
	DataSetSHA256  [sha256.Size]byte
}

// SetHashSink makes the background writer call fn with the SHA-256 of
// each batch of instance files it has made durable (after their segment
// records are released; nil: nobody). Files that Open replays are written
// before a sink can be set; their hashes are not reported (a reindex
// computes them from the files).
func (l *Local) SetHashSink(fn func(context.Context, []Hashed)) {
	if fn == nil {
		l.sink.Store(nil)
		return
	}
	l.sink.Store(&fn)
}

func (l *Local) log() *slog.Logger {
	if l.opt.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.opt.Log
}

// Commit moves a staged instance to its place under study and series,
// never overwriting: identical data set bytes already stored make it a
// Duplicate, other bytes a NewVersion. The directory entries are fsynced
// before it returns, so the instance survives a crash from then on.
func (l *Local) Commit(ctx context.Context, s *Staged, studyUID, seriesUID string) (Stored, error) {
	if s.done {
		return Stored{}, errors.New("files: commit of a discarded staging file")
	}
	defer s.Discard()
	study, err := CleanUID(studyUID)
	if err != nil {
		return Stored{}, fmt.Errorf("study: %w", err)
	}
	series, err := CleanUID(seriesUID)
	if err != nil {
		return Stored{}, fmt.Errorf("series: %w", err)
	}
	// Directories that did not exist need their parent's entry synced too.
	var syncDirs []string
	for _, d := range []string{study, path.Join(study, series)} {
		p := filepath.Join(l.root, filepath.FromSlash(d))
		err := l.fs.Mkdir(p)
		switch {
		case err == nil:
			syncDirs = append(syncDirs, filepath.Dir(p))
		case errors.Is(err, fs.ErrExist):
		default:
			return Stored{}, storageErr("create series directory", err)
		}
	}
	dir := path.Join(study, series)
	st := Stored{Size: s.size, DataSetSHA256: s.sum}
	for v := 1; ; v++ {
		if err := ctx.Err(); err != nil {
			return Stored{}, err
		}
		loc := path.Join(dir, FileName(s.meta.SOPInstanceUID, v))
		err := l.fs.Link(s.f.Name(), l.path(loc))
		if err == nil {
			st.Location, st.Version, st.Outcome = loc, v, Created
			if v > 1 {
				st.Outcome = NewVersion
			}
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return Stored{}, storageErr("link instance file", err)
		}
		same, err := l.sameFileDataSet(loc, io.NewSectionReader(s.f, s.dataOffset, s.size-s.dataOffset))
		if err != nil {
			return Stored{}, err
		}
		if same {
			st.Location, st.Version, st.Outcome = loc, v, Duplicate
			break
		}
	}
	// Synced on Duplicate too: the existing entry may have been linked by
	// a writer that has not synced its directory yet.
	if !l.opt.NoSync {
		syncDirs = append([]string{l.path(dir)}, syncDirs...)
		for _, d := range syncDirs {
			if err := l.fs.SyncDir(d); err != nil {
				return Stored{}, storageErr("fsync directory", err)
			}
		}
	}
	if st.Outcome != Duplicate && l.opt.MaxBytes > 0 {
		l.used.Add(st.Size)
	}
	return st, nil
}

// FileName is the name of version v (from 1) of an instance file.
func FileName(sopInstanceUID string, v int) string {
	if v <= 1 {
		return sopInstanceUID + ".dcm"
	}
	return sopInstanceUID + ".v" + strconv.Itoa(v) + ".dcm"
}

// sameFileDataSet reports whether the stored file at loc holds the data
// set bytes of ours, comparing sizes and then the bytes.
func (l *Local) sameFileDataSet(loc string, ours *io.SectionReader) (bool, error) {
	f, err := l.fs.Open(l.path(loc))
	if err != nil {
		return false, fmt.Errorf("files: compare with %s: %w", loc, err)
	}
	defer f.Close()
	off, err := MetaHeaderLen(f)
	if err != nil {
		// Not one of ours: treat as different, keep both.
		return false, nil
	}
	fi, err := l.fs.Stat(l.path(loc))
	if err != nil {
		return false, fmt.Errorf("files: compare with %s: %w", loc, err)
	}
	same, err := sameBytes(ours, io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return false, fmt.Errorf("files: compare with %s: %w", loc, err)
	}
	return same, nil
}

// sameBytes compares the contents of a and b.
func sameBytes(a, b *io.SectionReader) (bool, error) {
	if a.Size() != b.Size() {
		return false, nil
	}
	const n = 64 << 10
	ba, bb := make([]byte, n), make([]byte, n)
	for off := int64(0); off < a.Size(); off += n {
		k := int(min(n, a.Size()-off))
		if _, err := a.ReadAt(ba[:k], off); err != nil {
			return false, err
		}
		if _, err := b.ReadAt(bb[:k], off); err != nil {
			return false, err
		}
		if !bytes.Equal(ba[:k], bb[:k]) {
			return false, nil
		}
	}
	return true, nil
}

// path maps a location to a file name, refusing anything that is not a
// local path made of UID-named study/series directories and a file name.
func (l *Local) path(loc string) string { return filepath.Join(l.root, filepath.FromSlash(loc)) }

func (l *Local) checkLocation(loc string) error {
	parts := strings.Split(loc, "/")
	if len(parts) != 3 || !filepath.IsLocal(filepath.FromSlash(loc)) {
		return fmt.Errorf("files: location %q is not STUDY/SERIES/FILE", loc)
	}
	for _, p := range parts[:2] {
		if err := ValidateUID(p); err != nil {
			return fmt.Errorf("files: location %q: %w", loc, err)
		}
	}
	return nil
}

// checkFileLocation is checkLocation with a file name that FileName makes.
func (l *Local) checkFileLocation(loc string) error {
	if err := l.checkLocation(loc); err != nil {
		return err
	}
	if _, _, ok := ParseFileName(path.Base(loc)); !ok {
		return fmt.Errorf("files: location %q: not an instance file name", loc)
	}
	return nil
}

// Reader reads a stored instance file.
type Reader interface {
	io.Reader
	io.ReaderAt
	io.Closer
}

// Locator reads the header of a staged instance (its data set starts at
// offset, the file has size bytes) and names the study and series it
// belongs to, or returns an error that refuses it.
type Locator func(r io.ReaderAt, offset, size int64) (studyUID, seriesUID string, err error)

// Put is the whole durable write of one instance: written to a segment
// and fdatasynced; its own file follows in the background. When it
// returns, the instance survives a crash (NoSync: the same without
// fsyncs). Whatever fails, nothing half-written remains.
func (l *Local) Put(ctx context.Context, r io.Reader, m Meta, locate Locator) (Stored, error) {
	m, err := m.Clean()
	if err != nil {
		return Stored{}, err
	}
	if err := l.Admit(ctx); err != nil {
		return Stored{}, err
	}
	return l.j.put(ctx, r, m, locate)
}

// Open opens a stored instance file for reading.
func (l *Local) Open(ctx context.Context, loc string) (Reader, error) {
	if err := l.checkLocation(loc); err != nil {
		return nil, err
	}
	if err := l.wait(ctx, loc); err != nil {
		return nil, err
	}
	f, err := l.fs.Open(l.path(loc))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, loc)
	}
	return f, err
}

// Remove deletes a stored instance file (retention) and syncs its
// directory, so a deleted instance does not come back after a crash.
func (l *Local) Remove(ctx context.Context, loc string) error {
	if err := l.checkLocation(loc); err != nil {
		return err
	}
	if err := l.wait(ctx, loc); err != nil {
		return err
	}
	p := l.path(loc)
	fi, err := l.fs.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, loc)
	}
	if err != nil {
		return fmt.Errorf("files: remove %s: %w", loc, err)
	}
	if err := l.fs.Remove(p); err != nil {
		return fmt.Errorf("files: remove %s: %w", loc, err)
	}
	if l.opt.MaxBytes > 0 {
		l.used.Add(-fi.Size())
	}
	if l.opt.NoSync {
		return nil
	}
	return l.fs.SyncDir(filepath.Dir(p))
}

// wait returns when loc is not pending in a segment.
func (l *Local) wait(ctx context.Context, loc string) error { return l.j.wait(ctx, loc) }

// Flush waits until every instance Put has returned so far is a durable
// file of its own, for readers that go to the files directly (a worker
// beside the node reading the data directory).
func (l *Local) Flush(ctx context.Context) error { return l.j.flush(ctx) }

// Close waits for the instances in segments to be written to their files
// and releases the segments; Put fails after it. What could not be written
// is written by the next Open.
func (l *Local) Close() error { return l.j.close() }

// ParseFileName is the inverse of FileName.
func ParseFileName(name string) (sopInstanceUID string, version int, ok bool) {
	base, found := strings.CutSuffix(name, ".dcm")
	if !found {
		return "", 0, false
	}
	version = 1
	if i := strings.LastIndex(base, ".v"); i >= 0 {
		v, err := strconv.Atoi(base[i+2:])
		if err != nil || v < 2 {
			return "", 0, false
		}
		base, version = base[:i], v
	}
	if ValidateUID(base) != nil {
		return "", 0, false
	}
	return base, version, true
}

// FileInfo describes a stored instance file found by Walk.
type FileInfo struct {
	Location       string
	SOPInstanceUID string
	Version        int
	Size           int64
	ModTime        time.Time
}

// Walk calls fn for every instance file modified at or after since (zero:
// all), in no particular order; instances still pending in a segment are
// not files yet (Open writes them all before a Walk can start). It is for
// scrubbing after a crash, not for serving.
func (l *Local) Walk(ctx context.Context, since time.Time, fn func(FileInfo) error) error {
	studies, err := l.fs.ReadDir(l.root)
	if err != nil {
		return fmt.Errorf("files: walk: %w", err)
	}
	for _, st := range studies {
		if !st.IsDir() || ValidateUID(st.Name()) != nil {
			continue // tmp and anything else that is not ours
		}
		series, err := l.fs.ReadDir(filepath.Join(l.root, st.Name()))
		if err != nil {
			return fmt.Errorf("files: walk: %w", err)
		}
		for _, se := range series {
			if !se.IsDir() || ValidateUID(se.Name()) != nil {
				continue
			}
			ents, err := l.fs.ReadDir(filepath.Join(l.root, st.Name(), se.Name()))
			if err != nil {
				return fmt.Errorf("files: walk: %w", err)
			}
			for _, e := range ents {
				if err := ctx.Err(); err != nil {
					return err
				}
				sop, v, ok := ParseFileName(e.Name())
				if !ok || e.IsDir() {
					continue
				}
				fi, err := e.Info()
				if err != nil {
					return fmt.Errorf("files: walk: %w", err)
				}
				if fi.ModTime().Before(since) {
					continue
				}
				err = fn(FileInfo{Location: path.Join(st.Name(), se.Name(), e.Name()), SOPInstanceUID: sop,
					Version: v, Size: fi.Size(), ModTime: fi.ModTime()})
				if err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// markPath is the file of the mark name (a-z only).
func markPath(l *Local, name string) (string, error) {
	for _, c := range name {
		if c < 'a' || c > 'z' {
			return "", fmt.Errorf("files: mark name %q: only a-z", name)
		}
	}
	if name == "" {
		return "", errors.New("files: empty mark name")
	}
	return filepath.Join(l.root, name+".mark"), nil
}

// Mark returns the time last stored under name by SetMark (zero if none).
func (l *Local) Mark(ctx context.Context, name string) (time.Time, error) {
	p, err := markPath(l, name)
	if err != nil {
		return time.Time{}, err
	}
	f, err := l.fs.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("files: mark %s: %w", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64))
	if err != nil {
		return time.Time{}, fmt.Errorf("files: mark %s: %w", name, err)
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	if err != nil {
		return time.Time{}, fmt.Errorf("files: mark %s: %w", name, err)
	}
	return t, nil
}

// SetMark stores t under name, durably, replacing what was there.
func (l *Local) SetMark(ctx context.Context, name string, t time.Time) error {
	p, err := markPath(l, name)
	if err != nil {
		return err
	}
	f, err := l.fs.CreateTemp(filepath.Join(l.root, tmpDir), "*.part")
	if err != nil {
		return fmt.Errorf("files: mark %s: %w", name, err)
	}
	_, err = f.Write([]byte(t.UTC().Format(time.RFC3339Nano) + "\n"))
	if err == nil && !l.opt.NoSync {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close())
	if err == nil {
		err = l.fs.Rename(f.Name(), p)
	}
	if err != nil {
		l.fs.Remove(f.Name())
		return fmt.Errorf("files: mark %s: %w", name, err)
	}
	if l.opt.NoSync {
		return nil
	}
	return l.fs.SyncDir(l.root)
}
