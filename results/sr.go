package results

import (
	"fmt"
	"math"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/otonode/otonode/analysis"
)

// Extras carries per-analysis facts the SR reports that analysis.Result does
// not hold yet.
type Extras struct {
	// VolumeSpreadMM3 is, per ear, the spread of the inner-ear volume over
	// the TTA passes in mm³; written as the volume's measurement
	// uncertainty (TID 310). Ears without a value get no such property.
	VolumeSpreadMM3 map[analysis.Laterality]float64
	// Replaces are the SRs of earlier revisions that this report supersedes,
	// written as its Predecessor Documents Sequence (PS3.3 C.17.2); an
	// empty StudyInstanceUID means the source's study.
	Replaces []Reference
}

// SR is a written Comprehensive 3D SR instance.
type SR struct {
	File              []byte
	SOPInstanceUID    string
	SeriesInstanceUID string
}

// Codes of the SR content tree (reference §2.3, §3.3).
var (
	codeReport          = Code{"126000", "DCM", "Imaging Measurement Report"}
	codeLanguage        = Code{"121049", "DCM", "Language of Content Item and Descendants"}
	codeEnglishUS       = Code{"en-US", "RFC5646", "English (United States)"}
	codeObserverType    = Code{"121005", "DCM", "Observer Type"}
	codeDevice          = Code{"121007", "DCM", "Device"}
	codeDeviceUID       = Code{"121012", "DCM", "Device Observer UID"}
	codeDeviceName      = Code{"121013", "DCM", "Device Observer Name"}
	codeDeviceMaker     = Code{"121014", "DCM", "Device Observer Manufacturer"}
	codeDeviceModel     = Code{"121015", "DCM", "Device Observer Model Name"}
	codeProcedure       = Code{"121058", "DCM", "Procedure reported"}
	codeCTProcedure     = Code{"25045-6", "LN", "CT unspecified body region"}
	codeImageLibrary    = Code{"111028", "DCM", "Image Library"}
	codeImageLibGroup   = Code{"126200", "DCM", "Image Library Group"}
	codeMeasurements    = Code{"126010", "DCM", "Imaging Measurements"}
	codeMeasGroup       = Code{"125007", "DCM", "Measurement Group"}
	codeTrackingID      = Code{"112039", "DCM", "Tracking Identifier"}
	codeTrackingUID     = Code{"112040", "DCM", "Tracking Unique Identifier"}
	codeFindingCategory = Code{"276214006", "SCT", "Finding category"}
	codeFinding         = Code{"121071", "DCM", "Finding"}
	codeFindingSite     = Code{"363698007", "SCT", "Finding Site"}
	codeLaterality      = Code{"272741003", "SCT", "Laterality"}
	codeRefSegment      = Code{"121191", "DCM", "Referenced Segment"}
	codeSourceSeries    = Code{"121232", "DCM", "Source series for segmentation"}
	codeVolume          = Code{"118565006", "SCT", "Volume"}
	codeRangeUncert     = Code{"371884006", "SCT", "+/-, range of measurement uncertainty"}
	codeAlgorithmName   = Code{"111001", "DCM", "Algorithm Name"}
	codeAlgorithmVer    = Code{"111003", "DCM", "Algorithm Version"}
	codeAlgorithmParam  = Code{"111002", "DCM", "Algorithm Parameters"}
	codeImageRegion     = Code{"111030", "DCM", "Image Region"}
	codeQualitative     = Code{"C0034375", "UMLS", "Qualitative Evaluations"}
	unitMM3             = Code{"mm3", "UCUM", "cubic millimeter"}
	unitNone            = Code{"1", "UCUM", "no units"}
)

// Content item constructors (PS3.3 C.17.3). The order of items in a
// ContentSequence is meaningful and kept; elements inside each item are
// sorted by the encoder.

func contentItem(rel, vt string, name Code) dataSet {
	var d dataSet
	if rel != "" {
		d.set(tag.RelationshipType, rel)
	}
	d.set(tag.ValueType, vt)
	if name.Value != "" {
		d.seq(tag.ConceptNameCodeSequence, name.item())
	}
	return d
}

func withChildren(d dataSet, children []dataSet) dataSet {
	if len(children) > 0 {
		d.seq(tag.ContentSequence, children...)
	}
	return d
}

func templateItem(id string) dataSet {
	var t dataSet
	t.set(tag.MappingResource, "DCMR")
	t.set(tag.TemplateIdentifier, id)
	return t
}

func containerItem(rel string, name Code, template string, children ...dataSet) dataSet {
	d := contentItem(rel, "CONTAINER", name)
	d.set(tag.ContinuityOfContent, "SEPARATE")
	if template != "" {
		d.seq(tag.ContentTemplateSequence, templateItem(template))
	}
	return withChildren(d, children)
}

func codeContent(rel string, name, value Code, children ...dataSet) dataSet {
	d := contentItem(rel, "CODE", name)
	d.seq(tag.ConceptCodeSequence, value.item())
	return withChildren(d, children)
}

func textContent(rel string, name Code, text string) dataSet {
	d := contentItem(rel, "TEXT", name)
	d.set(tag.TextValue, text)
	return d
}

func uidContent(rel string, name Code, uid string) dataSet {
	d := contentItem(rel, "UIDREF", name)
	d.set(tag.UID, uid)
	return d
}

func numContent(rel string, name Code, v float64, unit Code, children ...dataSet) dataSet {
	d := contentItem(rel, "NUM", name)
	var mv dataSet
	mv.seq(tag.MeasurementUnitsCodeSequence, unit.item())
	mv.set(tag.NumericValue, v)
	d.seq(tag.MeasuredValueSequence, mv)
	return withChildren(d, children)
}

func imageContent(rel string, name Code, class, inst string, segment int) dataSet {
	d := contentItem(rel, "IMAGE", name)
	var ref dataSet
	ref.set(tag.ReferencedSOPClassUID, class)
	ref.set(tag.ReferencedSOPInstanceUID, inst)
	if segment > 0 {
		ref.set(tag.ReferencedSegmentNumber, segment)
	}
	d.seq(tag.ReferencedSOPSequence, ref)
	return d
}

func pointContent(rel string, name Code, p [3]float64, frameOfReference string) dataSet {
	d := contentItem(rel, "SCOORD3D", name)
	d.set(tag.GraphicType, "POINT")
	d.set(tag.GraphicData, p[:])
	d.set(tag.ReferencedFrameOfReferenceUID, frameOfReference)
	return d
}

// algorithmItems is TID 4019: name, version and the model's hash.
func algorithmItems(m analysis.Model) []dataSet {
	items := []dataSet{
		textContent("HAS CONCEPT MOD", codeAlgorithmName, algorithmName(m)),
		textContent("HAS CONCEPT MOD", codeAlgorithmVer, lo(m.Version)),
	}
	if m.SHA256 != "" {
		items = append(items, textContent("HAS CONCEPT MOD", codeAlgorithmParam, "model sha256="+m.SHA256))
	}
	return items
}

func findingSite(l analysis.Laterality) dataSet {
	return codeContent("HAS CONCEPT MOD", codeFindingSite, codeInnerEar,
		codeContent("HAS CONCEPT MOD", codeLaterality, lateralityCode(l)))
}

func yesNo(b bool) Code {
	if b {
		return codeYes
	}
	return codeNo
}

// SR writes the TID 1500 Measurement Report of res, referencing the source
// series and the SEG written for the same result.
//
// One SR per analysis, holding the landmarks (TID 1410) and the volumes
// (TID 1411) together, as DESIGN.md's contract says. It shows fully in OHIF.
// Slicer's QuantitativeReporting, on seeing TID 1410 Image Region groups,
// loads only the points and skips its SEG-based volume table (reference
// §3.6); the SEG itself still loads with its segments. We accept that rather
// than send PACS a second SR per analysis, which would split one report in
// two and double what a radiologist sees in the study.
func (w *Writer) SR(src *Source, res *analysis.Result, seg *SEG, x *Extras) (*SR, error) {
	if w.UIDs == nil {
		return nil, fmt.Errorf("%w: no UID generator", ErrResult)
	}
	if err := src.Validate(); err != nil {
		return nil, err
	}
	if err := checkModel(res.Model); err != nil {
		return nil, err
	}
	if seg == nil || len(seg.Segments) == 0 {
		return nil, fmt.Errorf("%w: the SR needs the SEG written for the same result", ErrResult)
	}
	now := w.now()
	out := &SR{SOPInstanceUID: w.UIDs.UID("sr.instance"), SeriesInstanceUID: w.UIDs.UID("sr.series")}

	var d dataSet
	d.set(tag.SpecificCharacterSet, "ISO_IR 192")
	d.set(tag.SOPClassUID, Comprehensive3DSRStorage)
	d.set(tag.SOPInstanceUID, out.SOPInstanceUID)
	d.set(tag.InstanceCreationDate, now.Format("20060102"))
	d.set(tag.InstanceCreationTime, now.Format("150405"))
	d.set(tag.Modality, "SR")
	d.set(tag.SeriesInstanceUID, out.SeriesInstanceUID)
	d.set(tag.SeriesNumber, w.seriesNumber()+1)
	d.set(tag.InstanceNumber, 1)
	d.set(tag.SeriesDescription, seriesDescription("otonode inner ear measurements", res.Model))
	d.set(tag.ContentDate, now.Format("20060102"))
	d.set(tag.ContentTime, now.Format("150405"))
	d.seq(tag.ReferencedPerformedProcedureStepSequence)
	d.seq(tag.PerformedProcedureCodeSequence)
	w.setPatientStudy(&d, src)
	w.setEquipment(&d)
	d.seq(tag.CodingSchemeIdentificationSequence, codingSchemeIdentification())

	d.set(tag.ValueType, "CONTAINER")
	d.seq(tag.ConceptNameCodeSequence, codeReport.item())
	d.set(tag.ContinuityOfContent, "SEPARATE")
	d.seq(tag.ContentTemplateSequence, templateItem("1500"))
	d.set(tag.CompletionFlag, "COMPLETE")
	d.set(tag.PreliminaryFlag, "PRELIMINARY")
	d.set(tag.VerificationFlag, "UNVERIFIED")
	d.seq(tag.CurrentRequestedProcedureEvidenceSequence, evidence(src, seg))
	if x != nil && len(x.Replaces) > 0 {
		d.seq(tag.PredecessorDocumentsSequence, hierarchy(inStudy(src, x.Replaces))...)
	}

	groups, err := w.measurementGroups(src, res, seg, x)
	if err != nil {
		return nil, err
	}
	deviceUID := w.deviceObserverUID()
	var library []dataSet
	for _, sl := range src.Slices {
		library = append(library, imageContent("CONTAINS", Code{}, sl.SOPClassUID, sl.SOPInstanceUID, 0))
	}
	maker := w.Equipment.Manufacturer
	if strings.TrimSpace(maker) == "" {
		maker = "otonode"
	}
	content := []dataSet{
		codeContent("HAS CONCEPT MOD", codeLanguage, codeEnglishUS),
		codeContent("HAS OBS CONTEXT", codeObserverType, codeDevice),
		uidContent("HAS OBS CONTEXT", codeDeviceUID, deviceUID),
		textContent("HAS OBS CONTEXT", codeDeviceName, "otonode"),
		textContent("HAS OBS CONTEXT", codeDeviceMaker, maker),
		textContent("HAS OBS CONTEXT", codeDeviceModel, algorithmName(res.Model)+" "+res.Model.Version),
		codeContent("HAS CONCEPT MOD", codeProcedure, codeCTProcedure),
		containerItem("CONTAINS", codeImageLibrary, "",
			containerItem("CONTAINS", codeImageLibGroup, "", library...)),
		containerItem("CONTAINS", codeMeasurements, "", groups...),
		qualitativeEvaluations(res),
	}
	d.seq(tag.ContentSequence, content...)

	file, err := encodeFile(&d, w.implementationClassUID())
	if err != nil {
		return nil, err
	}
	out.File = file
	return out, nil
}

// evidence lists every referenced instance: all source slices and the SEG.
func evidence(src *Source, seg *SEG) dataSet {
	ct := referencedSOPs(src.SeriesInstanceUID, src.Slices)
	sg := referencedSOPs(seg.SeriesInstanceUID, []Slice{{SOPClassUID: SegmentationStorage, SOPInstanceUID: seg.SOPInstanceUID}})
	var study dataSet
	study.seq(tag.ReferencedSeriesSequence, ct, sg)
	study.set(tag.StudyInstanceUID, src.StudyInstanceUID)
	return study
}

func referencedSOPs(series string, sops []Slice) dataSet {
	var s dataSet
	var items []dataSet
	for _, sl := range sops {
		var it dataSet
		it.set(tag.ReferencedSOPClassUID, sl.SOPClassUID)
		it.set(tag.ReferencedSOPInstanceUID, sl.SOPInstanceUID)
		items = append(items, it)
	}
	s.seq(tag.ReferencedSOPSequence, items...)
	s.set(tag.SeriesInstanceUID, series)
	return s
}

// measurementGroups returns one TID 1411 group per SEG segment, in segment
// order, then one TID 1410 group per landmark.
func (w *Writer) measurementGroups(src *Source, res *analysis.Result, seg *SEG, x *Extras) ([]dataSet, error) {
	ears := make(map[analysis.Laterality]*analysis.Ear)
	for i := range res.Ears {
		ears[res.Ears[i].Laterality] = &res.Ears[i]
	}
	var groups []dataSet
	for _, s := range seg.Segments {
		ear := ears[s.Laterality]
		if ear == nil {
			return nil, fmt.Errorf("%w: SEG segment %d is of the %s ear, which the result lacks", ErrResult, s.Number, s.Laterality)
		}
		vol := ear.VolumeMM3
		if s.Structure.Values != nil && ear.Label != nil {
			// A structure of the ear: its own voxel count.
			sp := ear.Label.Affine.Spacing()
			vol = float64(s.Voxels) * sp[0] * sp[1] * sp[2]
		}
		volChildren := algorithmItems(res.Model)
		if spread, ok := x.spread(ear); ok && s.Structure.Values == nil {
			volChildren = append(volChildren, numContent("HAS PROPERTIES", codeRangeUncert, spread, unitMM3))
		}
		items := []dataSet{
			textContent("HAS OBS CONTEXT", codeTrackingID, s.Label),
			uidContent("HAS OBS CONTEXT", codeTrackingUID, s.TrackingUID),
			codeContent("CONTAINS", codeFindingCategory, codeAnatomicalStructure),
			codeContent("CONTAINS", codeFinding, s.Structure.Type),
			findingSite(s.Laterality),
			imageContent("CONTAINS", codeRefSegment, SegmentationStorage, seg.SOPInstanceUID, s.Number),
			uidContent("CONTAINS", codeSourceSeries, src.SeriesInstanceUID),
			numContent("CONTAINS", codeVolume, vol, unitMM3, volChildren...),
			numContent("CONTAINS", codeUncertainty, ear.Uncertainty, unitNone, algorithmItems(res.Model)...),
			codeContent("CONTAINS", codeOODFlag, yesNo(ear.Flag.Raised)),
		}
		if ear.Flag.Raised && strings.TrimSpace(ear.Flag.Reason) != "" {
			items = append(items, textContent("CONTAINS", codeReviewNote, ear.Flag.Reason))
		}
		groups = append(groups, containerItem("CONTAINS", codeMeasGroup, "1411", items...))
	}
	for _, ear := range res.Ears {
		for _, lm := range ear.Landmarks {
			code, ok := landmarkCode(lm.Name)
			if !ok {
				return nil, fmt.Errorf("%w: unknown landmark %q", ErrResult, lm.Name)
			}
			for _, c := range lm.PatientMM {
				if math.IsNaN(c) || math.IsInf(c, 0) {
					return nil, fmt.Errorf("%w: %s landmark %s at %v", ErrResult, ear.Laterality, lm.Name, lm.PatientMM)
				}
			}
			side := lateralityWord(ear.Laterality)
			label := strings.ToUpper(side[:1]) + side[1:] + " " + strings.ToLower(code.Meaning)
			groups = append(groups, containerItem("CONTAINS", codeMeasGroup, "1410",
				textContent("HAS OBS CONTEXT", codeTrackingID, label),
				uidContent("HAS OBS CONTEXT", codeTrackingUID, w.UIDs.UID("sr.landmark."+string(ear.Laterality)+"."+lm.Name)),
				codeContent("CONTAINS", codeFindingCategory, codeAnatomicalStructure),
				codeContent("CONTAINS", codeFinding, code),
				findingSite(ear.Laterality),
				pointContent("CONTAINS", codeImageRegion, lm.PatientMM, src.FrameOfReferenceUID),
			))
		}
	}
	return groups, nil
}

// spread is the ear's volume spread over the TTA passes: from Extras when
// it has one for the side, else from the result when the analysis measured
// it (a zero spread from a single pass says nothing and is left out).
func (x *Extras) spread(ear *analysis.Ear) (float64, bool) {
	if x != nil {
		if v, ok := x.VolumeSpreadMM3[ear.Laterality]; ok {
			return v, true
		}
	}
	return ear.VolumeSpreadMM3, ear.VolumeSpreadMM3 > 0
}

// qualitativeEvaluations is the report-level flag (TID 1500 rows 12-14):
// raised when any ear's is, the reasons, and the model's usage restriction.
func qualitativeEvaluations(res *analysis.Result) dataSet {
	raised := false
	var notes []dataSet
	for _, ear := range res.Ears {
		if ear.Flag.Raised {
			raised = true
			reason := ear.Flag.Reason
			if strings.TrimSpace(reason) == "" {
				reason = "flagged for review"
			}
			side := lateralityWord(ear.Laterality)
			notes = append(notes, textContent("CONTAINS", codeReviewNote, strings.ToUpper(side[:1])+side[1:]+" ear: "+reason))
		}
	}
	items := append([]dataSet{codeContent("CONTAINS", codeOODFlag, yesNo(raised))}, notes...)
	if res.Model.NotForDiagnosis {
		statement := strings.TrimSpace(res.Model.Statement)
		if statement == "" {
			statement = "Produced by a model that is not validated for clinical use."
		}
		items = append(items, textContent("CONTAINS", codeNotDiagnosis, notForDiagnosis+": "+statement))
	}
	return containerItem("CONTAINS", codeQualitative, "", items...)
}

// Write writes the SEG and the SR of one analysis.
func (w *Writer) Write(src *Source, res *analysis.Result, x *Extras) (*SEG, *SR, error) {
	seg, err := w.SEG(src, res)
	if err != nil {
		return nil, nil, err
	}
	sr, err := w.SR(src, res, seg, x)
	if err != nil {
		return nil, nil, err
	}
	return seg, sr, nil
}
