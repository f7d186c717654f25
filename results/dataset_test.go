package results

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/otonode/otonode/analysis"
)

func TestEncodeSortsAndPads(t *testing.T) {
	var item dataSet
	item.set(tag.CodeMeaning, "odd") // (0008,0104) after (0008,0100)
	item.set(tag.CodeValue, "1")
	var d dataSet
	d.set(tag.SOPInstanceUID, "1.2.3") // odd length, pads with NUL
	d.set(tag.SOPClassUID, "1.2")
	d.set(tag.PatientName, "Ö") // 2 bytes in UTF-8, stays as is
	d.seq(tag.ConceptNameCodeSequence, item)
	d.set(tag.DimensionIndexPointer, tag.ImagePositionPatient)
	d.set(tag.Modality, "SEG")
	var buf bytes.Buffer
	if err := d.encode(&buf); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	want := []struct {
		tag  tag.Tag
		body string
	}{
		{tag.SOPClassUID, "\x08\x00\x16\x00UI\x04\x001.2\x00"},
		{tag.SOPInstanceUID, "\x08\x00\x18\x00UI\x06\x001.2.3\x00"},
		{tag.Modality, "\x08\x00\x60\x00CS\x04\x00SEG "},
		{tag.PatientName, "\x10\x00\x10\x00PN\x02\x00\xc3\x96"},
		{tag.DimensionIndexPointer, "\x20\x00\x65\x91AT\x04\x00\x20\x00\x32\x00"},
		{tag.ConceptNameCodeSequence, "\x40\x00\x43\xa0SQ\x00\x00\x1e\x00\x00\x00\xfe\xff\x00\xe0\x16\x00\x00\x00\x08\x00\x00\x01SH\x02\x001 \x08\x00\x04\x01LO\x04\x00odd "},
	}
	var expect []byte
	for _, w := range want {
		expect = append(expect, w.body...)
	}
	if !bytes.Equal(b, expect) {
		t.Fatalf("encoded\n%q\nwant\n%q", b, expect)
	}
}

func TestEncodeRejects(t *testing.T) {
	tests := []struct {
		name string
		fill func(d *dataSet)
	}{
		{"duplicate tag", func(d *dataSet) { d.set(tag.Modality, "SR"); d.set(tag.Modality, "SEG") }},
		{"too long CS", func(d *dataSet) { d.set(tag.ContentLabel, strings.Repeat("A", 17)) }},
		{"backslash in a value", func(d *dataSet) { d.set(tag.SeriesDescription, `a\b`) }},
		{"US out of range", func(d *dataSet) { d.set(tag.Rows, 70000) }},
		{"NaN decimal", func(d *dataSet) { d.set(tag.SliceThickness, nanValue()) }},
		{"wrong value type", func(d *dataSet) { d.set(tag.Rows, "12") }},
		{"bad item", func(d *dataSet) {
			var it dataSet
			it.set(tag.Rows, 1e3)
			d.seq(tag.SegmentSequence, it)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d dataSet
			tt.fill(&d)
			var buf bytes.Buffer
			if err := d.encode(&buf); !errors.Is(err, ErrEncode) {
				t.Fatalf("encode error %v, want ErrEncode", err)
			}
		})
	}
}

func nanValue() float64 {
	var zero float64
	return zero / zero
}

func TestFormatDS(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0.5, "0.5"},
		{-12.25, "-12.25"},
		{1.0 / 3, "0.33333333333333"},
		{123456789.123456789, "123456789.123457"},
		{1e-20, "1e-20"},
	}
	for _, tt := range tests {
		got := formatDS(tt.in)
		if got != tt.want || len(got) > 16 {
			t.Errorf("formatDS(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLO(t *testing.T) {
	long := strings.Repeat("ü", 40) // 80 bytes
	if got := lo(long); len(got) > 64 || !strings.HasPrefix(long, got) {
		t.Fatalf("lo cut %q badly", got)
	}
	if got := lo(`a\b` + "\n"); got != "a/b" {
		t.Fatalf("lo = %q", got)
	}
	m := algorithmNameFor(strings.Repeat("x", 80), true)
	if len(m) > 64 || !strings.HasSuffix(m, "("+notForDiagnosis+")") {
		t.Fatalf("algorithm name %q", m)
	}
}

func algorithmNameFor(name string, nfd bool) string {
	return algorithmName(analysis.Model{Name: name, NotForDiagnosis: nfd})
}
