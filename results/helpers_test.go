package results

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/otonode/otonode/analysis"
	"github.com/otonode/otonode/analysis/volume"
)

const ctImageStorage = "1.2.840.10008.5.1.4.1.1.2"

// ctSpec describes a synthetic CT series.
type ctSpec struct {
	rows, cols, slices int
	iop                [6]float64
	spacing            [2]float64 // row, column
	sliceStep          float64
	origin             [3]float64
	patientName        string
}

// writeCT writes the series as single-frame CT files in shuffled order of
// instance numbers (so ReadSource must sort) and returns their paths.
func writeCT(t *testing.T, dir string, s ctSpec) []string {
	t.Helper()
	uids := HashUIDs{Seed: fmt.Sprintf("ct %v", s)}
	study, series, forUID := uids.UID("study"), uids.UID("series"), uids.UID("for")
	r := [3]float64{s.iop[0], s.iop[1], s.iop[2]}
	c := [3]float64{s.iop[3], s.iop[4], s.iop[5]}
	n := cross(r, c)
	rng := rand.New(rand.NewPCG(1, 2))
	order := rng.Perm(s.slices)
	var paths []string
	for _, k := range order {
		var d dataSet
		ipp := []float64{s.origin[0] + n[0]*s.sliceStep*float64(k), s.origin[1] + n[1]*s.sliceStep*float64(k), s.origin[2] + n[2]*s.sliceStep*float64(k)}
		d.set(tag.SpecificCharacterSet, "ISO_IR 192")
		d.set(tag.ImageType, []string{"ORIGINAL", "PRIMARY", "AXIAL"})
		d.set(tag.SOPClassUID, ctImageStorage)
		d.set(tag.SOPInstanceUID, uids.UID(fmt.Sprintf("slice %d", k)))
		d.set(tag.StudyDate, "20260102")
		d.set(tag.StudyTime, "101500")
		d.set(tag.AccessionNumber, "ACC42")
		d.set(tag.Modality, "CT")
		d.set(tag.Manufacturer, "Synthetic")
		d.set(tag.ReferringPhysicianName, "")
		d.set(tag.PatientName, s.patientName)
		d.set(tag.PatientID, "OTO-0001")
		d.set(tag.PatientBirthDate, "19700101")
		d.set(tag.PatientSex, "F")
		d.set(tag.SliceThickness, s.sliceStep)
		d.set(tag.KVP, 120.0)
		d.set(tag.StudyInstanceUID, study)
		d.set(tag.SeriesInstanceUID, series)
		d.set(tag.StudyID, "S1")
		d.set(tag.SeriesNumber, 2)
		d.set(tag.InstanceNumber, k+1)
		d.set(tag.ImagePositionPatient, ipp)
		d.set(tag.ImageOrientationPatient, s.iop[:])
		d.set(tag.FrameOfReferenceUID, forUID)
		d.set(tag.PositionReferenceIndicator, "")
		d.set(tag.SamplesPerPixel, 1)
		d.set(tag.PhotometricInterpretation, "MONOCHROME2")
		d.set(tag.Rows, s.rows)
		d.set(tag.Columns, s.cols)
		d.set(tag.PixelSpacing, s.spacing[:])
		d.set(tag.BitsAllocated, 16)
		d.set(tag.BitsStored, 16)
		d.set(tag.HighBit, 15)
		d.set(tag.PixelRepresentation, 1)
		d.set(tag.RescaleIntercept, 0.0)
		d.set(tag.RescaleSlope, 1.0)
		px := make([]byte, 2*s.rows*s.cols)
		for i := 0; i < s.rows*s.cols; i++ {
			binary.LittleEndian.PutUint16(px[2*i:], uint16(int16(i%200-100)))
		}
		d.setVR(tag.PixelData, "OW", px)
		b, err := encodeFile(&d, DefaultImplementationClassUID)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, fmt.Sprintf("ct_%03d.dcm", len(paths)))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

// testCase is a source series with an analysis result on it.
type testCase struct {
	name       string
	spec       ctSpec
	ears       []analysis.Laterality
	structures []Structure
	notForDiag bool
	// shared puts both ears' labels in one volume, as the phantom
	// generator's bilateral label is; each Ear.Label points at it.
	shared bool
}

var axial = [6]float64{1, 0, 0, 0, 1, 0}

// builtCase is a testCase made real: files, source, result.
type builtCase struct {
	dir    string
	paths  []string
	src    *Source
	res    *analysis.Result
	writer *Writer
	extras *Extras
	truth  map[analysis.Laterality]*volume.Volume[uint8] // each ear's own voxels
	spec   ctSpec
}

// build writes the CT and makes a result whose labels have a known,
// irregular pattern: a blob per ear, random holes, random labels per
// structure, and one empty slice inside each ear's span.
func (tc testCase) build(t *testing.T) *builtCase {
	t.Helper()
	dir := t.TempDir()
	paths := writeCT(t, dir, tc.spec)
	src, err := ReadSource(context.Background(), paths)
	if err != nil {
		t.Fatal(err)
	}
	g := src.Grid()
	rng := rand.New(rand.NewPCG(7, uint64(len(tc.name))))
	res := &analysis.Result{
		Status: "done",
		Model: analysis.Model{
			Name: "otonode-reference-unet", Version: "0.3.1",
			SHA256:          strings.Repeat("ab", 32),
			NotForDiagnosis: tc.notForDiag,
			Statement:       "Trained on synthetic phantoms only.",
		},
	}
	ext := &Extras{VolumeSpreadMM3: map[analysis.Laterality]float64{}}
	truth := make(map[analysis.Laterality]*volume.Volume[uint8])
	for ei, lat := range tc.ears {
		lab := volume.New[uint8](g)
		// Ear centre: right ear on the image's left half (patient right is
		// image left in a standard axial display), left ear on the right half.
		ci := g.Size[0] / 4
		if lat == analysis.Left {
			ci = 3 * g.Size[0] / 4
		}
		cj, ck := g.Size[1]/2, g.Size[2]/2+ei
		rad := [3]float64{float64(g.Size[0]) / 6, float64(g.Size[1]) / 4, float64(g.Size[2]) / 3}
		hole := ck + 1 // an empty slice inside the span
		voxels := 0
		for k := 0; k < g.Size[2]; k++ {
			for j := 0; j < g.Size[1]; j++ {
				for i := 0; i < g.Size[0]; i++ {
					dx, dy, dz := float64(i-ci)/rad[0], float64(j-cj)/rad[1], float64(k-ck)/rad[2]
					if dx*dx+dy*dy+dz*dz > 1 || k == hole || rng.IntN(7) == 0 {
						continue
					}
					v := uint8(1)
					if len(tc.structures) > 1 {
						v = uint8(1 + rng.IntN(3))
					}
					lab.Set(i, j, k, v)
					voxels++
				}
			}
		}
		sp := g.Affine.Spacing()
		ear := analysis.Ear{
			Laterality:  lat,
			Label:       lab,
			VolumeMM3:   float64(voxels) * sp[0] * sp[1] * sp[2],
			Uncertainty: 0.0042 + 0.01*float64(ei),
			Flag:        analysis.Flag{Raised: ei == 1, Reason: "uncertainty 0.0142 above threshold 0.01"},
		}
		for li, name := range analysis.LandmarkOrder {
			v := [3]float64{float64(ci) + 0.5*float64(li), float64(cj) - 0.25, float64(ck) + 0.3}
			ear.Landmarks = append(ear.Landmarks, analysis.Landmark{Name: name, Voxel: v, PatientMM: g.Affine.Apply(v), Peak: 0.9})
		}
		ext.VolumeSpreadMM3[lat] = 1.25 + float64(ei)
		truth[lat] = lab
		res.Ears = append(res.Ears, ear)
	}
	if tc.shared {
		both := volume.New[uint8](g)
		for _, lab := range truth {
			for i, v := range lab.Data {
				if v != 0 {
					both.Data[i] = v
				}
			}
		}
		for i := range res.Ears {
			res.Ears[i].Label = both
		}
	}
	w := &Writer{
		UIDs:       HashUIDs{Seed: src.SeriesInstanceUID + "|rev1|" + res.Model.SHA256},
		Now:        time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC),
		Equipment:  Equipment{Manufacturer: "otonode", ModelName: "otonode node", DeviceSerialNumber: "test-1", SoftwareVersions: "0.1.0"},
		Structures: tc.structures,
	}
	return &builtCase{dir: dir, paths: paths, src: src, res: res, writer: w, extras: ext, truth: truth, spec: tc.spec}
}

var cases = []testCase{
	{name: "bilateral 30x30", spec: ctSpec{rows: 30, cols: 30, slices: 12, iop: axial, spacing: [2]float64{0.4, 0.4}, sliceStep: 0.5, origin: [3]float64{-6, -5.5, 20}, patientName: "Müller^Jürgen"}, ears: []analysis.Laterality{analysis.Right, analysis.Left}, notForDiag: true},
	{name: "right 29x31 oblique", spec: ctSpec{rows: 29, cols: 31, slices: 9, iop: [6]float64{1, 0, 0, 0, math.Cos(0.3), -math.Sin(0.3)}, spacing: [2]float64{0.3, 0.35}, sliceStep: 0.6, origin: [3]float64{10.25, -3, -40}, patientName: "Doe^Jane"}, ears: []analysis.Laterality{analysis.Right}},
	{name: "bilateral shared label 30x30", spec: ctSpec{rows: 30, cols: 30, slices: 12, iop: axial, spacing: [2]float64{1.2, 1.2}, sliceStep: 1, origin: [3]float64{-18, -15, 30}, patientName: "Shared^Label"}, ears: []analysis.Laterality{analysis.Left, analysis.Right}, shared: true},
	{name: "left per-structure 24x24", spec: ctSpec{rows: 24, cols: 24, slices: 10, iop: axial, spacing: [2]float64{0.5, 0.5}, sliceStep: 0.5, origin: [3]float64{0, 0, 0}, patientName: "Roe^Richard"}, ears: []analysis.Laterality{analysis.Left, analysis.Right}, structures: PerStructure(), notForDiag: true},
}

// need finds a command-line tool; outside CI a missing one skips the test.
func need(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found and CI=true: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

// node is a parsed data set or item, read with suyashkumar/dicom: an
// implementation independent of our encoder.
type node []*dicom.Element

func parseFile(t *testing.T, b []byte) (meta, body node) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "x.dcm")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ds, err := dicom.ParseFile(p, nil, dicom.SkipProcessingPixelDataValue())
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	for _, e := range ds.Elements {
		if e.Tag.Group == 2 {
			meta = append(meta, e)
		} else {
			body = append(body, e)
		}
	}
	return meta, body
}

func (n node) el(t tag.Tag) *dicom.Element {
	for _, e := range n {
		if e.Tag == t {
			return e
		}
	}
	return nil
}

func (n node) str(t tag.Tag) string {
	e := n.el(t)
	if e == nil {
		return ""
	}
	v, _ := e.Value.GetValue().([]string)
	return strings.TrimRight(strings.Join(v, `\`), " \x00")
}

func (n node) ints(t tag.Tag) []int {
	e := n.el(t)
	if e == nil {
		return nil
	}
	v, _ := e.Value.GetValue().([]int)
	return v
}

func (n node) floats(t tag.Tag) []float64 {
	e := n.el(t)
	if e == nil {
		return nil
	}
	switch v := e.Value.GetValue().(type) {
	case []float64:
		return v
	case []string:
		out := make([]float64, len(v))
		for i, s := range v {
			fmt.Sscan(strings.TrimSpace(s), &out[i])
		}
		return out
	}
	return nil
}

func (n node) items(t tag.Tag) []node {
	e := n.el(t)
	if e == nil {
		return nil
	}
	seq, _ := e.Value.GetValue().([]*dicom.SequenceItemValue)
	out := make([]node, len(seq))
	for i, it := range seq {
		out[i] = node(it.GetValue().([]*dicom.Element))
	}
	return out
}

// item returns the only item of a sequence, failing otherwise.
func (n node) item(t *testing.T, tg tag.Tag) node {
	t.Helper()
	its := n.items(tg)
	if len(its) != 1 {
		t.Fatalf("%v: %d items, want 1", tg, len(its))
	}
	return its[0]
}

func (n node) code(tg tag.Tag) Code {
	its := n.items(tg)
	if len(its) != 1 {
		return Code{}
	}
	return Code{its[0].str(tag.CodeValue), its[0].str(tag.CodingSchemeDesignator), its[0].str(tag.CodeMeaning)}
}
