package files

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// wakeLocked starts the materialiser, or makes a waiting one look again.
func (j *journal) wakeLocked() {
	if j.running {
		select {
		case j.kick <- struct{}{}:
		default:
		}
		return
	}
	j.running = true
	j.idle = make(chan struct{})
	go j.run()
}

// dueLocked says whether the materialiser should work now, and if not,
// how long it may wait.
func (j *journal) dueLocked(now time.Time) (bool, time.Duration) {
	if j.closed || j.urgent > 0 {
		return true, 0
	}
	if left := len(j.free) + maxSegments - len(j.all) - j.creating; left*4 <= maxSegments {
		return true, 0
	}
	wait := idleDelay - now.Sub(j.lastCommit)
	for _, s := range j.all {
		if len(s.queued) > 0 {
			wait = min(wait, maxDelay-now.Sub(s.queued[0].at))
		}
	}
	return wait <= 0, wait
}

// maxBatch bounds the instance files one batch holds open.
const maxBatch = 256

// sinkTimeout bounds the hash sink's call for one batch.
const sinkTimeout = 10 * time.Second

// retryDelay is how long the materialiser waits after a failure.
const retryDelay = time.Second

// run materialises queued records in batches and starts drained full
// segments over, when due, until there is nothing left to do.
func (j *journal) run() {
	for {
		j.mu.Lock()
		if due, wait := j.dueLocked(time.Now()); !due {
			j.mu.Unlock()
			t := time.NewTimer(wait)
			select {
			case <-j.kick:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		var batch []*entry
		var drained []*segment
		for _, s := range j.all {
			switch n := min(len(s.queued), maxBatch-len(batch)); {
			case n > 0:
				batch = append(batch, s.queued[:n]...)
				s.inflight += n
				s.queued = s.queued[n:]
			case len(s.queued) == 0 && s.sealed && !s.held && s.inflight == 0:
				drained = append(drained, s)
			}
		}
		if len(batch) == 0 && len(drained) == 0 {
			j.running = false
			close(j.idle)
			j.mu.Unlock()
			return
		}
		j.mu.Unlock()
		err := j.materialise(context.Background(), batch)
		for _, s := range drained {
			if err == nil {
				err = j.restart(s)
				if err == nil {
					j.mu.Lock()
					j.free = append(j.free, s)
					j.cond.Broadcast()
					j.mu.Unlock()
				}
			}
		}
		j.mu.Lock()
		j.err = err
		j.cond.Broadcast() // writers waiting for a segment see the error
		for _, e := range batch {
			e.seg.inflight--
		}
		if err != nil {
			// Back to the front of their queues, in order, for another try.
			for i := len(batch) - 1; i >= 0; i-- {
				e := batch[i]
				if e.seg.hdr.mark < e.end {
					e.seg.queued = append([]*entry{e}, e.seg.queued...)
				}
			}
		}
		for _, e := range batch {
			if e.seg.hdr.mark >= e.end && j.pending[e.rec.loc] == e {
				delete(j.pending, e.rec.loc)
				close(e.done)
			}
		}
		if errors.Is(err, errTakenOver) {
			j.closed = true // this Local has lost its directory
		}
		stop := err != nil && j.closed
		if stop {
			j.running = false
			close(j.idle)
		}
		j.mu.Unlock()
		if stop {
			return
		}
		if err != nil {
			time.Sleep(retryDelay)
		}
	}
}

// materialise writes the records of ents (in segment order) to their
// files, makes the files and their directories durable, and then moves
// each segment's mark past its records.
func (j *journal) materialise(ctx context.Context, ents []*entry) error {
	l := j.l
	var files []File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	dirs := map[string]bool{}
	buf := make([]byte, copyBufSize)
	dp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(dp)
	dbuf := *dp
	h := sha256.New()
	hashed := make([]Hashed, 0, len(ents))
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		study, _, _ := strings.Cut(e.rec.loc, "/")
		for _, d := range []string{study, path.Dir(e.rec.loc)} {
			p := l.path(d)
			err := l.fs.Mkdir(p)
			switch {
			case err == nil:
				dirs[filepath.Dir(p)] = true
			case !errors.Is(err, fs.ErrExist):
				return storageErr("create series directory", err)
			}
		}
		dirs[l.path(path.Dir(e.rec.loc))] = true
		// Written aside and renamed into place, so that a reader of the
		// directory never sees part of a file. The location is this
		// record's alone; anything there is an earlier try of it.
		f, err := l.fs.CreateTemp(filepath.Join(l.root, tmpDir), "*.part")
		if err != nil {
			return storageErr("create instance file", err)
		}
		files = append(files, f)
		// The SHA-256 of the data set is computed here, off the path to
		// the C-STORE-RSP, from the bytes being copied anyway.
		start := e.off + recHeaderSize
		h.Reset()
		n, err := io.CopyBuffer(struct{ io.Writer }{f}, e.seg.section(start, e.rec.dataOffset, dbuf), buf)
		if err == nil {
			var k int64
			k, err = io.CopyBuffer(io.MultiWriter(f, h), e.seg.section(start+e.rec.dataOffset, e.rec.size-e.rec.dataOffset, dbuf), buf)
			n += k
		}
		if err != nil || n != e.rec.size {
			l.fs.Remove(f.Name())
			return storageErr("write instance file", errors.Join(err, fmt.Errorf("%d of %d bytes", n, e.rec.size)))
		}
		sop, v, _ := ParseFileName(path.Base(e.rec.loc))
		hx := Hashed{Location: e.rec.loc, SOPInstanceUID: sop, Version: v}
		h.Sum(hx.DataSetSHA256[:0])
		hashed = append(hashed, hx)
		if err := l.fs.Rename(f.Name(), l.path(e.rec.loc)); err != nil {
			l.fs.Remove(f.Name())
			return storageErr("rename instance file", err)
		}
		if j.sync() {
			startWriteback(f)
		}
	}
	for _, f := range files {
		if !j.sync() {
			break
		}
		if err := f.Sync(); err != nil {
			return storageErr("fsync instance file", err)
		}
	}
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		if !j.sync() {
			break
		}
		if err := l.fs.SyncDir(d); err != nil {
			return storageErr("fsync directory", err)
		}
	}
	// Each segment's mark goes to the end of its last record here.
	marks := map[*segment]int64{}
	var order []*segment
	for _, e := range ents {
		if _, ok := marks[e.seg]; !ok {
			order = append(order, e.seg)
		}
		marks[e.seg] = max(marks[e.seg], e.end)
	}
	for _, s := range order {
		hd := s.hdr
		hd.seq++
		hd.mark = marks[s]
		if err := j.writeHeader(s, hd); err != nil {
			return storageErr("write segment mark", err)
		}
		j.mu.Lock()
		s.hdr = hd
		j.mu.Unlock()
	}
	if fn := l.sink.Load(); fn != nil && len(hashed) > 0 {
		// Bounded: a slow index must not hold the segments back for
		// long; a hash it misses is computed by a reindex.
		sctx, cancel := context.WithTimeout(ctx, sinkTimeout)
		(*fn)(sctx, hashed)
		cancel()
	}
	return nil
}

// wait returns once the instance at loc is not pending, a durable file.
func (j *journal) wait(ctx context.Context, loc string) error {
	j.mu.Lock()
	e := j.pending[loc]
	if e == nil {
		j.mu.Unlock()
		return nil
	}
	j.hurryLocked()
	j.mu.Unlock()
	defer j.unhurry()
	select {
	case <-e.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hurryLocked makes the materialiser work now, until unhurry.
func (j *journal) hurryLocked() {
	j.urgent++
	j.wakeLocked()
}

func (j *journal) unhurry() {
	j.mu.Lock()
	j.urgent--
	j.mu.Unlock()
}

// flush waits until every instance committed so far is a durable file.
func (j *journal) flush(ctx context.Context) error {
	j.mu.Lock()
	var wait []*entry
	for _, e := range j.pending {
		wait = append(wait, e)
	}
	if len(wait) > 0 {
		j.hurryLocked()
		defer j.unhurry()
	}
	j.mu.Unlock()
	for _, e := range wait {
		select {
		case <-e.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
