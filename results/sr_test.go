package results

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/otonode/otonode/analysis"
)

// concept is a parsed content item's concept name.
func (n node) concept() Code { return n.code(tag.ConceptNameCodeSequence) }

func (n node) children() []node { return n.items(tag.ContentSequence) }

// find returns the children with the given concept name.
func (n node) find(c Code) []node {
	var out []node
	for _, ch := range n.children() {
		if ch.concept() == c {
			out = append(out, ch)
		}
	}
	return out
}

func (n node) template() string {
	its := n.items(tag.ContentTemplateSequence)
	if len(its) != 1 || its[0].str(tag.MappingResource) != "DCMR" {
		return ""
	}
	return its[0].str(tag.TemplateIdentifier)
}

func (n node) num(t *testing.T) (float64, Code) {
	t.Helper()
	mv := n.item(t, tag.MeasuredValueSequence)
	v, err := strconv.ParseFloat(mv.str(tag.NumericValue), 64)
	if err != nil {
		t.Fatalf("NumericValue %q: %v", mv.str(tag.NumericValue), err)
	}
	return v, mv.code(tag.MeasurementUnitsCodeSequence)
}

// walk visits every content item below n.
func (n node) walk(f func(parent, item node)) {
	for _, ch := range n.children() {
		f(n, ch)
		ch.walk(f)
	}
}

// TestSRStructure checks the TID 1500 tree and the rules no validator here
// knows (reference §3.3, §3.6, §4.3).
func TestSRStructure(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bc := tc.build(t)
			seg, err := bc.writer.SEG(bc.src, bc.res)
			if err != nil {
				t.Fatal(err)
			}
			sr, err := bc.writer.SR(bc.src, bc.res, seg, bc.extras)
			if err != nil {
				t.Fatal(err)
			}
			meta, root := parseFile(t, sr.File)
			if meta.str(tag.MediaStorageSOPInstanceUID) != root.str(tag.SOPInstanceUID) || root.str(tag.SOPInstanceUID) != sr.SOPInstanceUID ||
				meta.str(tag.MediaStorageSOPClassUID) != Comprehensive3DSRStorage || root.str(tag.SOPClassUID) != Comprehensive3DSRStorage {
				t.Fatal("file meta and data set disagree on the SOP class or instance")
			}
			for tg, want := range map[tag.Tag]string{
				tag.Modality: "SR", tag.SpecificCharacterSet: "ISO_IR 192", tag.ValueType: "CONTAINER",
				tag.CompletionFlag: "COMPLETE", tag.PreliminaryFlag: "PRELIMINARY", tag.VerificationFlag: "UNVERIFIED",
				tag.ContinuityOfContent: "SEPARATE", tag.StudyInstanceUID: bc.src.StudyInstanceUID,
			} {
				if got := root.str(tg); got != want {
					t.Errorf("%v = %q, want %q", tg, got, want)
				}
			}
			if root.concept() != codeReport || root.template() != "1500" {
				t.Fatalf("root %v template %q", root.concept(), root.template())
			}
			kids := root.children()
			if len(kids) == 0 || kids[0].concept() != codeLanguage {
				t.Fatal("the first root item is not the language")
			}
			if obs := root.find(codeObserverType); len(obs) != 1 || obs[0].code(tag.ConceptCodeSequence) != codeDevice {
				t.Error("observer type is not Device")
			}
			if len(root.find(codeDeviceUID)) != 1 || len(root.find(codeProcedure)) != 1 {
				t.Error("device observer UID or procedure reported missing")
			}

			// Every code in the tree is complete; every content item but an
			// image library entry has a concept name.
			root.walk(func(parent, it node) {
				for _, seq := range []tag.Tag{tag.ConceptNameCodeSequence, tag.ConceptCodeSequence} {
					for _, c := range it.items(seq) {
						if c.str(tag.CodeValue) == "" || c.str(tag.CodingSchemeDesignator) == "" || c.str(tag.CodeMeaning) == "" {
							t.Errorf("incomplete code %v in %v", c, it.concept())
						}
					}
				}
				if it.concept() == (Code{}) && parent.concept() != codeImageLibGroup {
					t.Errorf("item %s without a concept name under %v", it.str(tag.ValueType), parent.concept())
				}
			})

			// Image library: every source instance, once.
			lib := root.find(codeImageLibrary)
			if len(lib) != 1 || len(lib[0].find(codeImageLibGroup)) != 1 {
				t.Fatal("no Image Library with one Image Library Group (OHIF needs it)")
			}
			listed := make(map[string]bool)
			for _, im := range lib[0].find(codeImageLibGroup)[0].children() {
				listed[im.item(t, tag.ReferencedSOPSequence).str(tag.ReferencedSOPInstanceUID)] = true
			}
			for _, sl := range bc.src.Slices {
				if !listed[sl.SOPInstanceUID] {
					t.Errorf("image library lacks %s", sl.SOPInstanceUID)
				}
			}

			// Evidence: every CT instance and the SEG.
			ev := root.item(t, tag.CurrentRequestedProcedureEvidenceSequence)
			evidence := make(map[string]string)
			for _, s := range ev.items(tag.ReferencedSeriesSequence) {
				for _, r := range s.items(tag.ReferencedSOPSequence) {
					evidence[r.str(tag.ReferencedSOPInstanceUID)] = s.str(tag.SeriesInstanceUID)
				}
			}
			if ev.str(tag.StudyInstanceUID) != bc.src.StudyInstanceUID || evidence[seg.SOPInstanceUID] != seg.SeriesInstanceUID || len(evidence) != len(bc.src.Slices)+1 {
				t.Errorf("evidence lists %d instances, SEG in series %q", len(evidence), evidence[seg.SOPInstanceUID])
			}
			root.walk(func(_, it node) {
				for _, r := range it.items(tag.ReferencedSOPSequence) {
					if _, ok := evidence[r.str(tag.ReferencedSOPInstanceUID)]; !ok {
						t.Errorf("referenced instance %s is not in the evidence", r.str(tag.ReferencedSOPInstanceUID))
					}
				}
			})

			meas := root.find(codeMeasurements)
			if len(meas) != 1 {
				t.Fatal("no Imaging Measurements container")
			}
			groups := meas[0].children()
			nLandmarks := 0
			for _, e := range bc.res.Ears {
				nLandmarks += len(e.Landmarks)
			}
			if len(groups) != len(seg.Segments)+nLandmarks {
				t.Fatalf("%d groups, want %d volume + %d landmark groups", len(groups), len(seg.Segments), nLandmarks)
			}
			tracking := make(map[string]bool)
			for _, g := range groups {
				// OHIF takes the first UIDREF of a group as its tracking UID.
				for _, ch := range g.children() {
					if ch.str(tag.ValueType) == "UIDREF" {
						if ch.concept() != codeTrackingUID {
							t.Errorf("first UIDREF of a group is %v", ch.concept())
						}
						if tracking[ch.str(tag.UID)] {
							t.Errorf("tracking UID %s used twice (OHIF merges such groups)", ch.str(tag.UID))
						}
						tracking[ch.str(tag.UID)] = true
						break
					}
				}
			}
			checkVolumeGroups(t, bc, seg, groups[:len(seg.Segments)])
			checkLandmarkGroups(t, bc, groups[len(seg.Segments):])
			checkHonestLabels(t, bc, root)
		})
	}
}

func earOf(res *analysis.Result, l analysis.Laterality) *analysis.Ear {
	for i := range res.Ears {
		if res.Ears[i].Laterality == l {
			return &res.Ears[i]
		}
	}
	return nil
}

// checkVolumeGroups: one TID 1411 group per segment, in segment order
// (Slicer pairs them by index), with the segment, source series, volume,
// uncertainty as property and score, and the flag.
func checkVolumeGroups(t *testing.T, bc *builtCase, seg *SEG, groups []node) {
	t.Helper()
	for i, g := range groups {
		s := seg.Segments[i]
		ear := earOf(bc.res, s.Laterality)
		if g.concept() != codeMeasGroup || g.template() != "1411" {
			t.Fatalf("group %d: %v template %q", i, g.concept(), g.template())
		}
		if id := g.find(codeTrackingID); len(id) != 1 || id[0].str(tag.TextValue) != s.Label {
			t.Errorf("group %d tracking identifier", i)
		}
		if u := g.find(codeTrackingUID); len(u) != 1 || u[0].str(tag.UID) != s.TrackingUID {
			t.Errorf("group %d tracking UID is not the segment's", i)
		}
		ref := g.find(codeRefSegment)
		if len(ref) != 1 {
			t.Fatalf("group %d has %d referenced segments", i, len(ref))
		}
		r := ref[0].item(t, tag.ReferencedSOPSequence)
		if r.str(tag.ReferencedSOPInstanceUID) != seg.SOPInstanceUID || r.str(tag.ReferencedSOPClassUID) != SegmentationStorage ||
			len(r.ints(tag.ReferencedSegmentNumber)) != 1 || r.ints(tag.ReferencedSegmentNumber)[0] != s.Number {
			t.Errorf("group %d references segment %v of %s", i, r.ints(tag.ReferencedSegmentNumber), r.str(tag.ReferencedSOPInstanceUID))
		}
		if ss := g.find(codeSourceSeries); len(ss) != 1 || ss[0].str(tag.UID) != bc.src.SeriesInstanceUID {
			t.Errorf("group %d source series", i)
		}
		site := g.find(codeFindingSite)
		if len(site) != 1 || len(site[0].find(codeLaterality)) != 1 || site[0].find(codeLaterality)[0].code(tag.ConceptCodeSequence) != lateralityCode(s.Laterality) {
			t.Errorf("group %d finding site laterality", i)
		}
		// OHIF destructures the ContentSequence of every NUM of a group
		// without coordinates: each must have children.
		g.walk(func(_, it node) {
			if it.str(tag.ValueType) == "NUM" && it.concept() != codeRangeUncert && len(it.children()) == 0 {
				t.Errorf("group %d: NUM %v has no children", i, it.concept())
			}
		})
		vol := g.find(codeVolume)
		if len(vol) != 1 {
			t.Fatalf("group %d has %d volumes", i, len(vol))
		}
		v, unit := vol[0].num(t)
		want := ear.VolumeMM3
		if s.Structure.Values != nil {
			sp := ear.Label.Affine.Spacing()
			want = float64(s.Voxels) * sp[0] * sp[1] * sp[2]
		}
		if unit != unitMM3 || math.Abs(v-want) > 1e-9*math.Max(1, want) {
			t.Errorf("group %d volume %v %v, want %v mm3", i, v, unit, want)
		}
		names := vol[0].find(codeAlgorithmName)
		if len(names) != 1 || names[0].str(tag.TextValue) != algorithmName(bc.res.Model) || len(vol[0].find(codeAlgorithmVer)) != 1 {
			t.Errorf("group %d volume lacks the algorithm name and version", i)
		}
		if p := vol[0].find(codeAlgorithmParam); len(p) != 1 || !strings.Contains(p[0].str(tag.TextValue), bc.res.Model.SHA256) {
			t.Errorf("group %d volume lacks the model hash", i)
		}
		if s.Structure.Values == nil {
			pr := vol[0].find(codeRangeUncert)
			if len(pr) != 1 {
				t.Fatalf("group %d volume has no measurement uncertainty", i)
			}
			if u, unit := pr[0].num(t); unit != unitMM3 || u != bc.extras.VolumeSpreadMM3[s.Laterality] || pr[0].str(tag.RelationshipType) != "HAS PROPERTIES" {
				t.Errorf("group %d uncertainty %v %v", i, u, unit)
			}
		}
		sc := g.find(codeUncertainty)
		if len(sc) != 1 {
			t.Fatalf("group %d has %d uncertainty scores", i, len(sc))
		}
		if u, unit := sc[0].num(t); unit != unitNone || u != ear.Uncertainty {
			t.Errorf("group %d score %v %v, want %v", i, u, unit, ear.Uncertainty)
		}
		fl := g.find(codeOODFlag)
		if len(fl) != 1 || fl[0].code(tag.ConceptCodeSequence) != yesNo(ear.Flag.Raised) {
			t.Errorf("group %d flag", i)
		}
		if notes := g.find(codeReviewNote); ear.Flag.Raised != (len(notes) == 1) || (ear.Flag.Raised && notes[0].str(tag.TextValue) != ear.Flag.Reason) {
			t.Errorf("group %d review note %d for flag %v", i, len(notes), ear.Flag.Raised)
		}
	}
}

// checkLandmarkGroups: one TID 1410 group per landmark with a SCOORD3D
// POINT in patient coordinates on the source's frame of reference.
func checkLandmarkGroups(t *testing.T, bc *builtCase, groups []node) {
	t.Helper()
	i := 0
	for _, ear := range bc.res.Ears {
		for _, lm := range ear.Landmarks {
			g := groups[i]
			i++
			if g.template() != "1410" {
				t.Fatalf("landmark group template %q", g.template())
			}
			code, _ := landmarkCode(lm.Name)
			if f := g.find(codeFinding); len(f) != 1 || f[0].code(tag.ConceptCodeSequence) != code {
				t.Errorf("%s %s: finding", ear.Laterality, lm.Name)
			}
			site := g.find(codeFindingSite)
			if len(site) != 1 || site[0].find(codeLaterality)[0].code(tag.ConceptCodeSequence) != lateralityCode(ear.Laterality) {
				t.Errorf("%s %s: finding site laterality", ear.Laterality, lm.Name)
			}
			pts := g.find(codeImageRegion)
			if len(pts) != 1 || pts[0].str(tag.ValueType) != "SCOORD3D" || pts[0].str(tag.GraphicType) != "POINT" {
				t.Fatalf("%s %s: no SCOORD3D POINT", ear.Laterality, lm.Name)
			}
			if pts[0].str(tag.ReferencedFrameOfReferenceUID) != bc.src.FrameOfReferenceUID {
				t.Errorf("%s %s: frame of reference", ear.Laterality, lm.Name)
			}
			xyz := pts[0].floats(tag.GraphicData)
			if len(xyz) != 3 {
				t.Fatalf("GraphicData %v", xyz)
			}
			for a := 0; a < 3; a++ {
				if math.Abs(xyz[a]-lm.PatientMM[a]) > 1e-4*math.Max(1, math.Abs(lm.PatientMM[a])) {
					t.Errorf("%s %s: point %v, want %v", ear.Laterality, lm.Name, xyz, lm.PatientMM)
				}
			}
		}
	}
}

// checkHonestLabels: a model not for diagnosis says so in the series
// description, the algorithm name and a content item; others do not.
func checkHonestLabels(t *testing.T, bc *builtCase, root node) {
	t.Helper()
	nfd := bc.res.Model.NotForDiagnosis
	if got := strings.Contains(root.str(tag.SeriesDescription), notForDiagnosis); got != nfd {
		t.Errorf("SeriesDescription %q, not for diagnosis %v", root.str(tag.SeriesDescription), nfd)
	}
	var names []string
	root.walk(func(_, it node) {
		if it.concept() == codeAlgorithmName {
			names = append(names, it.str(tag.TextValue))
		}
	})
	for _, n := range names {
		if strings.Contains(n, notForDiagnosis) != nfd {
			t.Errorf("algorithm name %q, not for diagnosis %v", n, nfd)
		}
	}
	qe := root.find(codeQualitative)
	if len(qe) != 1 {
		t.Fatal("no report-level Qualitative Evaluations")
	}
	stmt := qe[0].find(codeNotDiagnosis)
	if nfd != (len(stmt) == 1) || (nfd && !strings.Contains(stmt[0].str(tag.TextValue), bc.res.Model.Statement)) {
		t.Errorf("not-for-diagnosis item: %d items for flag %v", len(stmt), nfd)
	}
	raised := false
	for _, e := range bc.res.Ears {
		raised = raised || e.Flag.Raised
	}
	if f := qe[0].find(codeOODFlag); len(f) != 1 || f[0].code(tag.ConceptCodeSequence) != yesNo(raised) {
		t.Error("report-level flag")
	}
}

func TestSRRejectsBadInput(t *testing.T) {
	bc := cases[1].build(t)
	seg, err := bc.writer.SEG(bc.src, bc.res)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(r *analysis.Result) *SEG
	}{
		{"no SEG", func(r *analysis.Result) *SEG { return nil }},
		{"SEG of another ear", func(r *analysis.Result) *SEG { r.Ears[0].Laterality = analysis.Left; return seg }},
		{"unknown landmark", func(r *analysis.Result) *SEG {
			r.Ears[0].Landmarks = append([]analysis.Landmark{{Name: "stapes"}}, r.Ears[0].Landmarks...)
			return seg
		}},
		{"no model version", func(r *analysis.Result) *SEG { r.Model.Version = " "; return seg }},
		{"landmark off the map", func(r *analysis.Result) *SEG {
			r.Ears[0].Landmarks = []analysis.Landmark{{Name: analysis.Helicotrema, PatientMM: [3]float64{math.NaN(), 0, 0}}}
			return seg
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := *bc.res
			res.Ears = append([]analysis.Ear(nil), bc.res.Ears...)
			s := tt.mutate(&res)
			if _, err := bc.writer.SR(bc.src, &res, s, nil); !errors.Is(err, ErrResult) {
				t.Fatalf("SR error %v, want ErrResult", err)
			}
		})
	}
}
