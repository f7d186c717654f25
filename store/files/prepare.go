package files

// Segments are made with fallocate, which leaves their blocks unwritten:
// the first fdatasync after a write into such blocks must also commit
// their conversion to the file system's journal, which costs about as
// much again as the write. Once a stream has started, the preparer writes
// zeros over the unwritten part of idle segments and keeps spareSegments
// idle written ones ready, in the background, so that writers find
// written blocks. A segment it works on is held, as by a writer.

// spareSegments is how many written idle segments the preparer keeps
// while a stream goes on.
const spareSegments = 2

// preparing is the journal state of the preparer, under journal.mu.
type preparing struct {
	running bool
	started bool // a stream began: preparing is worth its writes
	done    chan struct{}
}

// prepareLocked starts the preparer if a stream began and it is not
// running.
func (j *journal) prepareLocked() {
	if !j.prep.started || j.prep.running || j.closed || !j.sync() {
		return
	}
	j.prep.running = true
	j.prep.done = make(chan struct{})
	go j.prepare()
}

// writtenFreeLocked counts the idle segments with no unwritten blocks.
func (j *journal) writtenFreeLocked() int {
	n := 0
	for _, s := range j.free {
		if s.written >= j.size {
			n++
		}
	}
	return n
}

func (j *journal) prepare() {
	for {
		j.mu.Lock()
		var s *segment
		for i, f := range j.free {
			if f.written < j.size {
				s = f
				j.free = append(j.free[:i], j.free[i+1:]...)
				s.held = true
				break
			}
		}
		create := s == nil && j.writtenFreeLocked() < spareSegments && len(j.all)+j.creating < maxSegments
		if j.closed || (s == nil && !create) {
			if s != nil {
				j.giveLocked(s)
			}
			j.prep.running = false
			close(j.prep.done)
			j.mu.Unlock()
			return
		}
		if create {
			j.creating++
		}
		j.mu.Unlock()
		var err error
		if create {
			s, err = j.create()
			j.mu.Lock()
			j.creating--
			if err == nil {
				s.held = true
				j.all = append(j.all, s)
			}
			j.mu.Unlock()
		}
		if err == nil {
			err = j.zero(s)
		}
		j.mu.Lock()
		if s != nil && err == nil {
			s.written = j.size
		}
		if s != nil {
			j.giveLocked(s)
		}
		if err != nil {
			// Writers still get segments (with unwritten blocks); the
			// next stream tries again.
			j.prep.running, j.prep.started = false, false
			close(j.prep.done)
			j.mu.Unlock()
			return
		}
		j.mu.Unlock()
	}
}

// zero writes zeros over the unwritten part of s and makes them durable.
func (j *journal) zero(s *segment) error {
	j.mu.Lock()
	from := max(s.written, s.end)
	j.mu.Unlock()
	zeros := make([]byte, 1<<20)
	for off := from; off < j.size; off += int64(len(zeros)) {
		if _, err := s.f.WriteAt(zeros[:min(int64(len(zeros)), j.size-off)], off); err != nil {
			return storageErr("zero segment", err)
		}
	}
	return j.datasync(s.f)
}
