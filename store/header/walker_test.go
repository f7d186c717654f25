package header

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// enc builds data sets for tests in one transfer syntax.
type enc struct {
	bo       binary.AppendByteOrder
	explicit bool
	b        []byte
}

func newEnc(ts string) *enc {
	switch ts {
	case ImplicitVRLittleEndian:
		return &enc{bo: binary.LittleEndian}
	case ExplicitVRBigEndian:
		return &enc{bo: binary.BigEndian, explicit: true}
	}
	return &enc{bo: binary.LittleEndian, explicit: true}
}

func (e *enc) tag(t uint32) {
	e.b = e.bo.AppendUint16(e.b, uint16(t>>16))
	e.b = e.bo.AppendUint16(e.b, uint16(t))
}

// head writes a tag, VR and length (vl may be undefinedLength).
func (e *enc) head(t uint32, vr string, vl uint32) {
	e.tag(t)
	if !e.explicit {
		e.b = e.bo.AppendUint32(e.b, vl)
		return
	}
	e.b = append(e.b, vr...)
	if longVR(vr) {
		e.b = append(e.b, 0, 0)
		e.b = e.bo.AppendUint32(e.b, vl)
	} else {
		e.b = e.bo.AppendUint16(e.b, uint16(vl))
	}
}

func (e *enc) str(t uint32, vr, v string) *enc {
	if len(v)%2 == 1 {
		if vr == "UI" {
			v += "\x00"
		} else {
			v += " "
		}
	}
	e.head(t, vr, uint32(len(v)))
	e.b = append(e.b, v...)
	return e
}

func (e *enc) us(t uint32, v uint16) *enc {
	e.head(t, "US", 2)
	e.b = e.bo.AppendUint16(e.b, v)
	return e
}

// item opens an undefined-length sequence with one undefined-length item,
// depth times nested.
func (e *enc) nested(t uint32, depth int) *enc {
	for range depth {
		e.head(t, "SQ", undefinedLength)
		e.tag(tagItem)
		e.b = e.bo.AppendUint32(e.b, undefinedLength)
	}
	for range depth {
		e.tag(tagItemDelim)
		e.b = e.bo.AppendUint32(e.b, 0)
		e.tag(tagSequenceDelim)
		e.b = e.bo.AppendUint32(e.b, 0)
	}
	return e
}

func (e *enc) uids() *enc {
	return e.str(0x00080016, "UI", "1.2.840.10008.5.1.4.1.1.2").
		str(0x00080018, "UI", "1.2.3.4.5.6.7").
		str(0x0020000d, "UI", "1.2.3.4").
		str(0x0020000e, "UI", "1.2.3.4.5")
}

// part10 prefixes a data set with a preamble and meta group.
func part10(ts string, ds []byte) []byte {
	m := newEnc(ExplicitVRLittleEndian)
	m.str(0x00020001, "OB", "\x00\x01").str(0x00020010, "UI", ts)
	var g []byte
	g = binary.LittleEndian.AppendUint16(g, 2)
	g = binary.LittleEndian.AppendUint16(g, 0)
	g = append(g, "UL"...)
	g = binary.LittleEndian.AppendUint16(g, 4)
	g = binary.LittleEndian.AppendUint32(g, uint32(len(m.b)))
	out := append(make([]byte, 128), "DICM"...)
	out = append(out, g...)
	out = append(out, m.b...)
	return append(out, ds...)
}

func ctHeader(ts string) []byte {
	e := newEnc(ts)
	e.str(0x00080005, "CS", "ISO_IR 100").
		str(0x00080008, "CS", `ORIGINAL\PRIMARY\AXIAL`).
		str(0x00080016, "UI", "1.2.840.10008.5.1.4.1.1.2").
		str(0x00080018, "UI", "1.2.3.4.5.6.7").
		str(0x00080060, "CS", "CT")
	e.nested(0x00081140, 3) // ReferencedImageSequence, nested items
	e.str(0x0008103e, "LO", "Felsenbein 0.6 H70h").
		str(0x00100010, "PN", "M\xfcller^J\xfcrgen").
		str(0x00100020, "LO", "PID1").
		str(0x00180050, "DS", "0.6").
		str(0x00181210, "SH", `H70h\J70h`).
		str(0x0020000d, "UI", "1.2.3.4").
		str(0x0020000e, "UI", "1.2.3.4.5").
		str(0x00200013, "IS", "17").
		str(0x00200032, "DS", `-120.5\-98.25\33.4`).
		str(0x00200037, "DS", `1\0\0\0\1\0`).
		str(0x00201002, "IS", "400").
		us(0x00280010, 512).us(0x00280011, 512).
		str(0x00280030, "DS", `0.25\0.25`)
	e.head(tagPixelData, "OW", 8)
	e.b = append(e.b, 1, 2, 3, 4, 5, 6, 7, 8)
	return e.b
}

func ptr[T any](v T) *T { return &v }

func TestParseTransferSyntaxes(t *testing.T) {
	want := &Attributes{
		SpecificCharacterSet:    []string{"ISO_IR 100"},
		ImageType:               []string{"ORIGINAL", "PRIMARY", "AXIAL"},
		SOPClassUID:             "1.2.840.10008.5.1.4.1.1.2",
		SOPInstanceUID:          "1.2.3.4.5.6.7",
		Modality:                "CT",
		SeriesDescription:       "Felsenbein 0.6 H70h",
		PatientName:             "Müller^Jürgen",
		PatientID:               "PID1",
		SliceThickness:          ptr(0.6),
		ConvolutionKernel:       []string{"H70h", "J70h"},
		StudyInstanceUID:        "1.2.3.4",
		SeriesInstanceUID:       "1.2.3.4.5",
		InstanceNumber:          ptr(17),
		ImagePositionPatient:    []float64{-120.5, -98.25, 33.4},
		ImageOrientationPatient: []float64{1, 0, 0, 0, 1, 0},
		ImagesInAcquisition:     ptr(400),
		Rows:                    ptr(512),
		Columns:                 ptr(512),
		PixelSpacing:            []float64{0.25, 0.25},
	}
	for _, ts := range []string{ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLE} {
		t.Run(ts, func(t *testing.T) {
			ds := ctHeader(ts)
			if ts == DeflatedExplicitVRLE {
				var buf bytes.Buffer
				zw, _ := flate.NewWriter(&buf, flate.BestSpeed)
				zw.Write(ds)
				zw.Close()
				ds = buf.Bytes()
			}
			w := *want
			w.TransferSyntaxUID = ts
			got, err := ParseFile(bytes.NewReader(part10(ts, ds)), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, &w) {
				t.Errorf("got  %+v\nwant %+v", got, &w)
			}
			got, err = ParseDataSet(bytes.NewReader(ds), ts, Limits{})
			if err != nil || !reflect.DeepEqual(got, &w) {
				t.Errorf("ParseDataSet: %v\n%+v", err, got)
			}
		})
	}
}

func TestParseSmallDataSet(t *testing.T) {
	// C-FIND identifiers and tiny instances are under 100 bytes.
	ds := newEnc(ImplicitVRLittleEndian).uids().b
	if len(ds) >= 100 {
		t.Fatalf("test data set has %d bytes", len(ds))
	}
	a, err := ParseDataSet(bytes.NewReader(ds), ImplicitVRLittleEndian, Limits{})
	if err != nil || a.SeriesInstanceUID != "1.2.3.4.5" {
		t.Fatalf("%v %+v", err, a)
	}
}

func TestParseRefusals(t *testing.T) {
	ex := ExplicitVRLittleEndian
	tests := []struct {
		name string
		ds   []byte
		lim  Limits
		want error
	}{
		{"deep nesting", newEnc(ex).uids().nested(0x00081140, 40).b, Limits{}, ErrLimit},
		{"nesting at the limit", newEnc(ex).uids().nested(0x00081140, 32).b, Limits{}, nil},
		{"element count", newEnc(ex).uids().nested(0x00081140, 10).b, Limits{MaxElements: 12}, ErrLimit},
		{"value size", newEnc(ex).str(0x00100010, "PN", strings.Repeat("A", 100)).uids().b, Limits{MaxValueLen: 64}, ErrLimit},
		{"skipped value over MaxBytes", func() []byte {
			e := newEnc(ex).uids()
			e.head(0x00091010, "OB", 1<<30)
			return e.b
		}(), Limits{}, ErrLimit},
		{"truncated value", func() []byte { b := newEnc(ex).uids().str(0x00100010, "PN", "ABCDEF").b; return b[:len(b)-3] }(), Limits{}, ErrTruncated},
		{"truncated header", append(newEnc(ex).uids().b, 0x10, 0x00), Limits{}, ErrTruncated},
		{"stray item", func() []byte {
			e := newEnc(ex).uids()
			e.tag(tagItem)
			e.b = binary.LittleEndian.AppendUint32(e.b, 0)
			return e.b
		}(), Limits{}, ErrMalformed},
		{"unterminated sequence", func() []byte {
			e := newEnc(ex).uids()
			e.head(0x00400275, "SQ", undefinedLength)
			e.tag(tagItem)
			e.b = binary.LittleEndian.AppendUint32(e.b, undefinedLength)
			return e.b
		}(), Limits{}, ErrTruncated},
		{"binary VR", append(newEnc(ex).uids().b, 0x10, 0x00, 0x10, 0x00, 0x01, 0x02, 0, 0), Limits{}, ErrMalformed},
		{"missing series", newEnc(ex).str(0x00080016, "UI", "1.2").str(0x00080018, "UI", "1.3").str(0x0020000d, "UI", "1.4").b, Limits{}, ErrMissing},
		{"invalid UID", newEnc(ex).str(0x00080016, "UI", "1.2").str(0x00080018, "UI", "../1").str(0x0020000d, "UI", "1.4").str(0x0020000e, "UI", "1.5").b, Limits{}, ErrMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDataSet(bytes.NewReader(tt.ds), ex, tt.lim)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			var pe *Error
			if err != nil && (!errors.As(err, &pe) || len(pe.Comment()) > 64) {
				t.Errorf("error %v is not an *Error with a short comment", err)
			}
		})
	}
}

func TestInvalidNumbersAreLeftOut(t *testing.T) {
	ds := newEnc(ExplicitVRLittleEndian).uids().str(0x00180050, "DS", "thin").str(0x00200013, "IS", "1A").b
	a, err := ParseDataSet(bytes.NewReader(ds), ExplicitVRLittleEndian, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if a.SliceThickness != nil || a.InstanceNumber != nil || !reflect.DeepEqual(a.Invalid, []uint32{0x00180050, 0x00200013}) {
		t.Errorf("got %+v", a)
	}
}

func TestErrorComment(t *testing.T) {
	e := &Error{Offset: 123456789, Tag: 0x7fe00010, Reason: strings.Repeat("é", 80), Err: ErrMalformed}
	c := e.Comment()
	if len(c) != 64 || strings.ContainsFunc(c, func(r rune) bool { return r > 0x7e }) {
		t.Errorf("comment %q", c)
	}
}

func FuzzParseFile(f *testing.F) {
	for _, ts := range []string{ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian} {
		f.Add(part10(ts, ctHeader(ts)))
		f.Add(ctHeader(ts))
	}
	f.Add(newEnc(ExplicitVRLittleEndian).uids().nested(0x00081140, 40).b)
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseFile(bytes.NewReader(b), Limits{MaxBytes: 1 << 20})
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("untyped error %v", err)
			}
			if strings.Contains(pe.Reason, "internal error") {
				t.Fatalf("panic: %v", err)
			}
			return
		}
		if !validUID(a.SOPInstanceUID) || !validUID(a.SeriesInstanceUID) || !validUID(a.StudyInstanceUID) {
			t.Fatalf("accepted invalid UIDs: %+v", a)
		}
	})
}
