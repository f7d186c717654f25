package results

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// checkStructure walks a Part 10 file's elements, sequences and items and
// fails on any length that runs past its container. suyashkumar/dicom
// allocates a value's declared length before reading it, so a corrupt
// length in a file makes it ask for gigabytes (the fuzz test found this);
// it only ever sees files that passed this walk.
func checkStructure(b []byte) error {
	if len(b) < 132 || string(b[128:132]) != "DICM" {
		return errors.New("no DICM prefix: not a DICOM Part 10 file")
	}
	w := walker{b: b, order: binary.LittleEndian}
	pos := 132
	ts := ""
	// File meta: explicit VR little endian, group 0002 only.
	for pos+4 <= len(b) && binary.LittleEndian.Uint16(b[pos:]) == 0x0002 {
		el := binary.LittleEndian.Uint16(b[pos+2:])
		next, vstart, vlen, err := w.element(pos, len(b), 0)
		if err != nil {
			return fmt.Errorf("file meta: %w", err)
		}
		if el == 0x0010 && vlen >= 0 {
			ts = strings.TrimRight(string(b[vstart:vstart+vlen]), " \x00")
		}
		pos = next
	}
	switch ts {
	case "":
		return errors.New("file meta has no transfer syntax")
	case "1.2.840.10008.1.2":
		w.implicit = true
	case "1.2.840.10008.1.2.2":
		w.order = binary.BigEndian
	case "1.2.840.10008.1.2.1.99":
		// Deflated: walk the inflated body, with a ceiling on its size.
		body, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(b[pos:])), 1<<30))
		if err != nil {
			return fmt.Errorf("deflated body: %w", err)
		}
		w.b, pos = body, 0
	}
	_, err := w.dataset(pos, len(w.b), false, 0)
	return err
}

type walker struct {
	b        []byte
	implicit bool
	order    binary.ByteOrder
}

const undefinedLength = 0xFFFFFFFF

var errStructure = errors.New("corrupt element structure")

// element checks one element at pos and returns the position after it, and
// for a defined-length non-sequence value its start and length (else -1).
func (w *walker) element(pos, end, depth int) (next, vstart, vlen int, err error) {
	if depth > 32 {
		return 0, 0, 0, fmt.Errorf("%w: sequences nested too deep", errStructure)
	}
	if end-pos < 8 {
		return 0, 0, 0, fmt.Errorf("%w: element header cut at byte %d", errStructure, pos)
	}
	order := w.order
	t := tag.Tag{Group: order.Uint16(w.b[pos:]), Element: order.Uint16(w.b[pos+2:])}
	if t.Group == 0x0002 {
		order = binary.LittleEndian
		t = tag.Tag{Group: 0x0002, Element: binary.LittleEndian.Uint16(w.b[pos+2:])}
	}
	var vr string
	var length uint32
	if w.implicit && t.Group != 0x0002 {
		length = order.Uint32(w.b[pos+4:])
		pos += 8
		if vrOf(t) == "SQ" {
			vr = "SQ"
		}
	} else {
		vr = string(w.b[pos+4 : pos+6])
		if longVR(vr) {
			if end-pos < 12 {
				return 0, 0, 0, fmt.Errorf("%w: element header cut at byte %d", errStructure, pos)
			}
			length = order.Uint32(w.b[pos+8:])
			pos += 12
		} else {
			length = uint32(order.Uint16(w.b[pos+6:]))
			pos += 8
		}
	}
	if length == undefinedLength {
		switch {
		case t == tag.PixelData:
			n, err := w.items(pos, end, true, depth, false)
			return n, -1, -1, err
		case vr == "SQ" || vr == "UN" || w.implicit:
			n, err := w.items(pos, end, true, depth, true)
			return n, -1, -1, err
		}
		return 0, 0, 0, fmt.Errorf("%w: %v of VR %s has undefined length", errStructure, t, vr)
	}
	if int64(length) > int64(end-pos) {
		return 0, 0, 0, fmt.Errorf("%w: %v declares %d bytes, %d left", errStructure, t, length, end-pos)
	}
	if vr == "SQ" {
		n, err := w.items(pos, pos+int(length), false, depth, true)
		return n, -1, -1, err
	}
	return pos + int(length), pos, int(length), nil
}

// items walks sequence items (data sets) or encapsulated fragments.
func (w *walker) items(pos, end int, undefined bool, depth int, datasets bool) (int, error) {
	for pos < end || undefined {
		if end-pos < 8 {
			return 0, fmt.Errorf("%w: item header cut at byte %d", errStructure, pos)
		}
		g, e := w.order.Uint16(w.b[pos:]), w.order.Uint16(w.b[pos+2:])
		length := w.order.Uint32(w.b[pos+4:])
		pos += 8
		switch {
		case g == 0xFFFE && e == 0xE0DD:
			if !undefined {
				return 0, fmt.Errorf("%w: sequence delimiter in a defined-length sequence", errStructure)
			}
			return pos, nil
		case g != 0xFFFE || e != 0xE000:
			return 0, fmt.Errorf("%w: (%04x,%04x) where an item was expected", errStructure, g, e)
		case length == undefinedLength && datasets:
			n, err := w.dataset(pos, end, true, depth+1)
			if err != nil {
				return 0, err
			}
			pos = n
		case int64(length) > int64(end-pos):
			return 0, fmt.Errorf("%w: item declares %d bytes, %d left", errStructure, length, end-pos)
		case datasets:
			if _, err := w.dataset(pos, pos+int(length), false, depth+1); err != nil {
				return 0, err
			}
			pos += int(length)
		default:
			pos += int(length)
		}
	}
	return pos, nil
}

// dataset walks the elements of a data set; an undefined-length item ends
// at its item delimiter.
func (w *walker) dataset(pos, end int, undefined bool, depth int) (int, error) {
	for pos < end {
		if undefined && end-pos >= 8 && w.order.Uint16(w.b[pos:]) == 0xFFFE && w.order.Uint16(w.b[pos+2:]) == 0xE00D {
			return pos + 8, nil
		}
		n, _, _, err := w.element(pos, end, depth)
		if err != nil {
			return 0, err
		}
		pos = n
	}
	if undefined {
		return 0, fmt.Errorf("%w: item without a delimiter", errStructure)
	}
	return pos, nil
}
