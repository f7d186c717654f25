// Package header reads the attributes the index needs from a stored
// instance with a small tag walker of its own, bounded in nesting depth,
// element count and value size.
//
// Why not a dataset library: it needs only about forty top-level
// attributes, all before Pixel Data, so it stops there and never loads
// pixels; it skips sequences without building them (the corpus holds a file
// with 100,000 nested items); it allocates only for the values it keeps;
// and it handles data sets of any size (suyashkumar/dicom refuses those
// under 100 bytes and panics on about 1% of mutated inputs). It still
// recovers from a panic, should one slip in, as an *Error.
package header

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Transfer syntaxes whose encoding differs from explicit VR little endian.
const (
	ImplicitVRLittleEndian = "1.2.840.10008.1.2"
	ExplicitVRLittleEndian = "1.2.840.10008.1.2.1"
	DeflatedExplicitVRLE   = "1.2.840.10008.1.2.1.99"
	ExplicitVRBigEndian    = "1.2.840.10008.1.2.2"
)

// Limits bound the work one data set can cause. Zero fields take the
// Default… constants.
type Limits struct {
	MaxDepth    int   // sequence nesting
	MaxElements int   // elements, items and fragments, nested ones included
	MaxValueLen int   // bytes of one kept value
	MaxBytes    int64 // bytes read before Pixel Data (or the end)
}

// Default limits, far above any real CT header (a few hundred elements,
// nesting of 3–6 levels, values of a few hundred bytes).
const (
	DefaultMaxDepth    = 32
	DefaultMaxElements = 200_000
	DefaultMaxValueLen = 64 << 10
	DefaultMaxBytes    = 256 << 20
)

func (l Limits) withDefaults() Limits {
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxElements <= 0 {
		l.MaxElements = DefaultMaxElements
	}
	if l.MaxValueLen <= 0 {
		l.MaxValueLen = DefaultMaxValueLen
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	return l
}

const (
	tagItem          = 0xfffee000
	tagItemDelim     = 0xfffee00d
	tagSequenceDelim = 0xfffee0dd
	tagPixelData     = 0x7fe00010
	undefinedLength  = 0xffffffff
)

// errStop ends the walk at top-level Pixel Data.
var errStop = errors.New("stop")

type walker struct {
	r        *bufio.Reader
	off      int64
	bo       binary.ByteOrder
	explicit bool
	lim      Limits
	n        int
	a        *Attributes
	tag      uint32 // current element, for errors
	scratch  [12]byte
}

// ParseFile reads a Part 10 file: preamble and "DICM" (or neither, as old
// files have), the group 0002 file meta information, then the data set in
// the transfer syntax the meta names.
func ParseFile(r io.Reader, lim Limits) (a *Attributes, err error) {
	w := newWalker(r, lim)
	defer w.recover(&err)
	return w.file()
}

// ParseDataSet reads a bare data set (no preamble or meta) encoded in the
// transfer syntax ts.
func ParseDataSet(r io.Reader, ts string, lim Limits) (a *Attributes, err error) {
	w := newWalker(r, lim)
	defer w.recover(&err)
	w.a.TransferSyntaxUID = ts
	return w.dataSet(ts)
}

func newWalker(r io.Reader, lim Limits) *walker {
	return &walker{r: bufio.NewReaderSize(r, 4<<10), bo: binary.LittleEndian, explicit: true, lim: lim.withDefaults(), a: &Attributes{}}
}

func (w *walker) recover(err *error) {
	if p := recover(); p != nil {
		*err = &Error{Offset: w.off, Tag: w.tag, Reason: fmt.Sprintf("internal error: %v", p), Err: ErrMalformed}
	}
}

func (w *walker) fail(sentinel error, format string, args ...any) error {
	return &Error{Offset: w.off, Tag: w.tag, Reason: fmt.Sprintf(format, args...), Err: sentinel}
}

func (w *walker) file() (*Attributes, error) {
	if b, err := w.r.Peek(132); err == nil && string(b[128:]) == "DICM" {
		w.discard(132)
	}
	// The meta group is explicit VR little endian whatever follows.
	if b, err := w.r.Peek(2); err == nil && binary.LittleEndian.Uint16(b) == 0x0002 {
		for {
			b, err := w.r.Peek(2)
			if err != nil || binary.LittleEndian.Uint16(b) != 0x0002 {
				break
			}
			if err := w.element(0, true); err != nil {
				return nil, err
			}
		}
	}
	ts := w.a.TransferSyntaxUID
	if ts == "" {
		// No meta: guess from the first element, as readers of old files do.
		ts = ImplicitVRLittleEndian
		if b, err := w.r.Peek(6); err == nil && isVR(b[4], b[5]) {
			ts = ExplicitVRLittleEndian
		}
		w.a.TransferSyntaxUID = ts
	}
	return w.dataSet(ts)
}

func (w *walker) dataSet(ts string) (*Attributes, error) {
	switch ts {
	case ImplicitVRLittleEndian:
		w.explicit = false
	case ExplicitVRBigEndian:
		w.bo = binary.BigEndian
	case DeflatedExplicitVRLE:
		// PS3.5 A.5: the whole data set is one raw deflate stream.
		// Offsets in errors count inflated bytes from here on.
		w.r = bufio.NewReaderSize(flate.NewReader(w.r), 32<<10)
		w.off = 0
	}
	for {
		if _, err := w.r.Peek(1); err == io.EOF {
			break
		}
		if err := w.element(0, false); err == errStop {
			break
		} else if err != nil {
			return nil, err
		}
	}
	return w.a, w.check()
}

// check makes sure the attributes the store relies on are there.
func (w *walker) check() error {
	for _, u := range []struct{ name, v string }{
		{"SOPClassUID", w.a.SOPClassUID},
		{"SOPInstanceUID", w.a.SOPInstanceUID},
		{"StudyInstanceUID", w.a.StudyInstanceUID},
		{"SeriesInstanceUID", w.a.SeriesInstanceUID},
	} {
		if !validUID(u.v) {
			w.tag = 0
			return &Error{Offset: -1, Reason: fmt.Sprintf("%s %q missing or invalid", u.name, truncate(u.v, 20)), Err: ErrMissing}
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// validUID checks PS3.5 9.1 (the store validates again before using it).
func validUID(u string) bool {
	if u == "" || len(u) > 64 {
		return false
	}
	for _, c := range strings.Split(u, ".") {
		if c == "" || (len(c) > 1 && c[0] == '0') || strings.Trim(c, "0123456789") != "" {
			return false
		}
	}
	return true
}

func isVR(a, b byte) bool { return a >= 'A' && a <= 'Z' && b >= 'A' && b <= 'Z' }

func (w *walker) read(n int) ([]byte, error) {
	b := w.scratch[:n]
	k, err := io.ReadFull(w.r, b)
	w.off += int64(k)
	if err != nil {
		return nil, w.fail(ErrTruncated, "data ends inside an element header")
	}
	return b, nil
}

func (w *walker) discard(n int64) error {
	if w.off+n > w.lim.MaxBytes {
		return w.fail(ErrLimit, "length %d passes the %d-byte limit", n, w.lim.MaxBytes)
	}
	for n > 0 {
		k := int(min(n, 1<<30))
		d, err := w.r.Discard(k)
		w.off += int64(d)
		n -= int64(d)
		if err != nil {
			return w.fail(ErrTruncated, "value of %d bytes runs past the end", n+int64(d))
		}
	}
	return nil
}

func (w *walker) readTag() (uint32, error) {
	b, err := w.read(4)
	if err != nil {
		return 0, err
	}
	return uint32(w.bo.Uint16(b))<<16 | uint32(w.bo.Uint16(b[2:])), nil
}

// longVR are the explicit VRs with a 2-byte reserved field and a 32-bit
// length (PS3.5 7.1.2).
func longVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

// element reads one element and, for sequences, everything in it. meta
// forces explicit VR little endian (group 0002).
func (w *walker) element(depth int, meta bool) error {
	bo, explicit := w.bo, w.explicit
	if meta {
		w.bo, w.explicit = binary.LittleEndian, true
		defer func() { w.bo, w.explicit = bo, explicit }()
	}
	if w.off > w.lim.MaxBytes {
		return w.fail(ErrLimit, "more than %d bytes before Pixel Data", w.lim.MaxBytes)
	}
	start := w.off
	tag, err := w.readTag()
	if err != nil {
		return err
	}
	w.tag = tag
	if tag == tagItem || tag == tagItemDelim || tag == tagSequenceDelim {
		w.off = start
		return w.fail(ErrMalformed, "item tag outside a sequence")
	}
	if w.n++; w.n > w.lim.MaxElements {
		return w.fail(ErrLimit, "more than %d elements", w.lim.MaxElements)
	}
	var vr string
	var vl uint32
	if w.explicit {
		b, err := w.read(4)
		if err != nil {
			return err
		}
		vr = string(b[:2])
		if !isVR(b[0], b[1]) {
			// A printable but unknown VR gets a 2-byte length, as dcmtk
			// reads it; anything else is not explicit VR at all.
			if b[0] < 0x20 || b[0] > 0x7e || b[1] < 0x20 || b[1] > 0x7e {
				return w.fail(ErrMalformed, "VR %q is not two capital letters", b[:2])
			}
			vr = "??"
		}
		if longVR(vr) {
			if b, err = w.read(4); err != nil {
				return err
			}
			vl = w.bo.Uint32(b)
		} else {
			vl = uint32(w.bo.Uint16(b[2:]))
		}
	} else {
		b, err := w.read(4)
		if err != nil {
			return err
		}
		vl = w.bo.Uint32(b)
		vr = "UN"
		if f, ok := wanted[tag]; ok {
			vr = f.vr
		}
	}
	if depth == 0 && tag == tagPixelData {
		return errStop
	}
	f, keep := wanted[tag]
	switch {
	case vr == "SQ" || (vl == undefinedLength && vr == "UN" && tag != tagPixelData):
		// PS3.5 6.2.2: an undefined-length UN is an implicit VR sequence.
		if vr == "UN" {
			defer func(e bool) { w.explicit = e }(w.explicit)
			w.explicit = false
		}
		return w.sequence(depth+1, vl)
	case vl == undefinedLength:
		if vr != "OB" && vr != "OW" {
			return w.fail(ErrMalformed, "undefined length on VR %s", vr)
		}
		return w.fragments()
	case keep && depth == 0 && !meta:
		if int64(vl) > int64(w.lim.MaxValueLen) {
			return w.fail(ErrLimit, "value of %d bytes, limit %d", vl, w.lim.MaxValueLen)
		}
		v := make([]byte, vl)
		k, err := io.ReadFull(w.r, v)
		w.off += int64(k)
		if err != nil {
			return w.fail(ErrTruncated, "value of %d bytes runs past the end", vl)
		}
		return w.keep(f, vr, v)
	case meta && (tag == 0x00020010 || tag == 0x00020016):
		if vl > 64 {
			return w.fail(ErrMalformed, "value of %d bytes in the file meta", vl)
		}
		v := make([]byte, vl)
		k, err := io.ReadFull(w.r, v)
		w.off += int64(k)
		if err != nil {
			return w.fail(ErrTruncated, "value of %d bytes runs past the end", vl)
		}
		if tag == 0x00020010 {
			w.a.TransferSyntaxUID = strings.TrimRight(string(v), "\x00 ")
		} else {
			w.a.SourceApplicationEntityTitle = strings.Trim(w.text("AE", v), " ")
		}
		return nil
	default:
		return w.discard(int64(vl))
	}
}

// sequence walks the items of a sequence; vl is its length.
func (w *walker) sequence(depth int, vl uint32) error {
	if depth > w.lim.MaxDepth {
		return w.fail(ErrLimit, "sequences nested deeper than %d", w.lim.MaxDepth)
	}
	if vl != undefinedLength {
		// Nothing the index needs lives in sequences; skip them whole.
		return w.discard(int64(vl))
	}
	for {
		tag, err := w.readTag()
		if err != nil {
			return err
		}
		b, err := w.read(4)
		if err != nil {
			return err
		}
		il := w.bo.Uint32(b)
		switch tag {
		case tagSequenceDelim:
			return nil
		case tagItem:
		default:
			return w.fail(ErrMalformed, "element (%04X,%04X) where an item should be", tag>>16, tag&0xffff)
		}
		if w.n++; w.n > w.lim.MaxElements {
			return w.fail(ErrLimit, "more than %d elements", w.lim.MaxElements)
		}
		if il != undefinedLength {
			if err := w.discard(int64(il)); err != nil {
				return err
			}
			continue
		}
		if err := w.item(depth); err != nil {
			return err
		}
	}
}

// item walks the elements of an undefined-length item up to its delimiter.
func (w *walker) item(depth int) error {
	for {
		b, err := w.r.Peek(4)
		if err != nil {
			return w.fail(ErrTruncated, "data ends inside a sequence item")
		}
		if uint32(w.bo.Uint16(b))<<16|uint32(w.bo.Uint16(b[2:])) == tagItemDelim {
			if _, err := w.read(8); err != nil {
				return err
			}
			return nil
		}
		if err := w.element(depth, false); err != nil {
			return err
		}
	}
}

// fragments skips encapsulated pixel data: items of defined length up to a
// sequence delimiter (PS3.5 A.4).
func (w *walker) fragments() error {
	for {
		tag, err := w.readTag()
		if err != nil {
			return err
		}
		b, err := w.read(4)
		if err != nil {
			return err
		}
		fl := w.bo.Uint32(b)
		switch {
		case tag == tagSequenceDelim:
			return nil
		case tag != tagItem:
			return w.fail(ErrMalformed, "element (%04X,%04X) among pixel data fragments", tag>>16, tag&0xffff)
		case fl == undefinedLength:
			return w.fail(ErrMalformed, "fragment of undefined length")
		}
		if w.n++; w.n > w.lim.MaxElements {
			return w.fail(ErrLimit, "more than %d elements", w.lim.MaxElements)
		}
		if err := w.discard(int64(fl)); err != nil {
			return err
		}
	}
}

// keep decodes a wanted value into the attributes.
func (w *walker) keep(f field, vr string, v []byte) error {
	dst := f.set(w.a)
	switch f.kind {
	case kText:
		*dst.(*string) = w.text(vr, v)
	case kTexts:
		s := w.text(vr, v)
		if s != "" {
			parts := strings.Split(s, `\`)
			for i := range parts {
				parts[i] = strings.TrimSpace(parts[i])
			}
			*dst.(*[]string) = parts
		}
	case kUS:
		if vr != "US" || len(v) < 2 {
			w.invalid()
			return nil
		}
		n := int(w.bo.Uint16(v))
		*dst.(**int) = &n
	case kInt:
		s := strings.TrimSpace(strings.SplitN(w.text(vr, v), `\`, 2)[0])
		if s == "" {
			return nil
		}
		n, err := strconv.Atoi(strings.TrimPrefix(s, "+"))
		if err != nil {
			w.invalid()
			return nil
		}
		*dst.(**int) = &n
	case kFloat, kFloats:
		s := w.text(vr, v)
		if s == "" {
			return nil
		}
		parts := strings.Split(s, `\`)
		fs := make([]float64, len(parts))
		for i, p := range parts {
			x, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
			if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
				w.invalid()
				return nil
			}
			fs[i] = x
		}
		if f.kind == kFloat {
			*dst.(**float64) = &fs[0]
		} else if len(fs) == f.n {
			*dst.(*[]float64) = fs
		}
	}
	return nil
}

// invalid notes that the current element's value could not be decoded: a
// bad optional number is left out of the index rather than refusing the
// instance.
func (w *walker) invalid() {
	w.a.Invalid = append(w.a.Invalid, w.tag)
}

// text turns a value into trimmed UTF-8. Character sets: ISO_IR 192 is
// UTF-8 already; the default repertoire and ISO_IR 100 decode as Latin-1;
// other sets keep their ASCII and lose the rest to U+FFFD (the index needs
// valid UTF-8; the file keeps the original bytes).
func (w *walker) text(vr string, v []byte) string {
	v = bytes.TrimRight(v, "\x00 ")
	if vr != "UI" && vr != "DA" && vr != "TM" && vr != "CS" && vr != "DS" && vr != "IS" {
		v = bytes.TrimLeft(v, " ")
	}
	cs := ""
	if len(w.a.SpecificCharacterSet) > 0 {
		cs = w.a.SpecificCharacterSet[len(w.a.SpecificCharacterSet)-1]
	}
	switch {
	case utf8.Valid(v) && (cs == "ISO_IR 192" || isASCII(v)):
		return string(v)
	case cs == "" || cs == "ISO_IR 100" || cs == "ISO_IR 6":
		r := make([]rune, len(v))
		for i, c := range v {
			r[i] = rune(c)
		}
		return string(r)
	default:
		return strings.ToValidUTF8(string(v), "\uFFFD")
	}
}

func isASCII(v []byte) bool {
	for _, c := range v {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
