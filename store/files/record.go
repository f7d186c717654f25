package files

import (
	"errors"
	"io"
	"sync"
	"unsafe"
)

// A record goes to its segment from memory, in chunks written with
// O_DIRECT where the file system allows it: the data set goes from the
// receive buffer to the disk without a copy into the page cache, so a
// record costs neither the allocation of page-cache pages (which a new
// node pays for every segment page it touches for the first time) nor
// their writeback at the fdatasync, which is then only the device flush.
// The first chunk, with the record header in front, stays in memory until
// the end: the header is known only when the data set has been read and
// located, and the header is what makes a record count at replay.
//
// A record that fits its first chunk (a CT slice does) is one write.

const (
	// recChunk is how much of a record is written at a time.
	recChunk = 1 << 20
	// directAlign is the alignment O_DIRECT wants of offsets, lengths and
	// buffers: 4 KiB covers devices with 512-byte and 4 KiB blocks.
	directAlign = 4096
)

// chunkPool holds recChunk-byte buffers aligned to directAlign.
var chunkPool = sync.Pool{New: func() any { b := alignedBuf(recChunk); return &b }}

// alignedBuf returns n bytes that start at a directAlign boundary.
func alignedBuf(n int) []byte {
	b := make([]byte, n+directAlign)
	a := int(-uintptr(unsafe.Pointer(unsafe.SliceData(b))) & (directAlign - 1))
	return b[a : a+n : a+n]
}

// alignUp rounds n up to a multiple of directAlign.
func alignUp(n int64) int64 { return (n + directAlign - 1) &^ (directAlign - 1) }

// recordWriter assembles one record at off (directAlign-aligned) in a
// segment: the record header's space, then the payload written to it.
type recordWriter struct {
	w    File  // the segment, opened for direct I/O where possible
	r    File  // the segment, for reading back what w wrote
	off  int64 // where the record starts in the segment
	head []byte
	tail []byte // the chunk being filled after head (nil until then)
	pos  int64  // record offset of tail[0]
	n    int    // bytes used in head, or in tail once it exists
	err  error
}

func newRecordWriter(w, r File, off int64) *recordWriter {
	return &recordWriter{w: w, r: r, off: off, head: *chunkPool.Get().(*[]byte), n: recHeaderSize}
}

// Write appends payload bytes; full chunks after the first are written at
// once.
func (rw *recordWriter) Write(p []byte) (int, error) {
	if rw.err != nil {
		return 0, rw.err
	}
	total := len(p)
	for len(p) > 0 {
		cur := rw.head
		if rw.tail != nil {
			cur = rw.tail
		}
		if rw.n == len(cur) {
			if rw.tail == nil {
				rw.tail = *chunkPool.Get().(*[]byte)
				rw.pos = int64(len(rw.head))
			} else if rw.err = rw.writeChunk(rw.tail, rw.pos); rw.err != nil {
				return total - len(p), rw.err
			} else {
				rw.pos += int64(len(rw.tail))
			}
			rw.n = 0
			continue
		}
		k := copy(cur[rw.n:], p)
		rw.n += k
		p = p[k:]
	}
	return total, nil
}

// size is the number of record bytes (header space and payload).
func (rw *recordWriter) size() int64 {
	if rw.tail == nil {
		return int64(rw.n)
	}
	return rw.pos + int64(rw.n)
}

// flushTail writes what the chunk after head holds, padded to directAlign
// with zeros, so that everything but head is in the segment.
func (rw *recordWriter) flushTail() error {
	if rw.err != nil || rw.tail == nil || rw.n == 0 {
		return rw.err
	}
	end := int(alignUp(int64(rw.n)))
	clear(rw.tail[rw.n:end])
	rw.err = rw.writeChunk(rw.tail[:end], rw.pos)
	return rw.err
}

// finish puts the encoded record header in front and writes head, the
// last write of the record.
func (rw *recordWriter) finish(hdr []byte) error {
	if rw.err != nil {
		return rw.err
	}
	copy(rw.head, hdr)
	end := len(rw.head)
	if rw.tail == nil {
		end = int(alignUp(int64(rw.n)))
		clear(rw.head[rw.n:end])
	}
	rw.err = rw.writeChunk(rw.head[:end], 0)
	return rw.err
}

func (rw *recordWriter) writeChunk(b []byte, pos int64) error {
	_, err := rw.w.WriteAt(b, rw.off+pos)
	return err
}

// payload reads the record's payload: head from memory, the rest from the
// segment. Valid after flushTail.
func (rw *recordWriter) payload() *io.SectionReader {
	return io.NewSectionReader(recordReader{rw}, recHeaderSize, rw.size()-recHeaderSize)
}

type recordReader struct{ rw *recordWriter }

// ReadAt reads record bytes at record offset off.
func (r recordReader) ReadAt(p []byte, off int64) (int, error) {
	rw := r.rw
	size := rw.size()
	if off >= size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > size-off {
		p = p[:size-off]
	}
	n := 0
	if off < int64(len(rw.head)) {
		n = copy(p, rw.head[off:min(int64(len(rw.head)), size)])
	}
	if n < len(p) {
		k, err := rw.r.ReadAt(p[n:], rw.off+off+int64(n))
		n += k
		if err != nil && !(errors.Is(err, io.EOF) && n == len(p)) {
			return n, err
		}
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// release gives the buffers back; the writer is unusable after.
func (rw *recordWriter) release() {
	for _, b := range [][]byte{rw.head, rw.tail} {
		if b != nil {
			chunkPool.Put(&b)
		}
	}
	rw.head, rw.tail = nil, nil
}

// section reads n bytes of the segment from off: by aligned direct reads
// into buf (recChunk bytes from chunkPool) where the segment has a direct
// descriptor, so that reading records back fills no page cache either
// (and the next round's direct writes find no cached pages to drop).
func (s *segment) section(off, n int64, buf []byte) io.Reader {
	if s.direct == nil {
		return io.NewSectionReader(s.f, off, n)
	}
	return &directReader{f: s.direct, pos: off, end: off + n, buf: buf}
}

// directReader reads [pos, end) of a file open for direct I/O.
type directReader struct {
	f        File
	pos, end int64
	buf, cur []byte
}

// fill reads the aligned chunk that holds pos into buf.
func (r *directReader) fill() error {
	if r.pos >= r.end {
		return io.EOF
	}
	base := r.pos &^ (directAlign - 1)
	k := min(int64(len(r.buf)), alignUp(r.end-base))
	n, err := r.f.ReadAt(r.buf[:k], base)
	have := min(base+int64(n), r.end)
	if have <= r.pos {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	r.cur = r.buf[r.pos-base : have-base]
	return nil
}

func (r *directReader) Read(p []byte) (int, error) {
	if len(r.cur) == 0 {
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	r.pos += int64(n)
	return n, nil
}

// WriteTo hands w the chunks as read, without another copy.
func (r *directReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if len(r.cur) == 0 {
			if err := r.fill(); errors.Is(err, io.EOF) {
				return total, nil
			} else if err != nil {
				return total, err
			}
		}
		n, err := w.Write(r.cur)
		total += int64(n)
		r.cur = r.cur[n:]
		r.pos += int64(n)
		if err != nil {
			return total, err
		}
	}
}
