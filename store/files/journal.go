package files

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrClosed is returned by Put after Close.
var ErrClosed = errors.New("files: store closed")

// journal is the durable path of Local: Put writes an instance into a
// segment and fdatasyncs it (the instance is then durable and the caller
// may acknowledge it); a background materialiser writes it to its own
// file, makes a batch of such files and their directories durable, and
// only then moves the segment's mark past it. Until then the instance is
// pending: Open and Remove of its location wait for the file (and make the
// materialiser start at once). Open of the store replays what lies past
// each segment's mark.
//
// The materialiser waits for a pause in the stream (idleDelay), so that
// its file writes and fsyncs do not delay the fdatasyncs of a sender
// waiting for its responses; it starts earlier when a quarter of the
// segment space is left, when a record has waited maxDelay, or when
// someone waits for a file.
type journal struct {
	l    *Local
	dir  string
	size int64

	mu         sync.Mutex
	cond       sync.Cond         // on mu: a segment became free, or close
	pending    map[string]*entry // location → instance not yet a durable file
	all        []*segment
	free       []*segment // idle segments, the most recently used last
	creating   int        // segments being made
	next       int        // number of the next segment file
	running    bool       // a materialiser goroutine is at work
	closed     bool
	err        error         // the materialiser's last failure, nil after a success
	idle       chan struct{} // closed when the materialiser stops
	kick       chan struct{} // wakes a waiting materialiser
	urgent     int           // callers waiting for files
	lastCommit time.Time
}

// segment is one segment file. A writer that takes it from journal.free
// owns it (and end) until it gives it back.
type segment struct {
	f File
	// direct is f opened for direct I/O, which records are written
	// through; nil where the file system refuses it (then f).
	direct File
	epoch  epoch
	hdr    segHeader // as last written; only the materialiser changes it
	// Under journal.mu:
	end      int64    // where the next record goes
	queued   []*entry // committed, past the mark, not yet with the materialiser
	inflight int      // entries the materialiser is working on
	sealed   bool     // full (or failed): no writer takes it until it starts over
	held     bool     // a writer has it
}

// entry is one instance committed to a segment (or being committed).
type entry struct {
	rec      record
	seg      *segment
	off, end int64
	synced   chan struct{} // closed once the record is durable, or failed
	ok       bool          // set before synced is closed
	at       time.Time     // when it was committed
	done     chan struct{} // closed once the instance is a durable file
}

// segmentsReady is how many segments Open prepares unless Options say
// otherwise. maxSegments bounds them (and their disk space, maxSegments ×
// SegmentSize): when all are full, writers wait for the materialiser.
const (
	segmentsReady = 2
	maxSegments   = 24
)

// idleDelay is the pause after which the stream counts as over; maxDelay
// is the longest a record waits for its file while the stream goes on.
const (
	idleDelay = 100 * time.Millisecond
	maxDelay  = 5 * time.Second
)

// DefaultSegmentSize is the size of a segment file.
const DefaultSegmentSize = 16 << 20

// openJournal prepares the segments under root/seg, replaying the records
// a previous process left past a segment's mark.
func openJournal(ctx context.Context, l *Local) (*journal, error) {
	j := &journal{l: l, dir: filepath.Join(l.root, segDir), size: l.opt.SegmentSize, pending: map[string]*entry{},
		kick: make(chan struct{}, 1)}
	j.cond.L = &j.mu
	if j.size <= 0 {
		j.size = DefaultSegmentSize
	}
	if err := l.fs.Mkdir(j.dir); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("files: open %s: %w", j.dir, err)
	}
	ents, err := l.fs.ReadDir(j.dir)
	if err != nil {
		return nil, fmt.Errorf("files: open %s: %w", j.dir, err)
	}
	for _, e := range ents {
		num, ok := strings.CutSuffix(e.Name(), ".seg")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || e.IsDir() {
			continue
		}
		j.next = max(j.next, n+1)
		if err := j.recover(ctx, filepath.Join(j.dir, e.Name())); err != nil {
			return nil, err
		}
	}
	ready := l.opt.Segments
	if ready <= 0 {
		ready = segmentsReady
	}
	for len(j.all) < min(ready, maxSegments) {
		s, err := j.create()
		if err != nil {
			return nil, err
		}
		j.all = append(j.all, s)
		j.free = append(j.free, s)
	}
	return j, nil
}

// recover replays the records of one segment file past its mark into
// files and starts the segment over. A segment without a valid header was
// never written to; it is removed.
func (j *journal) recover(ctx context.Context, name string) error {
	f, err := j.l.fs.OpenFile(name, os.O_RDWR)
	if err != nil {
		return fmt.Errorf("files: open segment: %w", err)
	}
	h, ok := readSegHeader(f)
	if !ok {
		f.Close()
		if err := j.l.fs.Remove(name); err != nil {
			return fmt.Errorf("files: remove unfinished segment: %w", err)
		}
		return nil
	}
	s := &segment{f: f, epoch: h.epoch, hdr: h}
	if j.sync() {
		s.direct = openDirect(j.l.fs, name)
	}
	ents, err := scanSegment(f, h, j.l.checkFileLocation, j.l.log())
	if err != nil {
		s.close()
		return fmt.Errorf("files: read segment %s: %w", name, err)
	}
	for _, e := range ents {
		e.seg = s
	}
	for len(ents) > 0 {
		n := min(len(ents), maxBatch)
		if err := j.materialise(ctx, ents[:n]); err != nil {
			s.close()
			return fmt.Errorf("files: replay segment %s: %w", name, err)
		}
		ents = ents[n:]
	}
	if err := j.restart(s); err != nil {
		s.close()
		return err
	}
	j.all = append(j.all, s)
	j.free = append(j.free, s)
	return nil
}

// create makes a new segment: its whole size written with zeros (direct
// I/O where records go that way, so no page cache is filled), a header,
// durable with its directory entry. Blocks that were only allocated
// (fallocate) would be unwritten extents, and every fdatasync after a
// record into them would also commit their conversion to the file
// system's journal; written blocks make a record's fdatasync the device
// flush alone, from the first round on.
func (j *journal) create() (*segment, error) {
	j.mu.Lock()
	name := filepath.Join(j.dir, fmt.Sprintf("%08d.seg", j.next))
	j.next++
	j.mu.Unlock()
	f, err := j.l.fs.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return nil, storageErr("create segment", err)
	}
	s := &segment{f: f}
	if j.sync() {
		s.direct = openDirect(j.l.fs, name)
	}
	fail := func(what string, err error) (*segment, error) {
		return nil, errors.Join(storageErr(what, err), s.close(), j.l.fs.Remove(name))
	}
	if err := zeroFill(s.recordFile(), j.size); err != nil {
		return fail("write segment", err)
	}
	if s.epoch, err = newEpoch(); err != nil {
		return fail("segment epoch", err)
	}
	s.hdr = segHeader{seq: 1, epoch: s.epoch, mark: segDataStart}
	if _, err := f.WriteAt(s.hdr.encode(), slotSize); err != nil {
		return fail("write segment header", err)
	}
	if j.sync() {
		if err := f.Sync(); err != nil {
			return fail("fsync segment", err)
		}
		if err := j.l.fs.SyncDir(j.dir); err != nil {
			return fail("fsync segment directory", err)
		}
	}
	s.end = segDataStart
	return s, nil
}

// recordFile is the descriptor a segment's records are written through.
func (s *segment) recordFile() File {
	if s.direct != nil {
		return s.direct
	}
	return s.f
}

// close closes the segment's descriptors.
func (s *segment) close() error {
	err := s.f.Close()
	if s.direct != nil {
		err = errors.Join(err, s.direct.Close())
	}
	return err
}

// restart starts a segment whose records are all materialised over under
// a new epoch, cutting it back to its size if an instance larger than the
// rest of it made it grow.
func (j *journal) restart(s *segment) error {
	if fi, err := j.l.fs.Stat(s.f.Name()); err == nil && fi.Size() > j.size {
		if err := s.f.Truncate(j.size); err != nil {
			return storageErr("truncate segment", err)
		}
		if j.sync() {
			if err := s.f.Sync(); err != nil {
				return storageErr("fsync segment", err)
			}
		}
	}
	e, err := newEpoch()
	if err != nil {
		return err
	}
	if s.direct != nil {
		// Pages that buffered reads left (replay, comparisons) would
		// have to be dropped by each direct write into their range.
		dropCache(s.f)
	}
	h := segHeader{seq: s.hdr.seq + 1, epoch: e, mark: segDataStart}
	if err := j.writeHeader(s, h); err != nil {
		return storageErr("write segment header", err)
	}
	s.hdr, s.epoch = h, e
	j.mu.Lock()
	s.end, s.sealed = segDataStart, false
	j.mu.Unlock()
	return nil
}

// sync is false with Options.NoSync: the same path without its fsyncs,
// to measure what durability costs.
func (j *journal) sync() bool { return !j.l.opt.NoSync }

func (j *journal) datasync(f File) error {
	if !j.sync() {
		return nil
	}
	return datasync(f)
}

// errTakenOver is returned when a segment's header is not the one this
// journal wrote last: another Local opened the directory (one that was
// never closed lives on in its process) and replayed the segment.
var errTakenOver = errors.New("files: segment taken over by another Open of the directory")

// writeHeader writes h into the slot s's current header is not in and
// makes it durable, unless another Open has taken the segment over.
func (j *journal) writeHeader(s *segment, h segHeader) error {
	if cur, ok := readSegHeader(s.f); !ok || cur.seq != s.hdr.seq || cur.epoch != s.hdr.epoch {
		return errTakenOver
	}
	if _, err := s.f.WriteAt(h.encode(), int64(h.seq%2)*slotSize); err != nil {
		return err
	}
	return j.datasync(s.f)
}

// take gives the caller a segment to write one record into: an idle one,
// a new one, or, when there are maxSegments, the next that is given back
// or starts over. While the materialiser is failing it does not wait.
func (j *journal) take() (*segment, error) {
	j.mu.Lock()
	for {
		if j.closed {
			j.mu.Unlock()
			return nil, ErrClosed
		}
		if n := len(j.free); n > 0 {
			s := j.free[n-1]
			j.free = j.free[:n-1]
			s.held = true
			j.mu.Unlock()
			return s, nil
		}
		if len(j.all)+j.creating < maxSegments {
			break
		}
		if j.err != nil {
			err := j.err
			j.mu.Unlock()
			return nil, fmt.Errorf("files: all segments wait for their files: %w", err)
		}
		j.wakeLocked()
		j.cond.Wait()
	}
	j.creating++
	j.mu.Unlock()
	s, err := j.create()
	j.mu.Lock()
	defer j.mu.Unlock()
	j.creating--
	if err != nil {
		j.cond.Broadcast()
		return nil, err
	}
	s.held = true
	j.all = append(j.all, s)
	return s, nil
}

// give returns a segment after a write: to the idle ones, or, when full,
// to the materialiser, which starts it over once it is drained.
func (j *journal) give(s *segment) {
	j.mu.Lock()
	defer j.mu.Unlock()
	s.held = false
	if s.end >= j.size {
		s.sealed = true
	}
	if s.sealed {
		j.wakeLocked()
		return
	}
	j.free = append(j.free, s)
	j.cond.Broadcast()
}

// put is Local.Put on the durable path. The record is assembled in
// memory and written to the segment (see recordWriter), located and
// reserved, its header written last, and the segment fdatasynced.
func (j *journal) put(ctx context.Context, r io.Reader, m Meta, locate Locator) (Stored, error) {
	s, err := j.take()
	if err != nil {
		return Stored{}, err
	}
	defer j.give(s)
	off := s.end
	rw := newRecordWriter(s.recordFile(), s.f, off)
	defer rw.release()
	meta := AppendMetaHeader(nil, m)
	rec := record{dataOffset: int64(len(meta)), metaCRC: crc32.Checksum(meta, castagnoli)}
	c := crc32.New(castagnoli)
	_, err = rw.Write(meta)
	var n int64
	if err == nil {
		n, err = io.Copy(io.MultiWriter(rw, c), r)
	}
	if err == nil {
		err = rw.flushTail()
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return Stored{}, storageErr("write data set to segment", err)
	}
	rec.size, rec.crc = rec.dataOffset+n, c.Sum32()
	if q := j.l.opt.MaxBytes; q > 0 && j.l.used.Load()+rec.size > q {
		return Stored{}, fmt.Errorf("%w: %d bytes would pass the quota of %d", ErrInsufficientStorage, rec.size, q)
	}
	payload := rw.payload()
	study, series, err := locate(payload, rec.dataOffset, rec.size)
	if err != nil {
		return Stored{}, err
	}
	if study, err = CleanUID(study); err != nil {
		return Stored{}, fmt.Errorf("study: %w", err)
	}
	if series, err = CleanUID(series); err != nil {
		return Stored{}, fmt.Errorf("series: %w", err)
	}
	ours := io.NewSectionReader(payload, rec.dataOffset, rec.size-rec.dataOffset)
	st, e, err := j.reserve(ctx, path.Join(study, series), m.SOPInstanceUID, ours, rec)
	if err != nil || e == nil {
		return st, err
	}
	e.seg, e.off, e.end = s, off, recordEnd(off, rec.size)
	b, err := e.rec.encode(s.epoch)
	if err == nil {
		err = rw.finish(b)
	}
	if err == nil {
		err = j.datasync(s.f)
	}
	if err != nil {
		// Best effort: a header that reached the disk must not make the
		// next Open store an instance the sender was told failed.
		s.f.WriteAt(make([]byte, recHeaderSize), off)
	}
	j.commit(e, err)
	if err != nil {
		return Stored{}, storageErr("fdatasync segment", err)
	}
	if j.l.opt.MaxBytes > 0 {
		j.l.used.Add(st.Size)
	}
	return st, nil
}

// reserve finds the version of an instance: an identical data set stored
// before makes it a Duplicate (e nil); otherwise the first free version's
// location is reserved for rec in pending (e is its entry, to commit).
// Identical means the same bytes: a pending record with the same size and
// CRC-32C, or a file of the same size, is compared byte for byte with
// ours, the data set being stored (no hash on the C-STORE path).
func (j *journal) reserve(ctx context.Context, dir, sop string, ours *io.SectionReader, rec record) (st Stored, e *entry, err error) {
	st = Stored{Size: rec.size}
	for v := 1; ; v++ {
		if err := ctx.Err(); err != nil {
			return Stored{}, nil, err
		}
		loc := path.Join(dir, FileName(sop, v))
		st.Location, st.Version = loc, v
		j.mu.Lock()
		if p, ok := j.pending[loc]; ok {
			j.mu.Unlock()
			if !p.rec.mayBeSame(rec) {
				continue
			}
			// Acknowledged only once the first copy is durable.
			select {
			case <-p.synced:
			case <-ctx.Done():
				return Stored{}, nil, ctx.Err()
			}
			if !p.ok {
				return Stored{}, nil, fmt.Errorf("files: %s: the same instance failed in a parallel store", loc)
			}
			theirs := io.NewSectionReader(p.seg.f, p.off+recHeaderSize+p.rec.dataOffset, p.rec.size-p.rec.dataOffset)
			same, err := sameBytes(ours, theirs)
			if err != nil {
				return Stored{}, nil, storageErr("compare with a pending instance", err)
			}
			// Once p is a file its segment may start over under the
			// comparison: look again, at the file this time.
			select {
			case <-p.done:
				v--
				continue
			default:
			}
			if !same {
				continue
			}
			st.Outcome = Duplicate
			return st, nil, nil
		}
		_, err := j.l.fs.Stat(j.l.path(loc))
		if errors.Is(err, fs.ErrNotExist) {
			rec.loc = loc
			e := &entry{rec: rec, synced: make(chan struct{}), done: make(chan struct{})}
			j.pending[loc] = e
			j.mu.Unlock()
			st.Outcome = Created
			if v > 1 {
				st.Outcome = NewVersion
			}
			return st, e, nil
		}
		j.mu.Unlock()
		if err != nil {
			return Stored{}, nil, storageErr("stat instance file", err)
		}
		// A file outside pending is durable (Open replayed what was not).
		same, err := j.l.sameFileDataSet(loc, ours)
		if err != nil {
			return Stored{}, nil, err
		}
		if same {
			st.Outcome = Duplicate
			return st, nil, nil
		}
	}
}

// commit ends a put: the record is durable (err nil) and queued for the
// materialiser, or it failed and its reservation goes. A failed write
// leaves the segment in doubt, so it takes nothing more until it starts
// over.
func (j *journal) commit(e *entry, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := e.seg
	if err != nil {
		s.sealed = true
		delete(j.pending, e.rec.loc)
		close(e.synced)
		close(e.done)
		return
	}
	e.ok = true
	e.at = time.Now()
	j.lastCommit = e.at
	s.end = e.end
	s.queued = append(s.queued, e)
	close(e.synced)
	j.wakeLocked()
}

// close refuses further puts, waits for the materialiser and closes the
// segment files. What it could not materialise stays in the segments for
// the next Open.
func (j *journal) close() error {
	j.mu.Lock()
	j.closed = true
	j.cond.Broadcast()
	idle := j.idle
	running := j.running
	if running {
		j.wakeLocked()
	}
	j.mu.Unlock()
	if running {
		<-idle
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	err := j.err
	for _, s := range j.all {
		err = errors.Join(err, s.close())
	}
	j.all, j.free = nil, nil
	return err
}
