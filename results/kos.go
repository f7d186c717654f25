package results

import (
	"fmt"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/otonode/otonode/analysis"
)

// KeyObjectSelectionStorage is the Key Object Selection Document Storage SOP
// class (PS3.3 A.35.4).
const KeyObjectSelectionStorage = "1.2.840.10008.5.1.4.1.1.88.59"

// Document titles of a KOS (CID 7010) that otonode writes.
var (
	// KOSForPeerReview selects a flagged analysis for a radiologist's look.
	KOSForPeerReview = Code{"113008", "DCM", "For Peer Review"}
	// KOSRejectedForQuality is the IHE IOCM rejection note: a PACS that
	// supports IOCM hides the instances it references.
	KOSRejectedForQuality = Code{"113001", "DCM", "Rejected for Quality Reasons"}
)

var codeKeyObjectDescription = Code{"113012", "DCM", "Key Object Description"}

// Reference identifies one instance: what a KOS selects and an SR's
// Predecessor Documents Sequence names.
type Reference struct {
	StudyInstanceUID  string
	SeriesInstanceUID string
	SOPClassUID       string
	SOPInstanceUID    string
}

// Reference returns the SEG's identity in the source's study.
func (s *SEG) Reference(src *Source) Reference {
	return Reference{src.StudyInstanceUID, s.SeriesInstanceUID, SegmentationStorage, s.SOPInstanceUID}
}

// Reference returns the SR's identity in the source's study.
func (s *SR) Reference(src *Source) Reference {
	return Reference{src.StudyInstanceUID, s.SeriesInstanceUID, Comprehensive3DSRStorage, s.SOPInstanceUID}
}

// KOSRequest says what a Key Object Selection Document selects and why.
type KOSRequest struct {
	// Title is the document title from CID 7010: KOSForPeerReview or
	// KOSRejectedForQuality.
	Title Code
	// Description is the Key Object Description (113012), e.g. the flag's
	// reasons; empty leaves it out.
	Description string
	// References are the selected instances, all in the source's study (an
	// empty StudyInstanceUID means that study). A document spanning studies
	// would need a copy per study (Identical Documents Sequence), which
	// otonode never needs.
	References []Reference
	// NotForDiagnosis marks the series description like the SEG's and SR's.
	NotForDiagnosis bool
}

// KOS is a written Key Object Selection Document instance.
type KOS struct {
	File              []byte // DICOM Part 10 file
	SOPInstanceUID    string
	SeriesInstanceUID string
	Title             Code
}

// KOS writes a Key Object Selection Document (TID 2010) in a series of its
// own in the source's study. Its UIDs come from the Writer's generator under
// keys named by the title, so a peer-review KOS and a rejection note of one
// analysis differ, and writing either twice gives the same instance.
func (w *Writer) KOS(src *Source, k KOSRequest) (*KOS, error) {
	if w.UIDs == nil {
		return nil, fmt.Errorf("%w: no UID generator", ErrResult)
	}
	if src == nil || src.StudyInstanceUID == "" {
		return nil, fmt.Errorf("%w: the KOS needs the source's study", ErrSource)
	}
	var number int
	switch k.Title {
	case KOSForPeerReview:
		number = w.seriesNumber() + 2
	case KOSRejectedForQuality:
		number = w.seriesNumber() + 3
	default:
		return nil, fmt.Errorf("%w: KOS title %v is not one otonode writes", ErrResult, k.Title)
	}
	refs, err := selected(src, k.References)
	if err != nil {
		return nil, err
	}
	now := w.now()
	key := "kos." + k.Title.Value
	out := &KOS{SOPInstanceUID: w.UIDs.UID(key + ".instance"), SeriesInstanceUID: w.UIDs.UID(key + ".series"), Title: k.Title}

	var d dataSet
	d.set(tag.SpecificCharacterSet, "ISO_IR 192")
	d.set(tag.SOPClassUID, KeyObjectSelectionStorage)
	d.set(tag.SOPInstanceUID, out.SOPInstanceUID)
	d.set(tag.InstanceCreationDate, now.Format("20060102"))
	d.set(tag.InstanceCreationTime, now.Format("150405"))
	w.setPatientStudy(&d, src)
	w.setEquipment(&d)

	// Key Object Document Series and Key Object Document modules.
	d.set(tag.Modality, "KO")
	d.set(tag.SeriesInstanceUID, out.SeriesInstanceUID)
	d.set(tag.SeriesNumber, number)
	what := "otonode " + strings.ToLower(k.Title.Meaning)
	if k.NotForDiagnosis {
		what += " - " + notForDiagnosis
	}
	d.set(tag.SeriesDescription, lo(what))
	d.seq(tag.ReferencedPerformedProcedureStepSequence)
	d.set(tag.InstanceNumber, 1)
	d.set(tag.ContentDate, now.Format("20060102"))
	d.set(tag.ContentTime, now.Format("150405"))
	d.seq(tag.CurrentRequestedProcedureEvidenceSequence, hierarchy(refs)...)

	// SR Document Content: the root container titled from CID 7010.
	d.set(tag.ValueType, "CONTAINER")
	d.seq(tag.ConceptNameCodeSequence, k.Title.item())
	d.set(tag.ContinuityOfContent, "SEPARATE")
	d.seq(tag.ContentTemplateSequence, templateItem("2010"))
	deviceUID := w.deviceObserverUID()
	content := []dataSet{
		codeContent("HAS CONCEPT MOD", codeLanguage, codeEnglishUS),
		codeContent("HAS OBS CONTEXT", codeObserverType, codeDevice),
		uidContent("HAS OBS CONTEXT", codeDeviceUID, deviceUID),
		textContent("HAS OBS CONTEXT", codeDeviceName, "otonode"),
	}
	if desc := strings.TrimSpace(k.Description); desc != "" {
		// TEXT is UT: no length limit worth checking here.
		content = append(content, textContent("CONTAINS", codeKeyObjectDescription, desc))
	}
	for _, r := range refs {
		content = append(content, selectedItem(r))
	}
	d.seq(tag.ContentSequence, content...)

	file, err := encodeFile(&d, w.implementationClassUID())
	if err != nil {
		return nil, err
	}
	out.File = file
	return out, nil
}

// deviceObserverUID identifies this node as the observer (TID 1004).
func (w *Writer) deviceObserverUID() string {
	if w.DeviceObserverUID != "" {
		return w.DeviceObserverUID
	}
	return w.UIDs.UID("device-observer")
}

// FlagKOS writes the "For Peer Review" KOS of a flagged analysis: it selects
// every source slice, the SEG and the SR, and says why the analysis was
// flagged.
func (w *Writer) FlagKOS(src *Source, res *analysis.Result, seg *SEG, sr *SR) (*KOS, error) {
	if seg == nil || sr == nil {
		return nil, fmt.Errorf("%w: the peer-review KOS needs the SEG and SR it selects", ErrResult)
	}
	var reasons []string
	for _, ear := range res.Ears {
		if !ear.Flag.Raised {
			continue
		}
		reason := strings.TrimSpace(ear.Flag.Reason)
		if reason == "" {
			reason = "flagged for review"
		}
		side := lateralityWord(ear.Laterality)
		reasons = append(reasons, strings.ToUpper(side[:1])+side[1:]+" ear: "+reason)
	}
	if len(reasons) == 0 {
		return nil, fmt.Errorf("%w: no ear is flagged", ErrResult)
	}
	desc := "otonode flagged this analysis for review. " + strings.Join(reasons, "; ") + "."
	if res.Model.NotForDiagnosis {
		desc += " " + notForDiagnosis + "."
	}
	refs := make([]Reference, 0, len(src.Slices)+2)
	for _, sl := range src.Slices {
		refs = append(refs, Reference{src.StudyInstanceUID, src.SeriesInstanceUID, sl.SOPClassUID, sl.SOPInstanceUID})
	}
	refs = append(refs, seg.Reference(src), sr.Reference(src))
	return w.KOS(src, KOSRequest{Title: KOSForPeerReview, Description: desc, References: refs, NotForDiagnosis: res.Model.NotForDiagnosis})
}

// RejectionKOS writes the IOCM rejection note (Rejected for Quality Reasons)
// for results that a newer revision's analysis supersedes.
func (w *Writer) RejectionKOS(src *Source, rejected []Reference, reason string) (*KOS, error) {
	return w.KOS(src, KOSRequest{Title: KOSRejectedForQuality, Description: reason, References: rejected})
}

// selected checks the references, fills in the study and drops duplicates,
// keeping the order.
func selected(src *Source, refs []Reference) ([]Reference, error) {
	if len(refs) == 0 {
		return nil, fmt.Errorf("%w: a KOS selects at least one instance", ErrResult)
	}
	seen := make(map[string]bool, len(refs))
	out := make([]Reference, 0, len(refs))
	for _, r := range inStudy(src, refs) {
		switch {
		case r.SeriesInstanceUID == "" || r.SOPClassUID == "" || r.SOPInstanceUID == "":
			return nil, fmt.Errorf("%w: reference %+v lacks a series, SOP class or SOP instance UID", ErrResult, r)
		case r.StudyInstanceUID != src.StudyInstanceUID:
			return nil, fmt.Errorf("%w: reference to %s is in study %s, not the source's %s",
				ErrResult, r.SOPInstanceUID, r.StudyInstanceUID, src.StudyInstanceUID)
		case seen[r.SOPInstanceUID]:
			continue
		}
		seen[r.SOPInstanceUID] = true
		out = append(out, r)
	}
	return out, nil
}

// inStudy returns refs with an empty StudyInstanceUID set to the source's.
func inStudy(src *Source, refs []Reference) []Reference {
	out := make([]Reference, len(refs))
	for i, r := range refs {
		if r.StudyInstanceUID == "" {
			r.StudyInstanceUID = src.StudyInstanceUID
		}
		out[i] = r
	}
	return out
}

// hierarchy groups references by study and series, in the order first seen
// (Hierarchical SOP Instance Reference macro, PS3.3 C.17.2.1).
func hierarchy(refs []Reference) []dataSet {
	var studies []string
	series := make(map[string][]string)
	sops := make(map[string][]Slice)
	for _, r := range refs {
		if _, ok := series[r.StudyInstanceUID]; !ok {
			studies = append(studies, r.StudyInstanceUID)
		}
		if _, ok := sops[r.SeriesInstanceUID]; !ok {
			series[r.StudyInstanceUID] = append(series[r.StudyInstanceUID], r.SeriesInstanceUID)
		}
		sops[r.SeriesInstanceUID] = append(sops[r.SeriesInstanceUID], Slice{SOPClassUID: r.SOPClassUID, SOPInstanceUID: r.SOPInstanceUID})
	}
	out := make([]dataSet, 0, len(studies))
	for _, st := range studies {
		var items []dataSet
		for _, se := range series[st] {
			items = append(items, referencedSOPs(se, sops[se]))
		}
		var study dataSet
		study.seq(tag.ReferencedSeriesSequence, items...)
		study.set(tag.StudyInstanceUID, st)
		out = append(out, study)
	}
	return out
}

// selectedItem is a TID 2010 reference: IMAGE for images, COMPOSITE for
// documents (structured reports and other KOS), which have no pixels.
func selectedItem(r Reference) dataSet {
	if strings.HasPrefix(r.SOPClassUID, "1.2.840.10008.5.1.4.1.1.88.") {
		d := contentItem("CONTAINS", "COMPOSITE", Code{})
		var ref dataSet
		ref.set(tag.ReferencedSOPClassUID, r.SOPClassUID)
		ref.set(tag.ReferencedSOPInstanceUID, r.SOPInstanceUID)
		d.seq(tag.ReferencedSOPSequence, ref)
		return d
	}
	return imageContent("CONTAINS", Code{}, r.SOPClassUID, r.SOPInstanceUID, 0)
}
