// Package results turns an analysis result into the DICOM objects otonode
// sends to PACS: a binary Segmentation (SEG) of the inner ears on the source
// CT's geometry and a Comprehensive 3D SR (TID 1500) with the landmarks,
// volumes, TTA uncertainty and flags. The objects follow
// shared/reference/seg_sr_reference.md; the tests validate them with
// dciodvfy, dsrdump, dcentvfy and pydicom.
package results

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/otonode/otonode/analysis"
)

// SOP classes written here.
const (
	SegmentationStorage      = "1.2.840.10008.5.1.4.1.1.66.4"
	Comprehensive3DSRStorage = "1.2.840.10008.5.1.4.1.1.88.34"
)

// DefaultImplementationClassUID identifies otonode in file meta; a UUID-
// derived UID fixed once for the project.
const DefaultImplementationClassUID = "2.25.207964406297305283212497496366858429321"

// Equipment describes the producing device (General and Enhanced General
// Equipment modules, all Type 1 for SEG).
type Equipment struct {
	Manufacturer       string
	ModelName          string
	DeviceSerialNumber string
	SoftwareVersions   string
}

// Writer holds the settings shared by the SEG and SR writers.
type Writer struct {
	UIDs UIDGenerator // required
	// Now is the content and creation time; zero means time.Now().
	Now       time.Time
	Equipment Equipment
	// SeriesNumber of the SEG; the SR gets SeriesNumber+1. Zero means 300.
	SeriesNumber int
	// Structures the model outputs; nil means InnerEar (one per ear).
	Structures []Structure
	// DeviceObserverUID identifies this node in the SR (TID 1004); empty
	// means one from UIDs.
	DeviceObserverUID      string
	ImplementationClassUID string // empty means DefaultImplementationClassUID
}

// Segment is one segment of a written SEG.
type Segment struct {
	Number      int
	Laterality  analysis.Laterality
	Structure   Structure
	Label       string // SegmentLabel, e.g. "Right inner ear"
	TrackingUID string
	Voxels      int // voxels of the label in the segment
	Frames      int // frames written, empty ones in its span included
}

// SEG is a written Segmentation instance.
type SEG struct {
	File              []byte // DICOM Part 10 file
	SOPInstanceUID    string
	SeriesInstanceUID string
	Segments          []Segment
}

// ErrResult is wrapped when the analysis result cannot be written.
var ErrResult = errors.New("results: unusable analysis result")

func (w *Writer) now() time.Time {
	if w.Now.IsZero() {
		return time.Now()
	}
	return w.Now
}

func (w *Writer) structures() []Structure {
	if len(w.Structures) == 0 {
		return []Structure{InnerEar}
	}
	return w.Structures
}

func (w *Writer) seriesNumber() int {
	if w.SeriesNumber == 0 {
		return 300
	}
	return w.SeriesNumber
}

func (w *Writer) implementationClassUID() string {
	if w.ImplementationClassUID == "" {
		return DefaultImplementationClassUID
	}
	return w.ImplementationClassUID
}

// lo makes s a valid single LO value: no backslash or control characters, at
// most 64 bytes, cut at a character boundary.
func lo(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\\' {
			return '/'
		}
		if r < 0x20 {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(truncate(s, 64))
}

// truncate cuts s to at most n bytes at a character boundary.
func truncate(s string, n int) string {
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

const notForDiagnosis = "NOT FOR DIAGNOSTIC USE"

// algorithmName is the model's name, marked when the manifest says the model
// is not for diagnosis, in at most 64 characters.
func algorithmName(m analysis.Model) string {
	if !m.NotForDiagnosis {
		return lo(m.Name)
	}
	suffix := " (" + notForDiagnosis + ")"
	return strings.TrimSpace(truncate(lo(m.Name), 64-len(suffix))) + suffix
}

func seriesDescription(what string, m analysis.Model) string {
	if m.NotForDiagnosis {
		return lo(what + " - " + notForDiagnosis)
	}
	return lo(what)
}

func checkModel(m analysis.Model) error {
	if strings.TrimSpace(m.Name) == "" || strings.TrimSpace(m.Version) == "" {
		return fmt.Errorf("%w: model name and version are required", ErrResult)
	}
	return nil
}

// segmentPlan is a segment with the slices it spans.
type segmentPlan struct {
	Segment
	ear    *analysis.Ear
	side   func(idx int) bool // whether a voxel belongs to this ear; nil: all do
	place  labelPlace         // where the ear's label lies on the source
	planes []int              // label planes k in frame order
}

// contains reports whether voxel idx of the ear's label is in the segment.
func (p *segmentPlan) contains(idx int) bool {
	return p.Structure.contains(p.ear.Label.Data[idx]) && (p.side == nil || p.side(idx))
}

// planSegments finds the segments and their frames. Frames are ordered by
// segment, then by position along the slice normal; a segment spans from its
// first to its last slice with voxels, empty slices between included.
func (w *Writer) planSegments(src *Source, res *analysis.Result) ([]segmentPlan, error) {
	if len(res.Ears) == 0 {
		return nil, fmt.Errorf("%w: no ear analysed (status %q)", ErrResult, res.Status)
	}
	rank := positionRank(src)
	sides, err := earSides(res)
	if err != nil {
		return nil, err
	}
	var plans []segmentPlan
	for ei := range res.Ears {
		ear := &res.Ears[ei]
		if ear.Laterality != analysis.Right && ear.Laterality != analysis.Left {
			return nil, fmt.Errorf("%w: ear laterality %q", ErrResult, ear.Laterality)
		}
		if ear.Label == nil || len(ear.Label.Data) != ear.Label.Len() {
			return nil, fmt.Errorf("%w: %s ear has no label volume", ErrResult, ear.Laterality)
		}
		place, err := src.placeLabel(ear.Label.Grid)
		if err != nil {
			return nil, fmt.Errorf("%s ear: %w", ear.Laterality, err)
		}
		ks := place.slices
		plane := ear.Label.Size[0] * ear.Label.Size[1]
		found := false
		for _, st := range w.structures() {
			p := segmentPlan{Segment: Segment{Structure: st}, ear: ear, side: sides[ei], place: place}
			first, last, voxels := -1, -1, 0
			for k := 0; k < ear.Label.Size[2]; k++ {
				n := 0
				for idx := k * plane; idx < (k+1)*plane; idx++ {
					if p.contains(idx) {
						n++
					}
				}
				if n == 0 {
					continue
				}
				voxels += n
				if first < 0 || rank[ks[k]] < rank[ks[first]] {
					first = k
				}
				if last < 0 || rank[ks[k]] > rank[ks[last]] {
					last = k
				}
			}
			if voxels == 0 {
				// A structure the model did not find in this ear gets no
				// segment; an ear with nothing at all is an error below.
				continue
			}
			var planes []int
			for k := 0; k < ear.Label.Size[2]; k++ {
				if r := rank[ks[k]]; r >= rank[ks[first]] && r <= rank[ks[last]] {
					planes = append(planes, k)
				}
			}
			sort.Slice(planes, func(a, b int) bool { return rank[ks[planes[a]]] < rank[ks[planes[b]]] })
			n := len(plans) + 1
			label := strings.ToUpper(lateralityWord(ear.Laterality)[:1]) + lateralityWord(ear.Laterality)[1:] + " " + st.Name
			p.Segment = Segment{
				Number:      n,
				Laterality:  ear.Laterality,
				Structure:   st,
				Label:       lo(label),
				TrackingUID: w.UIDs.UID(fmt.Sprintf("seg.tracking.%d", n)),
				Voxels:      voxels,
				Frames:      len(planes),
			}
			p.planes = planes
			plans = append(plans, p)
			found = true
		}
		if !found {
			return nil, fmt.Errorf("%w: the %s ear's label is empty", ErrResult, lateralityWord(ear.Laterality))
		}
	}
	return plans, nil
}

// positionRank returns each source slice's 0-based rank along the normal.
func positionRank(src *Source) []int {
	nv := src.normal()
	idx := make([]int, len(src.Slices))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		return dot(nv, src.Slices[idx[a]].ImagePositionPatient) < dot(nv, src.Slices[idx[b]].ImagePositionPatient)
	})
	rank := make([]int, len(idx))
	for r, i := range idx {
		rank[i] = r
	}
	return rank
}

// Binary frames are packed as PS3.5 8.1.1 says: row by row, the first pixel
// in the least significant bit, each frame starting at the bit after the
// previous one, one zero byte of padding to an even length.

// packedLen is the length of Pixel Data holding nbits pixels.
func packedLen(nbits int) int {
	n := (nbits + 7) / 8
	return n + n%2
}

// setBit sets pixel i of packed pixel data.
func setBit(b []byte, i int) { b[i>>3] |= 1 << (i & 7) }

// packBits packs nbits pixels given one at a time.
func packBits(nbits int, bit func(i int) bool) []byte {
	out := make([]byte, packedLen(nbits))
	for i := 0; i < nbits; i++ {
		if bit(i) {
			setBit(out, i)
		}
	}
	return out
}

// SEG writes the binary Segmentation of res on the source series' geometry.
func (w *Writer) SEG(src *Source, res *analysis.Result) (*SEG, error) {
	if w.UIDs == nil {
		return nil, fmt.Errorf("%w: no UID generator", ErrResult)
	}
	if err := src.Validate(); err != nil {
		return nil, err
	}
	if err := checkModel(res.Model); err != nil {
		return nil, err
	}
	plans, err := w.planSegments(src, res)
	if err != nil {
		return nil, err
	}
	rank := positionRank(src)
	now := w.now()
	out := &SEG{
		SOPInstanceUID:    w.UIDs.UID("seg.instance"),
		SeriesInstanceUID: w.UIDs.UID("seg.series"),
	}
	dimOrg := w.UIDs.UID("seg.dimension-organization")

	var d dataSet
	d.set(tag.SpecificCharacterSet, "ISO_IR 192")
	d.set(tag.SOPClassUID, SegmentationStorage)
	d.set(tag.SOPInstanceUID, out.SOPInstanceUID)
	d.set(tag.InstanceCreationDate, now.Format("20060102"))
	d.set(tag.InstanceCreationTime, now.Format("150405"))
	d.set(tag.ImageType, []string{"DERIVED", "PRIMARY"})
	d.set(tag.Modality, "SEG")
	d.set(tag.SeriesNumber, w.seriesNumber())
	d.set(tag.InstanceNumber, 1)
	d.set(tag.SeriesInstanceUID, out.SeriesInstanceUID)
	d.set(tag.SeriesDescription, seriesDescription("otonode inner ear segmentation", res.Model))
	d.set(tag.ContentDate, now.Format("20060102"))
	d.set(tag.ContentTime, now.Format("150405"))
	w.setPatientStudy(&d, src)
	w.setEquipment(&d)
	d.set(tag.FrameOfReferenceUID, src.FrameOfReferenceUID)
	d.set(tag.PositionReferenceIndicator, src.PositionReferenceIndicator)

	// Content Identification.
	d.set(tag.ContentLabel, "INNER_EAR")
	desc := "Automatic inner ear segmentation"
	if res.Model.NotForDiagnosis {
		desc = notForDiagnosis + ": research model, not for clinical use"
	}
	d.set(tag.ContentDescription, lo(desc))
	d.set(tag.ContentCreatorName, "")

	// Image Pixel and Segmentation Image.
	nframes := 0
	for _, p := range plans {
		nframes += len(p.planes)
	}
	d.set(tag.SamplesPerPixel, 1)
	d.set(tag.PhotometricInterpretation, "MONOCHROME2")
	d.set(tag.NumberOfFrames, nframes)
	d.set(tag.Rows, src.Rows)
	d.set(tag.Columns, src.Columns)
	d.set(tag.BitsAllocated, 1)
	d.set(tag.BitsStored, 1)
	d.set(tag.HighBit, 0)
	d.set(tag.PixelRepresentation, 0)
	d.set(tag.LossyImageCompression, "00")
	d.set(tag.SegmentationType, "BINARY")
	d.set(tag.SegmentsOverlap, "NO")

	private := false
	var segItems []dataSet
	for _, p := range plans {
		segItems = append(segItems, segmentItem(p.Segment, res.Model))
		private = private || p.Structure.Type.Scheme == PrivateScheme
	}
	d.seq(tag.SegmentSequence, segItems...)
	if private {
		d.seq(tag.CodingSchemeIdentificationSequence, codingSchemeIdentification())
	}

	// Multi-frame Dimension: segment, then position.
	var org dataSet
	org.set(tag.DimensionOrganizationUID, dimOrg)
	d.seq(tag.DimensionOrganizationSequence, org)
	d.set(tag.DimensionOrganizationType, "3D")
	dimIndex := func(ptr, group tag.Tag, label string) dataSet {
		var it dataSet
		it.set(tag.DimensionOrganizationUID, dimOrg)
		it.set(tag.DimensionIndexPointer, ptr)
		it.set(tag.FunctionalGroupPointer, group)
		it.set(tag.DimensionDescriptionLabel, label)
		return it
	}
	d.seq(tag.DimensionIndexSequence,
		dimIndex(tag.ReferencedSegmentNumber, tag.SegmentIdentificationSequence, "ReferencedSegmentNumber"),
		dimIndex(tag.ImagePositionPatient, tag.PlanePositionSequence, "ImagePositionPatient"))

	// Shared functional groups: pixel measures and orientation.
	var measures, orient, shared dataSet
	measures.set(tag.PixelSpacing, []float64{src.PixelSpacing[0], src.PixelSpacing[1]})
	spacing := src.SliceSpacing()
	thickness := src.SliceThickness
	if thickness <= 0 {
		thickness = spacing
	}
	measures.set(tag.SliceThickness, thickness)
	if spacing > 0 {
		measures.set(tag.SpacingBetweenSlices, spacing)
	}
	orient.set(tag.ImageOrientationPatient, src.ImageOrientationPatient[:])
	shared.seq(tag.PixelMeasuresSequence, measures)
	shared.seq(tag.PlaneOrientationSequence, orient)
	d.seq(tag.SharedFunctionalGroupsSequence, shared)

	// Per-frame functional groups and pixel data.
	perFrame := make([]dataSet, 0, nframes)
	type frameRef struct {
		plan *segmentPlan
		k    int
	}
	frames := make([]frameRef, 0, nframes)
	for pi := range plans {
		p := &plans[pi]
		for _, k := range p.planes {
			si := p.place.slices[k]
			perFrame = append(perFrame, frameItem(src.Slices[si], p.Number, rank[si]+1))
			frames = append(frames, frameRef{p, k})
		}
	}
	d.seq(tag.PerFrameFunctionalGroupsSequence, perFrame...)
	d.seq(tag.ReferencedSeriesSequence, referencedSeries(src))

	// Each frame is a whole source slice; the label's rows are placed at
	// its column and row (they cover a box of the slice, or all of it).
	plane := src.Rows * src.Columns
	pixels := make([]byte, packedLen(nframes*plane))
	for fi, f := range frames {
		lab := f.plan.ear.Label
		nx := lab.Size[0]
		for j := range lab.Size[1] {
			base := lab.Index(0, j, f.k)
			bit := fi*plane + (f.plan.place.row+j)*src.Columns + f.plan.place.column
			for i, v := range lab.Data[base : base+nx] {
				if f.plan.Structure.contains(v) && (f.plan.side == nil || f.plan.side(base+i)) {
					setBit(pixels, bit+i)
				}
			}
		}
	}
	d.setVR(tag.PixelData, "OB", pixels)

	file, err := encodeFile(&d, w.implementationClassUID())
	if err != nil {
		return nil, err
	}
	out.File = file
	for _, p := range plans {
		out.Segments = append(out.Segments, p.Segment)
	}
	return out, nil
}

func (w *Writer) setPatientStudy(d *dataSet, src *Source) {
	d.set(tag.PatientName, src.PatientName)
	d.set(tag.PatientID, src.PatientID)
	d.set(tag.PatientBirthDate, src.PatientBirthDate)
	d.set(tag.PatientSex, src.PatientSex)
	d.set(tag.StudyInstanceUID, src.StudyInstanceUID)
	d.set(tag.StudyDate, src.StudyDate)
	d.set(tag.StudyTime, src.StudyTime)
	d.set(tag.ReferringPhysicianName, src.ReferringPhysicianName)
	d.set(tag.StudyID, src.StudyID)
	d.set(tag.AccessionNumber, src.AccessionNumber)
}

func (w *Writer) setEquipment(d *dataSet) {
	e := w.Equipment
	def := func(s, fallback string) string {
		if strings.TrimSpace(s) == "" {
			return fallback
		}
		return lo(s)
	}
	d.set(tag.Manufacturer, def(e.Manufacturer, "otonode"))
	d.set(tag.ManufacturerModelName, def(e.ModelName, "otonode"))
	d.set(tag.DeviceSerialNumber, def(e.DeviceSerialNumber, "0"))
	d.set(tag.SoftwareVersions, def(e.SoftwareVersions, "unknown"))
}

func segmentItem(s Segment, m analysis.Model) dataSet {
	var it dataSet
	it.set(tag.SegmentNumber, s.Number)
	it.set(tag.SegmentLabel, s.Label)
	it.set(tag.SegmentDescription, lo(s.Structure.Description))
	it.set(tag.SegmentAlgorithmType, "AUTOMATIC")
	it.set(tag.SegmentAlgorithmName, algorithmName(m))
	var alg dataSet
	alg.seq(tag.AlgorithmFamilyCodeSequence, codeArtificialIntell.item())
	alg.set(tag.AlgorithmName, algorithmName(m))
	alg.set(tag.AlgorithmVersion, lo(m.Version))
	if m.SHA256 != "" {
		alg.set(tag.AlgorithmParameters, "model sha256="+m.SHA256)
	}
	it.seq(tag.SegmentationAlgorithmIdentificationSequence, alg)
	it.seq(tag.SegmentedPropertyCategoryCodeSequence, codeAnatomicalStructure.item())
	typ := s.Structure.Type.item()
	typ.seq(tag.SegmentedPropertyTypeModifierCodeSequence, lateralityCode(s.Laterality).item())
	it.seq(tag.SegmentedPropertyTypeCodeSequence, typ)
	it.set(tag.RecommendedDisplayCIELabValue, cieLab(s.Structure.RGB))
	it.set(tag.TrackingID, s.Label)
	it.set(tag.TrackingUID, s.TrackingUID)
	return it
}

func frameItem(sl Slice, segment, position int) dataSet {
	var src, deriv, content, pos, ident, fg dataSet
	src.set(tag.ReferencedSOPClassUID, sl.SOPClassUID)
	src.set(tag.ReferencedSOPInstanceUID, sl.SOPInstanceUID)
	src.seq(tag.PurposeOfReferenceCodeSequence, codeSourceForProcessing.item())
	src.set(tag.SpatialLocationsPreserved, "YES")
	deriv.seq(tag.DerivationCodeSequence, codeSegmentation.item())
	deriv.seq(tag.SourceImageSequence, src)
	content.setVR(tag.DimensionIndexValues, "UL", []int{segment, position})
	pos.set(tag.ImagePositionPatient, sl.ImagePositionPatient[:])
	ident.set(tag.ReferencedSegmentNumber, segment)
	fg.seq(tag.DerivationImageSequence, deriv)
	fg.seq(tag.FrameContentSequence, content)
	fg.seq(tag.PlanePositionSequence, pos)
	fg.seq(tag.SegmentIdentificationSequence, ident)
	return fg
}

// referencedSeries lists every source instance (Common Instance Reference).
func referencedSeries(src *Source) dataSet {
	var series dataSet
	var insts []dataSet
	for _, sl := range src.Slices {
		var it dataSet
		it.set(tag.ReferencedSOPClassUID, sl.SOPClassUID)
		it.set(tag.ReferencedSOPInstanceUID, sl.SOPInstanceUID)
		insts = append(insts, it)
	}
	series.seq(tag.ReferencedInstanceSequence, insts...)
	series.set(tag.SeriesInstanceUID, src.SeriesInstanceUID)
	return series
}
