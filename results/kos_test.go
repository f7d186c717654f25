package results

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// kosObjects writes, for the first test case, the SEG and SR of revision 1,
// the SR of revision 2 replacing it, the peer-review KOS of revision 2 and
// the rejection note of revision 1's results.
type kosObjects struct {
	bc             *builtCase
	seg1, seg2     *SEG
	sr1, sr2       *SR
	flag, reject   *KOS
	paths          map[string]string // name -> file
	rejectedByKind []Reference
}

func writeKOSObjects(t *testing.T) *kosObjects {
	t.Helper()
	bc := cases[0].build(t) // bilateral, the second ear flagged, not for diagnosis
	o := &kosObjects{bc: bc, paths: map[string]string{}}
	var err error
	if o.seg1, o.sr1, err = bc.writer.Write(bc.src, bc.res, bc.extras); err != nil {
		t.Fatal(err)
	}
	w2 := *bc.writer
	w2.UIDs = HashUIDs{Seed: bc.src.SeriesInstanceUID + "|rev2|" + bc.res.Model.SHA256}
	o.rejectedByKind = []Reference{o.seg1.Reference(bc.src), o.sr1.Reference(bc.src)}
	x2 := *bc.extras
	pred := o.sr1.Reference(bc.src)
	pred.StudyInstanceUID = "" // the source's study
	x2.Replaces = []Reference{pred}
	if o.seg2, o.sr2, err = w2.Write(bc.src, bc.res, &x2); err != nil {
		t.Fatal(err)
	}
	if o.flag, err = w2.FlagKOS(bc.src, bc.res, o.seg2, o.sr2); err != nil {
		t.Fatal(err)
	}
	if o.reject, err = w2.RejectionKOS(bc.src, o.rejectedByKind, "superseded by revision 2"); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"seg1": o.seg1.File, "sr1": o.sr1.File, "seg2": o.seg2.File,
		"sr2": o.sr2.File, "flag": o.flag.File, "reject": o.reject.File} {
		p := filepath.Join(bc.dir, name+".dcm")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		o.paths[name] = p
		if keep := os.Getenv("RESULTS_KEEP"); keep != "" {
			os.MkdirAll(keep, 0o755)
			os.WriteFile(filepath.Join(keep, name+".dcm"), b, 0o644)
		}
	}
	return o
}

// refsOf returns the SOP instance UIDs a KOS's content tree selects, by
// value type.
func refsOf(root node) map[string]string {
	out := map[string]string{}
	for _, it := range root.children() {
		vt := it.str(tag.ValueType)
		if vt != "IMAGE" && vt != "COMPOSITE" {
			continue
		}
		for _, r := range it.items(tag.ReferencedSOPSequence) {
			out[r.str(tag.ReferencedSOPInstanceUID)] = vt
		}
	}
	return out
}

// evidenceOf returns study -> series -> SOP instances of a hierarchical
// reference sequence.
func evidenceOf(root node, seq tag.Tag) map[string]map[string][]string {
	out := map[string]map[string][]string{}
	for _, st := range root.items(seq) {
		series := map[string][]string{}
		for _, se := range st.items(tag.ReferencedSeriesSequence) {
			for _, r := range se.items(tag.ReferencedSOPSequence) {
				series[se.str(tag.SeriesInstanceUID)] = append(series[se.str(tag.SeriesInstanceUID)], r.str(tag.ReferencedSOPInstanceUID))
			}
		}
		out[st.str(tag.StudyInstanceUID)] = series
	}
	return out
}

func TestKOSStructure(t *testing.T) {
	o := writeKOSObjects(t)
	src := o.bc.src
	tests := []struct {
		name      string
		kos       *KOS
		title     Code
		selects   map[string]string // SOP instance -> value type
		descWords []string
	}{
		{"peer review", o.flag, KOSForPeerReview, func() map[string]string {
			m := map[string]string{o.seg2.SOPInstanceUID: "IMAGE", o.sr2.SOPInstanceUID: "COMPOSITE"}
			for _, sl := range src.Slices {
				m[sl.SOPInstanceUID] = "IMAGE"
			}
			return m
		}(), []string{"Left ear: uncertainty 0.0142 above threshold 0.01", notForDiagnosis}},
		{"rejection", o.reject, KOSRejectedForQuality,
			map[string]string{o.seg1.SOPInstanceUID: "IMAGE", o.sr1.SOPInstanceUID: "COMPOSITE"},
			[]string{"superseded by revision 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			meta, root := parseFile(t, tt.kos.File)
			if meta.str(tag.MediaStorageSOPClassUID) != KeyObjectSelectionStorage || root.str(tag.SOPClassUID) != KeyObjectSelectionStorage ||
				root.str(tag.SOPInstanceUID) != tt.kos.SOPInstanceUID || meta.str(tag.MediaStorageSOPInstanceUID) != tt.kos.SOPInstanceUID {
				t.Fatal("file meta and data set disagree on the SOP class or instance")
			}
			for tg, want := range map[tag.Tag]string{
				tag.Modality: "KO", tag.ValueType: "CONTAINER", tag.ContinuityOfContent: "SEPARATE",
				tag.StudyInstanceUID: src.StudyInstanceUID, tag.PatientID: src.PatientID,
				tag.SeriesInstanceUID: tt.kos.SeriesInstanceUID,
			} {
				if got := root.str(tg); got != want {
					t.Errorf("%v = %q, want %q", tg, got, want)
				}
			}
			if root.concept() != tt.title || root.template() != "2010" {
				t.Fatalf("title %v template %q", root.concept(), root.template())
			}
			if got := refsOf(root); !equalMaps(got, tt.selects) {
				t.Errorf("content selects %v\nwant %v", got, tt.selects)
			}
			// The evidence lists exactly what the content selects, by series.
			ev := evidenceOf(root, tag.CurrentRequestedProcedureEvidenceSequence)
			n := 0
			for study, series := range ev {
				if study != src.StudyInstanceUID {
					t.Errorf("evidence names study %s", study)
				}
				for _, sops := range series {
					for _, s := range sops {
						if _, ok := tt.selects[s]; !ok {
							t.Errorf("evidence lists %s, which the content does not select", s)
						}
						n++
					}
				}
			}
			if n != len(tt.selects) {
				t.Errorf("evidence lists %d instances, want %d", n, len(tt.selects))
			}
			desc := root.find(codeKeyObjectDescription)
			if len(desc) != 1 {
				t.Fatalf("%d key object descriptions", len(desc))
			}
			for _, w := range tt.descWords {
				if !strings.Contains(desc[0].str(tag.TextValue), w) {
					t.Errorf("description %q lacks %q", desc[0].str(tag.TextValue), w)
				}
			}
		})
	}
	if o.flag.SOPInstanceUID == o.reject.SOPInstanceUID || o.flag.SeriesInstanceUID == o.reject.SeriesInstanceUID {
		t.Error("the peer-review KOS and the rejection note share UIDs")
	}

	// The replacing SR names its predecessor; the first SR has none.
	_, sr2 := parseFile(t, o.sr2.File)
	pred := evidenceOf(sr2, tag.PredecessorDocumentsSequence)
	if got := pred[src.StudyInstanceUID][o.sr1.SeriesInstanceUID]; len(pred) != 1 || len(got) != 1 || got[0] != o.sr1.SOPInstanceUID {
		t.Errorf("predecessors %v, want %s", pred, o.sr1.SOPInstanceUID)
	}
	if _, sr1 := parseFile(t, o.sr1.File); sr1.el(tag.PredecessorDocumentsSequence) != nil {
		t.Error("the first SR has a Predecessor Documents Sequence")
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// kosPydicom reads the KOS with pydicom and checks what IOCM receivers read.
const kosPydicom = `
import sys, pydicom
flag = pydicom.dcmread(sys.argv[1])
rej = pydicom.dcmread(sys.argv[2])
sr2 = pydicom.dcmread(sys.argv[3])
for ds, code in ((flag, "113008"), (rej, "113001")):
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.59", ds.SOPClassUID
    assert ds.Modality == "KO"
    assert ds.ConceptNameCodeSequence[0].CodeValue == code
    assert ds.ConceptNameCodeSequence[0].CodingSchemeDesignator == "DCM"
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "2010"
rejected = {s.ReferencedSOPInstanceUID for st in rej.CurrentRequestedProcedureEvidenceSequence
            for se in st.ReferencedSeriesSequence for s in se.ReferencedSOPSequence}
assert rejected == set(sys.argv[4].split(",")), rejected
pred = sr2.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
assert pred.ReferencedSOPInstanceUID == sys.argv[5]
print("pydicom ok", len(flag.ContentSequence), "items in the peer-review KOS")
`

// TestKOSValidators runs dciodvfy and dsrdump on both KOS and the replacing
// SR, dcentvfy across everything, and pydicom.
func TestKOSValidators(t *testing.T) {
	o := writeKOSObjects(t)
	for _, name := range []string{"flag", "reject", "sr2"} {
		out, code := run(t, "dciodvfy", "-new", o.paths[name])
		if errs := messages(out, "Error"); code != 0 || len(errs) > 0 {
			t.Errorf("dciodvfy %s: rc %d\n%s", name, code, out)
		}
		logWarnings(t, "dciodvfy "+name, messages(out, "Warning"))
	}
	for name, want := range map[string]string{"flag": "For Peer Review", "reject": "Rejected for Quality Reasons"} {
		out, code := run(t, "dsrdump", "+Pc", o.paths[name])
		if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "Key Object Selection") {
			t.Errorf("dsrdump %s: rc %d\n%s", name, code, out)
		}
		for _, w := range messages(out, "W: ") {
			// dcmtk 3.6.7 cannot check VRs under UTF-8, nor TID 2010's
			// constraints, and says so; any other warning is a failure.
			if !strings.Contains(w, "does not support this Specific Character Set: ISO_IR 192") &&
				!strings.Contains(w, "Check for template constraints not yet supported") {
				t.Errorf("dsrdump %s: %s", name, w)
			}
		}
	}
	ent := append(append([]string{}, o.bc.paths...), o.paths["seg2"], o.paths["sr2"], o.paths["flag"], o.paths["reject"])
	out, code := run(t, "dcentvfy", ent...)
	if errs := messages(out, "Error"); code != 0 || len(errs) > 0 {
		t.Errorf("dcentvfy: rc %d\n%s", code, out)
	}

	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		need(t, "python3-with-pydicom (/usr/bin/python3)")
	}
	rejected := o.rejectedByKind[0].SOPInstanceUID + "," + o.rejectedByKind[1].SOPInstanceUID
	cmd := exec.Command(py, "-c", kosPydicom, o.paths["flag"], o.paths["reject"], o.paths["sr2"], rejected, o.sr1.SOPInstanceUID)
	b, err := cmd.CombinedOutput()
	if err != nil {
		if strings.Contains(string(b), "No module named") && os.Getenv("CI") != "true" {
			t.Skipf("pydicom not available: %s", b)
		}
		t.Fatalf("pydicom: %v\n%s", err, b)
	}
	t.Logf("%s", bytes.TrimSpace(b))
}

func TestKOSRejectsBadInput(t *testing.T) {
	bc := cases[1].build(t) // one ear, not flagged
	seg, sr, err := bc.writer.Write(bc.src, bc.res, bc.extras)
	if err != nil {
		t.Fatal(err)
	}
	good := seg.Reference(bc.src)
	tests := []struct {
		name string
		call func() (*KOS, error)
		want error
	}{
		{"unknown title", func() (*KOS, error) {
			return bc.writer.KOS(bc.src, KOSRequest{Title: Code{"113000", "DCM", "Of Interest"}, References: []Reference{good}})
		}, ErrResult},
		{"nothing selected", func() (*KOS, error) { return bc.writer.RejectionKOS(bc.src, nil, "x") }, ErrResult},
		{"other study", func() (*KOS, error) {
			r := good
			r.StudyInstanceUID = "1.2.3"
			return bc.writer.RejectionKOS(bc.src, []Reference{r}, "x")
		}, ErrResult},
		{"no SOP class", func() (*KOS, error) {
			r := good
			r.SOPClassUID = ""
			return bc.writer.RejectionKOS(bc.src, []Reference{r}, "x")
		}, ErrResult},
		{"no study", func() (*KOS, error) {
			return bc.writer.RejectionKOS(&Source{}, []Reference{good}, "x")
		}, ErrSource},
		{"nothing flagged", func() (*KOS, error) { return bc.writer.FlagKOS(bc.src, bc.res, seg, sr) }, ErrResult},
		{"no SEG", func() (*KOS, error) { return bc.writer.FlagKOS(bc.src, bc.res, nil, sr) }, ErrResult},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := tt.call()
			if !errors.Is(err, tt.want) || k != nil {
				t.Fatalf("got %v, %v; want %v", k, err, tt.want)
			}
		})
	}
	// Writing one rejection twice gives the same instance (deterministic
	// UIDs), and a duplicate reference is selected once.
	a, err := bc.writer.RejectionKOS(bc.src, []Reference{good, good, sr.Reference(bc.src)}, "superseded")
	if err != nil {
		t.Fatal(err)
	}
	b, err := bc.writer.RejectionKOS(bc.src, []Reference{good, sr.Reference(bc.src)}, "superseded")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.File, b.File) {
		t.Error("the same rejection written twice differs")
	}
}
