package files

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
)

// A segment is a file in seg/ whose space is written with zeros when it is
// made, so that storing an instance into it is one write inside the file's
// size and one fdatasync: no new inode, no directory entry, no block
// allocation or unwritten extent, hence no journal commit to wait for
// before the C-STORE-RSP. The layout:
//
//	0, 512       two header slots: magic, sequence number, epoch, mark,
//	             CRC-32C. The valid slot with the higher sequence number is
//	             the header, so a torn header write loses nothing.
//	segDataStart records, each at a 4 KiB boundary: a recHeaderSize header
//	             (magic, epoch, payload size, CRC-32C of the data set,
//	             data set offset, CRC-32C of the file meta, location,
//	             CRC-32C of the header) and the payload, which is the
//	             instance's Part 10 file.
//
// Records before the mark are already durable as files. The epoch is
// random and new each time a segment starts over, so neither a record of
// an earlier round nor bytes a sender put into its pixel data can pass for
// a record of this one.
const (
	segDir        = "seg"
	slotSize      = 512
	segDataStart  = 4096
	recHeaderSize = 512
	recAlign      = 4096
	segMagic      = "OTOSEG01"
	recMagic      = "OTOREC02"
	// recMagicV1 records (before the CRC-32C of the data set alone) held
	// the CRC-32C of the whole payload and the data set's SHA-256; a
	// segment a previous version left is still replayed.
	recMagicV1 = "OTOREC01"
)

// The payload checksums are CRC-32C (Castagnoli, computed by the CPU's
// CRC32 instruction): they find a torn or partial write at replay, which
// is all a record needs before the C-STORE-RSP. The SHA-256 of the data
// set is computed later, when the materialiser writes the instance's file
// (see Local.SetHashSink).

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type epoch [16]byte

func newEpoch() (epoch, error) {
	var e epoch
	_, err := rand.Read(e[:])
	return e, err
}

// zeroFill writes zeros over the first size bytes of f, in aligned
// chunks (f may be open for direct I/O).
func zeroFill(f File, size int64) error {
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	zeros := *bp
	clear(zeros)
	for off := int64(0); off < size; off += int64(len(zeros)) {
		if _, err := f.WriteAt(zeros[:alignUp(min(int64(len(zeros)), size-off))], off); err != nil {
			return err
		}
	}
	return nil
}

// segHeader is the content of a header slot.
type segHeader struct {
	seq   uint64
	epoch epoch
	mark  int64
}

func (h segHeader) encode() []byte {
	b := make([]byte, 0, slotSize)
	b = append(b, segMagic...)
	b = binary.LittleEndian.AppendUint64(b, h.seq)
	b = append(b, h.epoch[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(h.mark))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return b[:slotSize]
}

func decodeSegHeader(b []byte) (segHeader, bool) {
	const n = 8 + 8 + 16 + 8
	if len(b) < n+4 || string(b[:8]) != segMagic || crc32.Checksum(b[:n], castagnoli) != binary.LittleEndian.Uint32(b[n:]) {
		return segHeader{}, false
	}
	var h segHeader
	h.seq = binary.LittleEndian.Uint64(b[8:])
	copy(h.epoch[:], b[16:32])
	h.mark = int64(binary.LittleEndian.Uint64(b[32:]))
	return h, h.mark >= segDataStart
}

// readSegHeader returns the valid header slot with the higher sequence
// number; false if neither is valid (a segment whose making was cut off).
func readSegHeader(f File) (segHeader, bool) {
	b := make([]byte, 2*slotSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		return segHeader{}, false
	}
	h0, ok0 := decodeSegHeader(b[:slotSize])
	h1, ok1 := decodeSegHeader(b[slotSize:])
	switch {
	case ok0 && (!ok1 || h0.seq > h1.seq):
		return h0, true
	case ok1:
		return h1, true
	}
	return segHeader{}, false
}

// record is the header of one stored instance in a segment.
type record struct {
	loc        string
	size       int64  // of the payload, the Part 10 file
	crc        uint32 // CRC-32C of the data set (v1: of the whole payload)
	dataOffset int64
	metaCRC    uint32 // CRC-32C of the file meta (payload up to dataOffset); v1: 0
	v1         bool
}

// mayBeSame reports whether two records can hold the same data set bytes:
// sizes and checksums equal (then the bytes are compared).
func (r record) mayBeSame(o record) bool {
	return !r.v1 && !o.v1 && r.size-r.dataOffset == o.size-o.dataOffset && r.crc == o.crc
}

// recFixed is the fixed part of a record header; 32 bytes after the meta
// CRC are unused (where v1 kept the SHA-256).
const recFixed = 8 + 16 + 8 + 4 + 4 + 32 + 2

func (r record) encode(e epoch) ([]byte, error) {
	if recFixed+len(r.loc)+4 > recHeaderSize {
		return nil, fmt.Errorf("files: location %q too long for a segment record", r.loc)
	}
	b := make([]byte, 0, recHeaderSize)
	b = append(b, recMagic...)
	b = append(b, e[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(r.size))
	b = binary.LittleEndian.AppendUint32(b, r.crc)
	b = binary.LittleEndian.AppendUint32(b, uint32(r.dataOffset))
	b = binary.LittleEndian.AppendUint32(b, r.metaCRC)
	b = append(b, make([]byte, 28)...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(r.loc)))
	b = append(b, r.loc...)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return b[:recHeaderSize], nil
}

// ours reports whether b starts like a record header of epoch e (magic of
// either version and the epoch), whatever its checksum says.
func ours(b []byte, e epoch) bool {
	return len(b) >= recHeaderSize && (string(b[:8]) == recMagic || string(b[:8]) == recMagicV1) && bytes.Equal(b[8:24], e[:])
}

func decodeRecord(b []byte, e epoch) (record, bool) {
	if !ours(b, e) {
		return record{}, false
	}
	n := int(binary.LittleEndian.Uint16(b[recFixed-2:]))
	if recFixed+n+4 > recHeaderSize || crc32.Checksum(b[:recFixed+n], castagnoli) != binary.LittleEndian.Uint32(b[recFixed+n:]) {
		return record{}, false
	}
	r := record{
		size:       int64(binary.LittleEndian.Uint64(b[24:])),
		crc:        binary.LittleEndian.Uint32(b[32:]),
		dataOffset: int64(binary.LittleEndian.Uint32(b[36:])),
		loc:        string(b[recFixed : recFixed+n]),
		v1:         string(b[:8]) == recMagicV1,
	}
	if !r.v1 {
		r.metaCRC = binary.LittleEndian.Uint32(b[40:])
	}
	return r, r.size >= 0 && r.dataOffset <= r.size
}

// payloadOK checks the payload of r (at off in f) against its checksums.
func payloadOK(f File, off int64, r record, buf []byte) (bool, error) {
	sum := func(from, n int64) (uint32, error) {
		c := crc32.New(castagnoli)
		_, err := io.CopyBuffer(c, io.NewSectionReader(f, off+recHeaderSize+from, n), buf)
		return c.Sum32(), err
	}
	if r.v1 {
		c, err := sum(0, r.size)
		return c == r.crc, err
	}
	m, err := sum(0, r.dataOffset)
	if err != nil || m != r.metaCRC {
		return false, err
	}
	d, err := sum(r.dataOffset, r.size-r.dataOffset)
	return d == r.crc, err
}

// recordEnd is where the record after one at off with a payload of size
// bytes starts.
func recordEnd(off, size int64) int64 {
	end := off + recHeaderSize + size
	return (end + recAlign - 1) / recAlign * recAlign
}

// scanSegment returns the valid records of f's current epoch from the mark
// on. It stops at the first header that is not one (past it lies a record
// that was never committed, or one of an earlier epoch); a header of this
// epoch whose checksum fails stops it too, and is logged, since what
// follows cannot be found. A valid header whose payload fails its
// checksums (a write torn by the crash, before its fdatasync returned, or
// damage) is refused, logged, and skipped: the records after it were
// committed after it and are replayed.
func scanSegment(f File, h segHeader, checkLoc func(string) error, log *slog.Logger) ([]*entry, error) {
	var out []*entry
	hdr := make([]byte, recHeaderSize)
	buf := make([]byte, copyBufSize)
	for off := h.mark; ; {
		if _, err := f.ReadAt(hdr, off); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		r, ok := decodeRecord(hdr, h.epoch)
		if !ok {
			if ours(hdr, h.epoch) {
				log.Warn("files: segment record header fails its CRC-32C; replay of this segment stops here",
					"segment", f.Name(), "offset", off)
			}
			return out, nil
		}
		if err := checkLoc(r.loc); err != nil {
			log.Warn("files: segment record refused at replay: bad location", "segment", f.Name(), "offset", off, "err", err)
			return out, nil
		}
		ok, err := payloadOK(f, off, r, buf)
		if err != nil {
			return out, err
		}
		if !ok {
			log.Warn("files: segment record refused at replay: payload fails its CRC-32C (torn write or damage); not stored",
				"segment", f.Name(), "offset", off, "location", r.loc, "size", r.size)
		} else {
			out = append(out, &entry{rec: r, off: off, end: recordEnd(off, r.size)})
		}
		off = recordEnd(off, r.size)
	}
}
