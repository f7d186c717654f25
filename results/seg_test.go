package results

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/otonode/otonode/analysis"
	"github.com/otonode/otonode/analysis/volume"
)

func TestPackBits(t *testing.T) {
	tests := []struct {
		name string
		bits []bool
		want []byte
	}{
		{"first pixel in lowest bit", []bool{true}, []byte{0x01, 0}},
		{"eighth pixel in highest bit", []bool{false, false, false, false, false, false, false, true}, []byte{0x80, 0}},
		{"ninth pixel starts byte two", []bool{true, false, false, false, false, false, false, false, true}, []byte{0x01, 0x01}},
		{"odd byte count padded", []bool{false, false, false, false, false, false, false, false, false, false, false, false, false, false, false, false, false, true}, []byte{0, 0, 0x02, 0}},
		{"no bits", nil, []byte{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := packBits(len(tt.bits), func(i int) bool { return tt.bits[i] })
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("packBits = %x, want %x", got, tt.want)
			}
		})
	}
}

func TestCIELab(t *testing.T) {
	// The reference computes Slicer's inner-ear colour as (44977, 40047, 40139).
	got := cieLab([3]uint8{229, 147, 118})
	want := []int{44977, 40047, 40139}
	for i := range want {
		if d := got[i] - want[i]; d < -2 || d > 2 {
			t.Fatalf("cieLab = %v, want %v", got, want)
		}
	}
}

// unpack reads bit i of continuously packed frames, first pixel lowest.
func unpack(b []byte, i int) bool { return b[i>>3]>>(i&7)&1 == 1 }

// TestSEGDecodesToLabel decodes every frame back onto the source grid,
// through the per-frame Plane Position and Segment Identification, and
// compares with the analysis labels voxel by voxel.
func TestSEGDecodesToLabel(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bc := tc.build(t)
			seg, err := bc.writer.SEG(bc.src, bc.res)
			if err != nil {
				t.Fatal(err)
			}
			meta, ds := parseFile(t, seg.File)
			checkSEGStructure(t, bc, seg, meta, ds)

			rows, cols := ds.ints(tag.Rows)[0], ds.ints(tag.Columns)[0]
			plane := rows * cols
			px := ds.el(tag.PixelData).Value.GetValue()
			raw := pixelBytes(t, px)
			frames := ds.items(tag.PerFrameFunctionalGroupsSequence)
			if want := (len(frames)*plane + 7) / 8; len(raw) != want+want%2 {
				t.Fatalf("PixelData %d bytes, want %d", len(raw), want+want%2)
			}
			// Rebuild one label volume per segment from the frames.
			inv, err := bc.src.Grid().Affine.Inverse()
			if err != nil {
				t.Fatal(err)
			}
			got := make(map[int]*volume.Volume[uint8])
			for f, fg := range frames {
				segNo := fg.item(t, tag.SegmentIdentificationSequence).ints(tag.ReferencedSegmentNumber)[0]
				ipp := fg.item(t, tag.PlanePositionSequence).floats(tag.ImagePositionPatient)
				ijk := inv.Apply([3]float64{ipp[0], ipp[1], ipp[2]})
				k := int(math.Round(ijk[2]))
				if math.Abs(ijk[0]) > 1e-3 || math.Abs(ijk[1]) > 1e-3 || math.Abs(ijk[2]-float64(k)) > 1e-3 {
					t.Fatalf("frame %d position %v is off the source grid (index %v)", f+1, ipp, ijk)
				}
				if got[segNo] == nil {
					got[segNo] = volume.New[uint8](bc.src.Grid())
				}
				v := got[segNo]
				for p := 0; p < plane; p++ {
					if unpack(raw, f*plane+p) {
						v.Data[k*plane+p] = 1
					}
				}
			}
			for _, s := range seg.Segments {
				truth := bc.truth[s.Laterality]
				v := got[s.Number]
				if v == nil {
					t.Fatalf("segment %d has no frames", s.Number)
				}
				diff := 0
				for i, x := range truth.Data {
					want := uint8(0)
					if s.Structure.contains(x) {
						want = 1
					}
					if v.Data[i] != want {
						diff++
					}
				}
				if diff != 0 {
					t.Fatalf("segment %d (%s): %d voxels differ from the label", s.Number, s.Label, diff)
				}
			}
		})
	}
}

func pixelBytes(t *testing.T, v any) []byte {
	t.Helper()
	if info, ok := v.(dicom.PixelDataInfo); ok && info.IntentionallyUnprocessed {
		return info.UnprocessedValueData
	}
	t.Fatalf("pixel data of type %T", v)
	return nil
}

// checkSEGStructure holds the checks dciodvfy does not make (reference §4.3).
func checkSEGStructure(t *testing.T, bc *builtCase, seg *SEG, meta, ds node) {
	t.Helper()
	if got := meta.str(tag.MediaStorageSOPInstanceUID); got != ds.str(tag.SOPInstanceUID) || got != seg.SOPInstanceUID {
		t.Errorf("file meta SOP instance %q, data set %q, returned %q", got, ds.str(tag.SOPInstanceUID), seg.SOPInstanceUID)
	}
	if meta.str(tag.MediaStorageSOPClassUID) != SegmentationStorage || ds.str(tag.SOPClassUID) != SegmentationStorage {
		t.Errorf("SOP class meta %q data set %q", meta.str(tag.MediaStorageSOPClassUID), ds.str(tag.SOPClassUID))
	}
	if meta.str(tag.TransferSyntaxUID) != explicitVRLittleEndian {
		t.Errorf("transfer syntax %q", meta.str(tag.TransferSyntaxUID))
	}
	if ds.str(tag.SpecificCharacterSet) != "ISO_IR 192" {
		t.Errorf("SpecificCharacterSet %q", ds.str(tag.SpecificCharacterSet))
	}
	if ds.str(tag.PatientName) != bc.spec.patientName {
		t.Errorf("PatientName %q, want %q", ds.str(tag.PatientName), bc.spec.patientName)
	}
	if ds.str(tag.FrameOfReferenceUID) != bc.src.FrameOfReferenceUID || ds.str(tag.StudyInstanceUID) != bc.src.StudyInstanceUID {
		t.Error("SEG not in the source's study and frame of reference")
	}
	shared := ds.item(t, tag.SharedFunctionalGroupsSequence)
	pm := shared.item(t, tag.PixelMeasuresSequence)
	if ps := pm.floats(tag.PixelSpacing); len(ps) != 2 || ps[0] != bc.src.PixelSpacing[0] || ps[1] != bc.src.PixelSpacing[1] {
		t.Errorf("PixelSpacing %v, want %v", ps, bc.src.PixelSpacing)
	}
	if sb := pm.floats(tag.SpacingBetweenSlices); len(sb) != 1 || math.Abs(sb[0]-bc.src.SliceSpacing()) > 1e-6 {
		t.Errorf("SpacingBetweenSlices %v", sb)
	}
	if iop := shared.item(t, tag.PlaneOrientationSequence).floats(tag.ImageOrientationPatient); len(iop) != 6 {
		t.Errorf("shared ImageOrientationPatient %v", iop)
	}
	// Dimension pointers.
	org := ds.item(t, tag.DimensionOrganizationSequence).str(tag.DimensionOrganizationUID)
	dims := ds.items(tag.DimensionIndexSequence)
	wantDims := [][4]int{
		{0x0062, 0x000B, 0x0062, 0x000A},
		{0x0020, 0x0032, 0x0020, 0x9113},
	}
	if len(dims) != len(wantDims) {
		t.Fatalf("%d dimension indices", len(dims))
	}
	for i, d := range dims {
		p, g := d.ints(tag.DimensionIndexPointer), d.ints(tag.FunctionalGroupPointer)
		if len(p) != 2 || len(g) != 2 || p[0] != wantDims[i][0] || p[1] != wantDims[i][1] || g[0] != wantDims[i][2] || g[1] != wantDims[i][3] {
			t.Errorf("dimension %d: pointer %x group %x", i, p, g)
		}
		if d.str(tag.DimensionOrganizationUID) != org {
			t.Errorf("dimension %d organisation %q, want %q", i, d.str(tag.DimensionOrganizationUID), org)
		}
	}
	// Segments: numbers 1..n, codes, laterality, algorithm.
	segs := ds.items(tag.SegmentSequence)
	if len(segs) != len(seg.Segments) {
		t.Fatalf("%d segments, returned %d", len(segs), len(seg.Segments))
	}
	for i, s := range segs {
		if n := s.ints(tag.SegmentNumber); len(n) != 1 || n[0] != i+1 {
			t.Errorf("segment %d number %v", i, n)
		}
		if s.str(tag.SegmentAlgorithmType) != "AUTOMATIC" || s.str(tag.SegmentAlgorithmName) == "" {
			t.Errorf("segment %d algorithm %q %q", i, s.str(tag.SegmentAlgorithmType), s.str(tag.SegmentAlgorithmName))
		}
		if bc.res.Model.NotForDiagnosis && !strings.Contains(s.str(tag.SegmentAlgorithmName), notForDiagnosis) {
			t.Errorf("segment %d algorithm name %q does not say %s", i, s.str(tag.SegmentAlgorithmName), notForDiagnosis)
		}
		typ := s.item(t, tag.SegmentedPropertyTypeCodeSequence)
		if got, want := typ.code(tag.SegmentedPropertyTypeModifierCodeSequence), lateralityCode(seg.Segments[i].Laterality); got != want {
			t.Errorf("segment %d laterality %v, want %v", i, got, want)
		}
		if got := s.code(tag.SegmentedPropertyCategoryCodeSequence); got != codeAnatomicalStructure {
			t.Errorf("segment %d category %v", i, got)
		}
		if s.str(tag.TrackingUID) != seg.Segments[i].TrackingUID {
			t.Errorf("segment %d TrackingUID", i)
		}
	}
	if desc := ds.str(tag.SeriesDescription); bc.res.Model.NotForDiagnosis != strings.Contains(desc, notForDiagnosis) {
		t.Errorf("SeriesDescription %q (not for diagnosis: %v)", desc, bc.res.Model.NotForDiagnosis)
	}
	// Frames: count, order (segment, then position along the normal),
	// index values, source references matching the position, and every slice
	// of each segment's span present.
	frames := ds.items(tag.PerFrameFunctionalGroupsSequence)
	if nf := ds.str(tag.NumberOfFrames); nf != itoa(len(frames)) {
		t.Fatalf("NumberOfFrames %s, %d per-frame items", nf, len(frames))
	}
	bySOP := make(map[string]Slice)
	for _, sl := range bc.src.Slices {
		bySOP[sl.SOPInstanceUID] = sl
	}
	nv := bc.src.normal()
	prevSeg, prevPos := 0, math.Inf(-1)
	perSeg := make(map[int]int)
	for f, fg := range frames {
		segNo := fg.item(t, tag.SegmentIdentificationSequence).ints(tag.ReferencedSegmentNumber)[0]
		div := fg.item(t, tag.FrameContentSequence).ints(tag.DimensionIndexValues)
		ipp := fg.item(t, tag.PlanePositionSequence).floats(tag.ImagePositionPatient)
		src := fg.item(t, tag.DerivationImageSequence).item(t, tag.SourceImageSequence)
		if len(div) != 2 || div[0] != segNo {
			t.Fatalf("frame %d: DimensionIndexValues %v for segment %d", f+1, div, segNo)
		}
		sl, ok := bySOP[src.str(tag.ReferencedSOPInstanceUID)]
		if !ok || src.str(tag.ReferencedSOPClassUID) != sl.SOPClassUID {
			t.Fatalf("frame %d references an unknown source instance", f+1)
		}
		for a := 0; a < 3; a++ {
			if math.Abs(ipp[a]-sl.ImagePositionPatient[a]) > 1e-6 {
				t.Fatalf("frame %d at %v but its source slice is at %v", f+1, ipp, sl.ImagePositionPatient)
			}
		}
		pos := dot(nv, [3]float64{ipp[0], ipp[1], ipp[2]})
		if segNo < prevSeg || (segNo == prevSeg && pos <= prevPos) {
			t.Fatalf("frame %d out of order: segment %d position %.3f after %d %.3f", f+1, segNo, pos, prevSeg, prevPos)
		}
		if segNo == prevSeg && div[1] != perSeg[segNo]+1 {
			// Position indices of one segment are consecutive: no slice of
			// its span is left out, empty or not.
			t.Fatalf("frame %d: position index %d does not follow the previous frame's", f+1, div[1])
		}
		prevSeg, prevPos = segNo, pos
		perSeg[segNo] = div[1]
	}
	for _, s := range seg.Segments {
		if s.Frames < 3 {
			t.Errorf("segment %d spans only %d frames; the test pattern should span more", s.Number, s.Frames)
		}
	}
	refSeries := ds.item(t, tag.ReferencedSeriesSequence)
	if refSeries.str(tag.SeriesInstanceUID) != bc.src.SeriesInstanceUID || len(refSeries.items(tag.ReferencedInstanceSequence)) != len(bc.src.Slices) {
		t.Error("ReferencedSeriesSequence does not list every source instance")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestSEGRejectsBadInput(t *testing.T) {
	bc := cases[0].build(t)
	other := cases[1].build(t)
	tests := []struct {
		name   string
		mutate func(r *analysis.Result, w *Writer) *Source
		want   error
	}{
		{"label of another grid", func(r *analysis.Result, w *Writer) *Source { return other.src }, ErrSource},
		{"empty ear", func(r *analysis.Result, w *Writer) *Source {
			r.Ears[0].Label = volume.New[uint8](bc.src.Grid())
			return bc.src
		}, ErrResult},
		{"per-structure ear without any structure", func(r *analysis.Result, w *Writer) *Source {
			w.Structures = PerStructure()
			lab := volume.New[uint8](bc.src.Grid())
			for i := range lab.Data {
				lab.Data[i] = 9 // a value no structure claims
			}
			r.Ears[1].Label = lab
			return bc.src
		}, ErrResult},
		{"no label", func(r *analysis.Result, w *Writer) *Source { r.Ears[1].Label = nil; return bc.src }, ErrResult},
		{"no model name", func(r *analysis.Result, w *Writer) *Source { r.Model.Name = ""; return bc.src }, ErrResult},
		{"no ears", func(r *analysis.Result, w *Writer) *Source { r.Ears = nil; return bc.src }, ErrResult},
		{"bad laterality", func(r *analysis.Result, w *Writer) *Source { r.Ears[0].Laterality = "B"; return bc.src }, ErrResult},
		{"no UID generator", func(r *analysis.Result, w *Writer) *Source { w.UIDs = nil; return bc.src }, ErrResult},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := *bc.res
			res.Ears = append([]analysis.Ear(nil), bc.res.Ears...)
			w := *bc.writer
			src := tt.mutate(&res, &w)
			_, err := w.SEG(src, &res)
			if !errors.Is(err, tt.want) {
				t.Fatalf("SEG error %v, want %v", err, tt.want)
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	a, b := cases[0].build(t), cases[0].build(t)
	segA, err := a.writer.SEG(a.src, a.res)
	if err != nil {
		t.Fatal(err)
	}
	segB, err := b.writer.SEG(b.src, b.res)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(segA.File, segB.File) {
		t.Fatal("the same result written twice gives different SEGs")
	}
	srA, err := a.writer.SR(a.src, a.res, segA, a.extras)
	if err != nil {
		t.Fatal(err)
	}
	srB, err := b.writer.SR(b.src, b.res, segB, b.extras)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(srA.File, srB.File) {
		t.Fatal("the same result written twice gives different SRs")
	}
	b.writer.UIDs = HashUIDs{Seed: "another revision"}
	segC, err := b.writer.SEG(b.src, b.res)
	if err != nil {
		t.Fatal(err)
	}
	if segC.SOPInstanceUID == segA.SOPInstanceUID {
		t.Fatal("another seed gives the same SOP instance UID")
	}
}

func TestUIDs(t *testing.T) {
	gens := []struct {
		name string
		g    UIDGenerator
	}{
		{"2.25 hash", HashUIDs{Seed: "s"}},
		{"root hash", HashUIDs{Root: "1.2.826.0.1.3680043.10.1234", Seed: "s"}},
		{"random", RandomUIDs{}},
		{"random root", RandomUIDs{Root: "1.2.3."}},
	}
	for _, tt := range gens {
		t.Run(tt.name, func(t *testing.T) {
			seen := make(map[string]bool)
			for i := 0; i < 200; i++ {
				u := tt.g.UID("key" + itoa(i))
				if len(u) > 64 || seen[u] {
					t.Fatalf("UID %q: length %d, duplicate %v", u, len(u), seen[u])
				}
				seen[u] = true
				for _, c := range strings.Split(u, ".") {
					if c == "" || (len(c) > 1 && c[0] == '0') || strings.Trim(c, "0123456789") != "" {
						t.Fatalf("UID %q has a bad component %q", u, c)
					}
				}
			}
		})
	}
}

// A structure the model did not find in one ear gets no segment; the rest
// are written and the SR follows the segments.
func TestSEGSkipsMissingStructure(t *testing.T) {
	var tc testCase
	for _, c := range cases {
		if c.structures != nil {
			tc = c
		}
	}
	bc := tc.build(t)
	lab := bc.res.Ears[0].Label
	for i, v := range lab.Data {
		if v == analysis.LabelCanals {
			lab.Data[i] = 0
		}
	}
	seg, sr, err := bc.writer.Write(bc.src, bc.res, bc.extras)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2*len(PerStructure()) - 1; len(seg.Segments) != want {
		t.Fatalf("%d segments, want %d", len(seg.Segments), want)
	}
	for i, s := range seg.Segments {
		if s.Number != i+1 || (s.Laterality == bc.res.Ears[0].Laterality && s.Structure.Name == "semicircular canals") {
			t.Fatalf("segment %d: %+v", i, s)
		}
	}
	_, root := parseFile(t, sr.File)
	if groups := root.find(codeMeasurements)[0].find(codeMeasGroup); len(groups) != len(seg.Segments)+6 {
		t.Fatalf("%d measurement groups", len(groups))
	}
}

// A label on a box of the source grid (as the analysis hands it: the
// analysed box only) gives the SEG and SR of the same label on the whole
// grid, byte for byte; a box that is off the source's pixels is refused.
func TestSEGOfBoxLabel(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bc := tc.build(t)
			wantSEG, wantSR, err := bc.writer.Write(bc.src, bc.res, bc.extras)
			if err != nil {
				t.Fatal(err)
			}
			boxed := *bc.res
			boxed.Ears = append([]analysis.Ear(nil), bc.res.Ears...)
			cropped := map[*volume.Volume[uint8]]*volume.Volume[uint8]{} // a shared label stays shared
			for i := range boxed.Ears {
				lab := boxed.Ears[i].Label
				if cropped[lab] == nil {
					c, err := volume.Crop(lab, nonZeroBox(lab, 1))
					if err != nil {
						t.Fatal(err)
					}
					if c.Len() >= lab.Len() {
						t.Fatalf("ear %d: box %v is the whole grid %v", i, c.Size, lab.Size)
					}
					cropped[lab] = c
				}
				boxed.Ears[i].Label = cropped[lab]
			}
			gotSEG, gotSR, err := bc.writer.Write(bc.src, &boxed, bc.extras)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(gotSEG.File, wantSEG.File) {
				t.Error("SEG of the box labels differs from the SEG of the full-grid labels")
			}
			if !bytes.Equal(gotSR.File, wantSR.File) {
				t.Error("SR of the box labels differs from the SR of the full-grid labels")
			}

			// Half a pixel off the source's pixels: no SEG.
			off := *boxed.Ears[0].Label
			off.Affine[0][3] += 0.5 * bc.src.PixelSpacing[1] * bc.src.ImageOrientationPatient[0]
			off.Affine[1][3] += 0.5 * bc.src.PixelSpacing[1] * bc.src.ImageOrientationPatient[1]
			off.Affine[2][3] += 0.5 * bc.src.PixelSpacing[1] * bc.src.ImageOrientationPatient[2]
			bad := boxed
			bad.Ears = append([]analysis.Ear(nil), boxed.Ears...)
			bad.Ears[0].Label = &off
			for i := 1; i < len(bad.Ears); i++ {
				if boxed.Ears[i].Label == boxed.Ears[0].Label {
					bad.Ears[i].Label = &off
				}
			}
			if _, err := bc.writer.SEG(bc.src, &bad); !errors.Is(err, ErrSource) {
				t.Errorf("label half a pixel off: err %v, want ErrSource", err)
			}
		})
	}
}

// nonZeroBox is the box around the non-zero voxels of v grown by margin,
// clipped to the grid.
func nonZeroBox(v *volume.Volume[uint8], margin int) volume.Box {
	b := volume.Box{Min: v.Size}
	for idx, x := range v.Data {
		if x == 0 {
			continue
		}
		p := [3]int{idx % v.Size[0], idx / v.Size[0] % v.Size[1], idx / (v.Size[0] * v.Size[1])}
		for a := range 3 {
			b.Min[a] = min(b.Min[a], p[a])
			b.Max[a] = max(b.Max[a], p[a]+1)
		}
	}
	for a := range 3 {
		b.Min[a] = max(b.Min[a]-margin, 0)
		b.Max[a] = min(b.Max[a]+margin, v.Size[a])
	}
	return b
}
