package series

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// ctSpec describes a crafted CT instance. Pixels are stored values
// (already in the Bits Stored / High Bit layout), one per pixel and frame.
type ctSpec struct {
	SOPClass, Modality, Series, SOPInstance string
	TS                                      string
	InstanceNumber                          int
	IPP                                     [3]float64
	IOP                                     [6]float64
	Spacing                                 [2]float64
	Rows, Cols                              int
	BitsAllocated, BitsStored, HighBit      int
	PixelRepresentation                     int
	Slope, Intercept                        float64
	Photometric                             string
	Pixels                                  []uint16
	// Enhanced CT: per-frame positions (Frames > 0 makes a multi-frame).
	FramePositions [][3]float64
	FrameIntercept []float64
	Padding        *int // Pixel Padding Value (written as SS when signed)
}

// baseSpec is a valid 16-bit signed 6×4 axial slice.
func baseSpec(k int) ctSpec {
	s := ctSpec{
		SOPClass: sopCT, Modality: "CT", Series: "1.2.826.0.1.3680043.2.1125.1",
		SOPInstance: fmt.Sprintf("1.2.826.0.1.3680043.2.1125.1.%d", k+1),
		TS:          tsExplicitLE, InstanceNumber: k + 1,
		IPP: [3]float64{-10, -20, 30 + 0.5*float64(k)}, IOP: [6]float64{1, 0, 0, 0, 1, 0},
		Spacing: [2]float64{0.3, 0.25}, Rows: 4, Cols: 6,
		BitsAllocated: 16, BitsStored: 16, HighBit: 15, PixelRepresentation: 1,
		Slope: 1, Intercept: -1024, Photometric: "MONOCHROME2",
	}
	s.Pixels = make([]uint16, s.Rows*s.Cols)
	for i := range s.Pixels {
		s.Pixels[i] = uint16(int16(i*100 - 1000 + 7*k))
	}
	return s
}

func ds(x ...float64) []string {
	out := make([]string, len(x))
	for i, v := range x {
		out[i] = strconv.FormatFloat(v, 'g', 10, 64)
	}
	return out
}

func el(t testing.TB, tg tag.Tag, v any) *dicom.Element {
	t.Helper()
	e, err := dicom.NewElement(tg, v)
	if err != nil {
		t.Fatalf("element %v: %v", tg, err)
	}
	return e
}

// writeCT writes s as a Part-10 file and returns its path.
func writeCT(t testing.TB, dir, name string, s ctSpec) string {
	t.Helper()
	nFrames := max(1, len(s.FramePositions))
	es := []*dicom.Element{
		el(t, tag.FileMetaInformationVersion, []byte{0, 1}),
		el(t, tag.MediaStorageSOPClassUID, []string{s.SOPClass}),
		el(t, tag.MediaStorageSOPInstanceUID, []string{s.SOPInstance}),
		el(t, tag.TransferSyntaxUID, []string{writableTS(s.TS)}),
		el(t, tag.SOPClassUID, []string{s.SOPClass}),
		el(t, tag.SOPInstanceUID, []string{s.SOPInstance}),
		el(t, tag.Modality, []string{s.Modality}),
		el(t, tag.StudyInstanceUID, []string{"1.2.826.0.1.3680043.2.1125.9"}),
		el(t, tag.SeriesInstanceUID, []string{s.Series}),
		el(t, tag.InstanceNumber, []string{strconv.Itoa(s.InstanceNumber)}),
		el(t, tag.SamplesPerPixel, []int{1}),
		el(t, tag.PhotometricInterpretation, []string{s.Photometric}),
		el(t, tag.Rows, []int{s.Rows}),
		el(t, tag.Columns, []int{s.Cols}),
		el(t, tag.BitsAllocated, []int{s.BitsAllocated}),
		el(t, tag.BitsStored, []int{s.BitsStored}),
		el(t, tag.HighBit, []int{s.HighBit}),
		el(t, tag.PixelRepresentation, []int{s.PixelRepresentation}),
	}
	if s.Padding != nil {
		e := el(t, tag.PixelPaddingValue, []int{*s.Padding})
		if s.PixelRepresentation == 1 {
			e.RawValueRepresentation = "SS"
		}
		es = append(es, e)
	}
	geom := []*dicom.Element{
		el(t, tag.ImagePositionPatient, ds(s.IPP[:]...)),
		el(t, tag.ImageOrientationPatient, ds(s.IOP[:]...)),
		el(t, tag.PixelSpacing, ds(s.Spacing[:]...)),
		el(t, tag.RescaleIntercept, ds(s.Intercept)),
		el(t, tag.RescaleSlope, ds(s.Slope)),
	}
	if len(s.FramePositions) == 0 {
		es = append(es, geom...)
	} else {
		es = append(es, el(t, tag.NumberOfFrames, []string{strconv.Itoa(nFrames)}))
		shared := [][]*dicom.Element{{
			el(t, tag.PixelMeasuresSequence, [][]*dicom.Element{{el(t, tag.PixelSpacing, ds(s.Spacing[:]...)), el(t, tag.SliceThickness, ds(0.5))}}),
			el(t, tag.PlaneOrientationSequence, [][]*dicom.Element{{el(t, tag.ImageOrientationPatient, ds(s.IOP[:]...))}}),
		}}
		var per [][]*dicom.Element
		for f, p := range s.FramePositions {
			item := []*dicom.Element{el(t, tag.PlanePositionSequence, [][]*dicom.Element{{el(t, tag.ImagePositionPatient, ds(p[:]...))}})}
			if s.FrameIntercept != nil {
				item = append(item, el(t, tag.PixelValueTransformationSequence, [][]*dicom.Element{{
					el(t, tag.RescaleIntercept, ds(s.FrameIntercept[f])), el(t, tag.RescaleSlope, ds(s.Slope)),
				}}))
			}
			per = append(per, item)
		}
		es = append(es,
			el(t, tag.SharedFunctionalGroupsSequence, shared),
			el(t, tag.PerFrameFunctionalGroupsSequence, per))
	}
	if len(s.Pixels) != nFrames*s.Rows*s.Cols {
		t.Fatalf("%d pixels for %d frames of %d×%d", len(s.Pixels), nFrames, s.Cols, s.Rows)
	}
	var raw []byte
	for _, p := range s.Pixels {
		switch {
		case s.BitsAllocated == 8:
			raw = append(raw, byte(p))
		case s.TS == tsExplicitBE:
			raw = binary.BigEndian.AppendUint16(raw, p)
		default:
			raw = binary.LittleEndian.AppendUint16(raw, p)
		}
	}
	if len(raw)%2 == 1 {
		raw = append(raw, 0)
	}
	pd := el(t, tag.PixelData, dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: raw})
	if s.BitsAllocated == 8 {
		pd.RawValueRepresentation = "OB"
	}
	es = append(es, pd)
	slices.SortStableFunc(es, func(a, b *dicom.Element) int {
		return int(a.Tag.Group)<<16 + int(a.Tag.Element) - (int(b.Tag.Group)<<16 + int(b.Tag.Element))
	})
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := dicom.Write(f, dicom.Dataset{Elements: es}, dicom.SkipVRVerification()); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
	if writableTS(s.TS) != s.TS {
		setTransferSyntax(t, path, s.TS)
	}
	return path
}

// writableTS is the syntax the library can write for s.TS: it refuses
// UIDs missing from its dictionary, which are exactly the ones we must
// test refusing. Those are written as explicit LE and patched afterwards.
func writableTS(ts string) string {
	switch ts {
	case tsImplicitLE, tsExplicitLE, tsExplicitBE, "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90":
		return ts
	}
	return tsExplicitLE
}

// setTransferSyntax rewrites (0002,0010) of a Part-10 file and fixes the
// file meta group length.
func setTransferSyntax(t testing.TB, path, ts string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	val := []byte(ts)
	if len(val)%2 == 1 {
		val = append(val, 0)
	}
	hdr := []byte{0x02, 0x00, 0x10, 0x00, 'U', 'I'}
	i := bytes.Index(b, hdr)
	if i < 0 {
		t.Fatal("no transfer syntax element")
	}
	old := int(binary.LittleEndian.Uint16(b[i+6:]))
	elem := append(append(append([]byte{}, hdr...), byte(len(val)), byte(len(val)>>8)), val...)
	out := append(append(append([]byte{}, b[:i]...), elem...), b[i+8+old:]...)
	// (0002,0000) UL group length is the first meta element, at 132.
	gl := binary.LittleEndian.Uint32(out[140:])
	binary.LittleEndian.PutUint32(out[140:], gl+uint32(len(val)-old))
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeStack writes n slices made by mod(k, spec) and returns their paths.
func writeStack(t testing.TB, n int, mod func(k int, s *ctSpec)) []string {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for k := 0; k < n; k++ {
		s := baseSpec(k)
		if mod != nil {
			mod(k, &s)
		}
		paths = append(paths, writeCT(t, dir, fmt.Sprintf("s%03d.dcm", k), s))
	}
	return paths
}
