package results

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// A small explicit VR little endian encoder of our own. suyashkumar/dicom
// writes in the order it is given (callers must sort, inside items too),
// cannot write 1-bit pixel data, writes strings as given without a charset
// check and panics on some element shapes; the objects here need none of its
// generality, so a data set is built as a list of typed elements that the
// encoder sorts and length-checks itself. The tag dictionary of
// suyashkumar/dicom supplies the VRs, so a tag is never typed twice.

// ErrEncode is wrapped by every encoding failure.
var ErrEncode = errors.New("results: cannot encode data set")

// dataSet is a DICOM data set under construction; encoding sorts it.
type dataSet struct {
	elems []elem
	err   error
}

type elem struct {
	t     tag.Tag
	vr    string
	val   []byte    // encoded value without padding
	items []dataSet // for SQ
}

// vrOf returns the VR the dictionary lists first for t.
func vrOf(t tag.Tag) string {
	info, err := tag.Find(t)
	if err != nil || len(info.VRs) == 0 {
		return ""
	}
	return info.VRs[0]
}

// set adds an element whose VR comes from the dictionary. v is a string,
// []string, int, []int, float64, []float64, []byte, tag.Tag, []tag.Tag or
// []dataSet.
func (d *dataSet) set(t tag.Tag, v any) {
	d.setVR(t, vrOf(t), v)
}

func (d *dataSet) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// setVR adds an element with an explicit VR.
func (d *dataSet) setVR(t tag.Tag, vr string, v any) {
	if vr == "" {
		d.fail(fmt.Errorf("%w: %v has no VR in the dictionary", ErrEncode, t))
		return
	}
	e := elem{t: t, vr: vr}
	var err error
	switch x := v.(type) {
	case string:
		e.val, err = encodeStrings(vr, []string{x})
	case []string:
		e.val, err = encodeStrings(vr, x)
	case int:
		e.val, err = encodeInts(vr, []int{x})
	case []int:
		e.val, err = encodeInts(vr, x)
	case float64:
		e.val, err = encodeFloats(vr, []float64{x})
	case []float64:
		e.val, err = encodeFloats(vr, x)
	case []byte:
		if vr != "OB" && vr != "OW" && vr != "UN" {
			err = fmt.Errorf("bytes for VR %s", vr)
		}
		e.val = x
	case tag.Tag:
		e.val, err = encodeTags(vr, []tag.Tag{x})
	case []tag.Tag:
		e.val, err = encodeTags(vr, x)
	case []dataSet:
		if vr != "SQ" {
			err = fmt.Errorf("items for VR %s", vr)
		}
		for _, it := range x {
			if it.err != nil {
				err = it.err
			}
		}
		e.items = x
	default:
		err = fmt.Errorf("value of type %T", v)
	}
	if err != nil {
		d.fail(fmt.Errorf("%w: %v: %w", ErrEncode, t, err))
		return
	}
	d.elems = append(d.elems, e)
}

// seq adds a sequence of the given items.
func (d *dataSet) seq(t tag.Tag, items ...dataSet) { d.set(t, items) }

// get returns the encoded value of t at the top level, for file meta.
func (d *dataSet) getString(t tag.Tag) string {
	for _, e := range d.elems {
		if e.t == t {
			return string(e.val)
		}
	}
	return ""
}

func isStringVR(vr string) bool {
	switch vr {
	case "AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT":
		return true
	}
	return false
}

// maxLen is the maximum length of one value of a string VR (PS3.5 Table
// 6.2-1), in bytes; PN is 64 characters per component group, checked loosely.
var maxLen = map[string]int{
	"AE": 16, "AS": 4, "CS": 16, "DA": 8, "DS": 16, "IS": 12, "LO": 64,
	"SH": 16, "TM": 14, "UI": 64, "PN": 64 * 3, "DT": 26,
}

func encodeStrings(vr string, vals []string) ([]byte, error) {
	if !isStringVR(vr) {
		return nil, fmt.Errorf("strings for VR %s", vr)
	}
	for _, s := range vals {
		if n, ok := maxLen[vr]; ok && len(s) > n {
			return nil, fmt.Errorf("value %q longer than %d for VR %s", s, n, vr)
		}
		if vr != "LT" && vr != "ST" && vr != "UT" && vr != "UR" && strings.Contains(s, `\`) {
			return nil, fmt.Errorf("value %q contains a backslash", s)
		}
	}
	return []byte(strings.Join(vals, `\`)), nil
}

func encodeInts(vr string, vals []int) ([]byte, error) {
	var b []byte
	switch vr {
	case "US", "SS":
		for _, v := range vals {
			if v < -32768 || v > 65535 {
				return nil, fmt.Errorf("%d out of range for %s", v, vr)
			}
			b = binary.LittleEndian.AppendUint16(b, uint16(v))
		}
	case "UL", "SL":
		for _, v := range vals {
			if v < math.MinInt32 || v > math.MaxUint32 {
				return nil, fmt.Errorf("%d out of range for %s", v, vr)
			}
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
		}
	case "IS":
		s := make([]string, len(vals))
		for i, v := range vals {
			s[i] = strconv.Itoa(v)
		}
		return encodeStrings(vr, s)
	default:
		return nil, fmt.Errorf("ints for VR %s", vr)
	}
	return b, nil
}

func encodeFloats(vr string, vals []float64) ([]byte, error) {
	var b []byte
	switch vr {
	case "FD":
		for _, v := range vals {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		}
	case "FL":
		for _, v := range vals {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(v)))
		}
	case "DS":
		s := make([]string, len(vals))
		for i, v := range vals {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%v is not a decimal string", v)
			}
			s[i] = formatDS(v)
		}
		return encodeStrings(vr, s)
	default:
		return nil, fmt.Errorf("floats for VR %s", vr)
	}
	return b, nil
}

// formatDS renders v in at most 16 characters, as precisely as fits.
func formatDS(v float64) string {
	for p := 17; p > 0; p-- {
		s := strconv.FormatFloat(v, 'g', p, 64)
		if len(s) <= 16 {
			// Prefer the shortest exact form when it is shorter.
			if short := strconv.FormatFloat(v, 'g', -1, 64); len(short) <= len(s) {
				return short
			}
			return s
		}
	}
	return "0"
}

func encodeTags(vr string, vals []tag.Tag) ([]byte, error) {
	if vr != "AT" {
		return nil, fmt.Errorf("tags for VR %s", vr)
	}
	var b []byte
	for _, t := range vals {
		b = binary.LittleEndian.AppendUint16(b, t.Group)
		b = binary.LittleEndian.AppendUint16(b, t.Element)
	}
	return b, nil
}

// longVR reports whether a VR has a 4-byte length in explicit VR encoding.
func longVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV":
		return true
	}
	return false
}

// encode writes d sorted by tag in explicit VR little endian, sequences and
// items with defined lengths.
func (d *dataSet) encode(buf *bytes.Buffer) error {
	if d.err != nil {
		return d.err
	}
	elems := append([]elem(nil), d.elems...)
	sort.SliceStable(elems, func(i, j int) bool { return elems[i].t.Compare(elems[j].t) < 0 })
	for i := 1; i < len(elems); i++ {
		if elems[i].t == elems[i-1].t {
			return fmt.Errorf("%w: %v set twice", ErrEncode, elems[i].t)
		}
	}
	for _, e := range elems {
		val := e.val
		if e.vr == "SQ" {
			var items bytes.Buffer
			for _, it := range e.items {
				var ib bytes.Buffer
				if err := it.encode(&ib); err != nil {
					return err
				}
				writeItemHeader(&items, uint32(ib.Len()))
				items.Write(ib.Bytes())
			}
			val = items.Bytes()
		} else if len(val)%2 == 1 {
			pad := byte(' ')
			if e.vr == "UI" || e.vr == "OB" || e.vr == "UN" {
				pad = 0
			}
			val = append(val[:len(val):len(val)], pad)
		}
		binary.Write(buf, binary.LittleEndian, [2]uint16{e.t.Group, e.t.Element})
		buf.WriteString(e.vr)
		if longVR(e.vr) {
			if uint64(len(val)) >= 0xFFFFFFFF {
				return fmt.Errorf("%w: %v value too long", ErrEncode, e.t)
			}
			buf.Write([]byte{0, 0})
			binary.Write(buf, binary.LittleEndian, uint32(len(val)))
		} else {
			if len(val) > 0xFFFF {
				return fmt.Errorf("%w: %v value of %d bytes exceeds VR %s", ErrEncode, e.t, len(val), e.vr)
			}
			binary.Write(buf, binary.LittleEndian, uint16(len(val)))
		}
		buf.Write(val)
	}
	return nil
}

func writeItemHeader(buf *bytes.Buffer, n uint32) {
	binary.Write(buf, binary.LittleEndian, [2]uint16{0xFFFE, 0xE000})
	binary.Write(buf, binary.LittleEndian, n)
}

// Transfer syntax and implementation identity written in the file meta.
const (
	explicitVRLittleEndian = "1.2.840.10008.1.2.1"
	implementationVersion  = "OTONODE_1"
)

// encodeFile returns d as a DICOM Part 10 file in explicit VR little
// endian; the file meta's SOP class and instance are taken from d itself, so
// they cannot disagree with the data set.
func encodeFile(d *dataSet, implementationClassUID string) ([]byte, error) {
	sopClass := strings.TrimRight(d.getString(tag.SOPClassUID), "\x00")
	sopInstance := strings.TrimRight(d.getString(tag.SOPInstanceUID), "\x00")
	if sopClass == "" || sopInstance == "" {
		return nil, fmt.Errorf("%w: SOPClassUID or SOPInstanceUID missing", ErrEncode)
	}
	var meta dataSet
	meta.set(tag.FileMetaInformationVersion, []byte{0, 1})
	meta.set(tag.MediaStorageSOPClassUID, sopClass)
	meta.set(tag.MediaStorageSOPInstanceUID, sopInstance)
	meta.set(tag.TransferSyntaxUID, explicitVRLittleEndian)
	meta.set(tag.ImplementationClassUID, implementationClassUID)
	meta.set(tag.ImplementationVersionName, implementationVersion)
	var mb bytes.Buffer
	if err := meta.encode(&mb); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.Write(make([]byte, 128))
	out.WriteString("DICM")
	var gl dataSet
	gl.set(tag.FileMetaInformationGroupLength, mb.Len())
	if err := gl.encode(&out); err != nil {
		return nil, err
	}
	out.Write(mb.Bytes())
	if err := d.encode(&out); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
