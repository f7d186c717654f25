package dimse

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrTranscode is wrapped by every error of the transcoder.
var ErrTranscode = errors.New("dimse: cannot transcode data set")

// Tags of the item and delimitation elements (PS3.5 7.5), as group<<16|element.
const (
	tagItem                 = 0xFFFEE000
	tagItemDelimitation     = 0xFFFEE00D
	tagSequenceDelimitation = 0xFFFEE0DD
	undefinedLength         = 0xFFFFFFFF
	maxTranscodeNesting     = 64
)

// ExplicitToImplicitLE streams a data set from explicit VR little endian to
// implicit VR little endian (PS3.5 7.1), the one conversion between native
// encodings that needs no data dictionary. Sequences and items are written
// with undefined length, so nothing is buffered; values are copied as they
// are. It is what Store falls back to when a peer accepts a SOP class only
// in implicit VR.
func ExplicitToImplicitLE(dst io.Writer, src io.Reader) error {
	t := &transcoder{r: bufio.NewReaderSize(src, 32<<10), w: bufio.NewWriterSize(dst, 32<<10)}
	if err := t.dataSet(-1, 0); err != nil {
		return err
	}
	return t.w.Flush()
}

type transcoder struct {
	r   *bufio.Reader
	w   *bufio.Writer
	pos int64 // bytes read from src
	buf [12]byte
}

func (t *transcoder) read(n int) ([]byte, error) {
	b := t.buf[:n]
	k, err := io.ReadFull(t.r, b)
	t.pos += int64(k)
	return b, err
}

func (t *transcoder) fail(format string, args ...any) error {
	return fmt.Errorf("%w: "+format+" (offset %d)", append([]any{ErrTranscode}, append(args, t.pos)...)...)
}

func (t *transcoder) writeHeader(tag uint32, length uint32) {
	var h [8]byte
	binary.LittleEndian.PutUint16(h[0:], uint16(tag>>16))
	binary.LittleEndian.PutUint16(h[2:], uint16(tag))
	binary.LittleEndian.PutUint32(h[4:], length)
	t.w.Write(h[:])
}

// longVR reports whether an explicit VR has the 2 reserved bytes and a
// 4-byte length (PS3.5 Table 7.1-1).
func longVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

// dataSet transcodes elements until end bytes have been read (end < 0: until
// EOF at the top level, or an item delimitation inside an undefined-length
// item, which the caller passes as end == -2).
func (t *transcoder) dataSet(end int64, depth int) error {
	if depth > maxTranscodeNesting {
		return t.fail("sequences nested deeper than %d", maxTranscodeNesting)
	}
	for end < 0 || t.pos < end {
		b, err := t.read(4)
		if err == io.EOF && end == -1 {
			return nil
		}
		if err != nil {
			return t.fail("element header truncated")
		}
		tag := uint32(binary.LittleEndian.Uint16(b))<<16 | uint32(binary.LittleEndian.Uint16(b[2:]))
		if tag == tagItemDelimitation && end == -2 {
			if _, err := t.read(4); err != nil {
				return t.fail("item delimitation truncated")
			}
			return nil
		}
		if tag>>16 == 0xFFFE {
			return t.fail("unexpected (FFFE,%04X) in a data set", tag&0xFFFF)
		}
		b, err = t.read(4)
		if err != nil {
			return t.fail("element (%04X,%04X) truncated", tag>>16, tag&0xFFFF)
		}
		vr := string(b[:2])
		length := uint32(binary.LittleEndian.Uint16(b[2:]))
		if longVR(vr) {
			if b, err = t.read(4); err != nil {
				return t.fail("element (%04X,%04X) truncated", tag>>16, tag&0xFFFF)
			}
			length = binary.LittleEndian.Uint32(b)
		}
		switch {
		case vr == "SQ":
			t.writeHeader(tag, undefinedLength)
			if err := t.sequence(length, depth+1); err != nil {
				return err
			}
		case length == undefinedLength && vr == "UN":
			// An undefined-length UN holds a sequence already encoded in
			// implicit VR (PS3.5 6.2.2): copy it through to its end.
			t.writeHeader(tag, undefinedLength)
			if err := t.implicitSequence(depth + 1); err != nil {
				return err
			}
		case length == undefinedLength:
			return t.fail("undefined length on (%04X,%04X) %s; encapsulated data is not native", tag>>16, tag&0xFFFF, vr)
		default:
			if end >= 0 && t.pos+int64(length) > end {
				return t.fail("element (%04X,%04X) runs past its item", tag>>16, tag&0xFFFF)
			}
			t.writeHeader(tag, length)
			n, err := io.CopyN(t.w, t.r, int64(length))
			t.pos += n
			if err != nil {
				return t.fail("value of (%04X,%04X) truncated", tag>>16, tag&0xFFFF)
			}
		}
	}
	if t.pos != end {
		return t.fail("item content overruns its length")
	}
	return nil
}

// sequence transcodes the items of an explicit VR sequence of the given
// length (or undefined), writing each with undefined length.
func (t *transcoder) sequence(length uint32, depth int) error {
	end := int64(-1)
	if length != undefinedLength {
		end = t.pos + int64(length)
	}
	for end < 0 || t.pos < end {
		b, err := t.read(8)
		if err != nil {
			return t.fail("item header truncated")
		}
		tag := uint32(binary.LittleEndian.Uint16(b))<<16 | uint32(binary.LittleEndian.Uint16(b[2:]))
		n := binary.LittleEndian.Uint32(b[4:])
		switch {
		case tag == tagSequenceDelimitation && end < 0:
			t.writeHeader(tagSequenceDelimitation, 0)
			return nil
		case tag != tagItem:
			return t.fail("(%04X,%04X) where an item belongs", tag>>16, tag&0xFFFF)
		}
		t.writeHeader(tagItem, undefinedLength)
		itemEnd := int64(-2)
		if n != undefinedLength {
			itemEnd = t.pos + int64(n)
			if end >= 0 && itemEnd > end {
				return t.fail("item runs past its sequence")
			}
		}
		if err := t.dataSet(itemEnd, depth); err != nil {
			return err
		}
		t.writeHeader(tagItemDelimitation, 0)
	}
	if t.pos != end {
		return t.fail("sequence content overruns its length")
	}
	t.writeHeader(tagSequenceDelimitation, 0)
	return nil
}

// implicitSequence copies the items of an undefined-length sequence that is
// already in implicit VR, through its sequence delimitation item. Inside,
// an element of undefined length can only be a sequence.
func (t *transcoder) implicitSequence(depth int) error {
	if depth > maxTranscodeNesting {
		return t.fail("sequences nested deeper than %d", maxTranscodeNesting)
	}
	for {
		tag, n, err := t.copyHeader()
		if err != nil {
			return err
		}
		switch {
		case tag == tagSequenceDelimitation:
			return nil
		case tag != tagItem:
			return t.fail("(%04X,%04X) where an item belongs", tag>>16, tag&0xFFFF)
		case n != undefinedLength:
			if err := t.copyValue(n); err != nil {
				return err
			}
			continue
		}
		for { // undefined-length item: elements until its delimitation
			tag, n, err := t.copyHeader()
			if err != nil {
				return err
			}
			if tag == tagItemDelimitation {
				break
			}
			if n == undefinedLength {
				if err := t.implicitSequence(depth + 1); err != nil {
					return err
				}
				continue
			}
			if err := t.copyValue(n); err != nil {
				return err
			}
		}
	}
}

func (t *transcoder) copyHeader() (uint32, uint32, error) {
	b, err := t.read(8)
	if err != nil {
		return 0, 0, t.fail("implicit element header truncated")
	}
	t.w.Write(b)
	return uint32(binary.LittleEndian.Uint16(b))<<16 | uint32(binary.LittleEndian.Uint16(b[2:])), binary.LittleEndian.Uint32(b[4:]), nil
}

func (t *transcoder) copyValue(n uint32) error {
	k, err := io.CopyN(t.w, t.r, int64(n))
	t.pos += k
	if err != nil {
		return t.fail("implicit value truncated")
	}
	return nil
}
