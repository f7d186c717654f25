package dimse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Tag is a data element tag, group in the high 16 bits.
type Tag uint32

// Group and Element split a tag.
func (t Tag) Group() uint16   { return uint16(t >> 16) }
func (t Tag) Element() uint16 { return uint16(t) }

func (t Tag) String() string { return fmt.Sprintf("(%04X,%04X)", t.Group(), t.Element()) }

// Element is one data element of an Identifier. Value holds the bytes as
// encoded (padding included); a sequence (VR SQ) is kept without items.
type Element struct {
	Tag   Tag
	VR    string
	Value []byte
}

// Identifier is a small data set: the identifier of a C-FIND, C-GET or
// C-MOVE (PS3.4 C.4) kept as its elements in tag order. Unlike a general
// DICOM library it has no lower size bound, which matters because most
// identifiers are a few dozen bytes.
type Identifier struct {
	elems []Element
}

// ErrIdentifier is wrapped by every identifier decoding error.
var ErrIdentifier = errors.New("dimse: malformed identifier")

// maxIdentifierLength bounds an identifier held in memory.
const maxIdentifierLength = 1 << 20

// ParseIdentifier decodes an identifier in implicit or explicit VR little
// endian.
func ParseIdentifier(b []byte, transferSyntax string) (*Identifier, error) {
	explicit := true
	switch transferSyntax {
	case ImplicitVRLittleEndian:
		explicit = false
	case ExplicitVRLittleEndian:
	default:
		return nil, fmt.Errorf("%w: transfer syntax %s not supported for identifiers", ErrIdentifier, transferSyntax)
	}
	d := &Identifier{}
	for len(b) > 0 {
		e, n, err := decodeElement(b, explicit, 0)
		if err != nil {
			return nil, err
		}
		b = b[n:]
		if e.Tag.Group() == 0x0002 || e.Tag.Group() == 0xFFFE {
			continue // file meta or stray delimiters have no place here
		}
		if e.VR == "SQ" {
			// Sequence matching is not supported (PS3.4 C.2.2.2.6 is
			// optional): a sequence key is kept, empty.
			e.Value = nil
		}
		d.Set(e.Tag, e.VR, e.Value)
	}
	return d, nil
}

// decodeElement decodes one element at the start of b and returns how many
// bytes it took. Sequences of undefined length are scanned to their
// delimiter, depth bounded.
func decodeElement(b []byte, explicit bool, depth int) (Element, int, error) {
	if depth > 16 {
		return Element{}, 0, fmt.Errorf("%w: sequences nested too deep", ErrIdentifier)
	}
	if len(b) < 8 {
		return Element{}, 0, fmt.Errorf("%w: truncated element header", ErrIdentifier)
	}
	tag := Tag(uint32(binary.LittleEndian.Uint16(b))<<16 | uint32(binary.LittleEndian.Uint16(b[2:])))
	var vr string
	var length uint32
	hdr := 8
	if tag.Group() == 0xFFFE { // items and delimiters: never a VR
		length = binary.LittleEndian.Uint32(b[4:])
	} else if explicit {
		vr = string(b[4:6])
		if !validVR(vr) {
			return Element{}, 0, fmt.Errorf("%w: %v has VR %q", ErrIdentifier, tag, vr)
		}
		if longVR(vr) {
			if len(b) < 12 {
				return Element{}, 0, fmt.Errorf("%w: truncated element header", ErrIdentifier)
			}
			length = binary.LittleEndian.Uint32(b[8:])
			hdr = 12
		} else {
			length = uint32(binary.LittleEndian.Uint16(b[6:]))
		}
	} else {
		vr = lookupVR(tag)
		length = binary.LittleEndian.Uint32(b[4:])
		if length == 0xFFFFFFFF {
			vr = "SQ"
		}
	}
	if length == 0xFFFFFFFF {
		// Undefined length: a sequence, or an item, ended by a delimiter.
		n := hdr
		for {
			if len(b) < n+8 {
				return Element{}, 0, fmt.Errorf("%w: %v not terminated", ErrIdentifier, tag)
			}
			t := Tag(uint32(binary.LittleEndian.Uint16(b[n:]))<<16 | uint32(binary.LittleEndian.Uint16(b[n+2:])))
			if t == 0xFFFEE0DD || (tag == 0xFFFEE000 && t == 0xFFFEE00D) {
				return Element{Tag: tag, VR: vr, Value: b[hdr:n]}, n + 8, nil
			}
			_, k, err := decodeElement(b[n:], explicit, depth+1)
			if err != nil {
				return Element{}, 0, err
			}
			n += k
		}
	}
	if uint64(len(b)-hdr) < uint64(length) {
		return Element{}, 0, fmt.Errorf("%w: %v length %d beyond the data", ErrIdentifier, tag, length)
	}
	return Element{Tag: tag, VR: vr, Value: b[hdr : hdr+int(length)]}, hdr + int(length), nil
}

func validVR(vr string) bool {
	return len(vr) == 2 && vr[0] >= 'A' && vr[0] <= 'Z' && vr[1] >= 'A' && vr[1] <= 'Z'
}

// Encode writes the identifier in implicit or explicit VR little endian;
// sequences are written empty, with undefined length.
func (d *Identifier) Encode(transferSyntax string) ([]byte, error) {
	explicit := transferSyntax == ExplicitVRLittleEndian
	if !explicit && transferSyntax != ImplicitVRLittleEndian {
		return nil, fmt.Errorf("%w: transfer syntax %s not supported for identifiers", ErrIdentifier, transferSyntax)
	}
	var b []byte
	for _, e := range d.elems {
		v := e.Value
		if len(v)%2 == 1 {
			v = append(slices.Clip(v), padByte(e.VR))
		}
		b = binary.LittleEndian.AppendUint16(b, e.Tag.Group())
		b = binary.LittleEndian.AppendUint16(b, e.Tag.Element())
		undefined := e.VR == "SQ"
		length := uint32(len(v))
		if undefined {
			length = 0xFFFFFFFF
		}
		switch {
		case !explicit:
			b = binary.LittleEndian.AppendUint32(b, length)
		case longVR(e.VR):
			b = append(b, e.VR...)
			b = append(b, 0, 0)
			b = binary.LittleEndian.AppendUint32(b, length)
		default:
			if len(v) > 0xFFFF {
				return nil, fmt.Errorf("%w: %v value of %d bytes too long for VR %s", ErrIdentifier, e.Tag, len(v), e.VR)
			}
			b = append(b, e.VR...)
			b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
		}
		if !undefined {
			b = append(b, v...)
		}
		if undefined {
			b = append(b, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0)
		}
	}
	return b, nil
}

func padByte(vr string) byte {
	switch vr {
	case "UI", "OB", "UN":
		return 0
	}
	return ' '
}

// Elements returns the elements in tag order.
func (d *Identifier) Elements() []Element { return d.elems }

// Len is the number of elements.
func (d *Identifier) Len() int { return len(d.elems) }

// Get returns the element with tag t.
func (d *Identifier) Get(t Tag) (Element, bool) {
	i, ok := slices.BinarySearchFunc(d.elems, t, func(e Element, t Tag) int { return int64cmp(int64(e.Tag), int64(t)) })
	if !ok {
		return Element{}, false
	}
	return d.elems[i], true
}

func int64cmp(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Has reports whether the identifier carries tag t.
func (d *Identifier) Has(t Tag) bool { _, ok := d.Get(t); return ok }

// String returns the value of t as text with padding removed, the raw bytes
// in the identifier's character set ("" when absent).
func (d *Identifier) String(t Tag) string {
	e, ok := d.Get(t)
	if !ok {
		return ""
	}
	return strings.TrimRight(string(e.Value), " \x00")
}

// Set adds or replaces an element; vr "" takes the dictionary's VR.
func (d *Identifier) Set(t Tag, vr string, value []byte) {
	if vr == "" {
		vr = lookupVR(t)
	}
	e := Element{Tag: t, VR: vr, Value: value}
	i, ok := slices.BinarySearchFunc(d.elems, t, func(e Element, t Tag) int { return int64cmp(int64(e.Tag), int64(t)) })
	if ok {
		d.elems[i] = e
		return
	}
	d.elems = slices.Insert(d.elems, i, e)
}

// SetString sets a text element.
func (d *Identifier) SetString(t Tag, s string) { d.Set(t, "", []byte(s)) }

// Delete removes t.
func (d *Identifier) Delete(t Tag) {
	d.elems = slices.DeleteFunc(d.elems, func(e Element) bool { return e.Tag == t })
}

// Clone returns a deep copy of the element list (values are shared).
func (d *Identifier) Clone() *Identifier { return &Identifier{elems: slices.Clone(d.elems)} }

// DecodeText turns a value in a Specific Character Set (0008,0005) into
// UTF-8. The default repertoire, ISO_IR 6, ISO_IR 100 (Latin-1) and
// ISO_IR 192 (UTF-8) are supported; others are an error.
func DecodeText(b []byte, charset string) (string, error) {
	switch normCharset(charset) {
	case "ISO_IR 192":
		if !utf8.Valid(b) {
			return "", fmt.Errorf("%w: invalid UTF-8", ErrCharset)
		}
		return string(b), nil
	case "", "ISO_IR 6", "ISO_IR 100":
		if isASCII(b) {
			return string(b), nil
		}
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c)
		}
		return string(r), nil
	}
	return "", fmt.Errorf("%w: %q", ErrCharset, charset)
}

// EncodeText turns UTF-8 into charset; ok is false when a character has no
// code in it.
func EncodeText(s, charset string) (b []byte, ok bool) {
	switch normCharset(charset) {
	case "ISO_IR 192":
		return []byte(s), true
	case "", "ISO_IR 6":
		return []byte(s), isASCII([]byte(s))
	case "ISO_IR 100":
		out := make([]byte, 0, len(s))
		for _, r := range s {
			if r > 0xFF {
				return nil, false
			}
			out = append(out, byte(r))
		}
		return out, true
	}
	return nil, false
}

// ErrCharset is returned for an unsupported or invalid character set.
var ErrCharset = errors.New("dimse: unsupported character set")

// normCharset takes the first value of a (possibly multi-valued) Specific
// Character Set; code extensions beyond it are not supported.
func normCharset(cs string) string {
	cs = strings.TrimSpace(cs)
	if i := strings.IndexByte(cs, '\\'); i >= 0 {
		first, rest := strings.TrimSpace(cs[:i]), strings.TrimSpace(cs[i+1:])
		if first == "" && rest != "" {
			return "unsupported:" + cs
		}
		cs = first
	}
	return cs
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
