package phantom

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otonode/otonode/analysis/nifti"
	"github.com/otonode/otonode/analysis/volume"
)

// need finds an external tool; in CI a missing tool fails the test.
func need(t *testing.T, path string) string {
	t.Helper()
	p, err := exec.LookPath(path)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed: %v", path, err)
		}
		t.Skipf("%s not installed", path)
	}
	return p
}

func pythonWith(t *testing.T, mods ...string) string {
	t.Helper()
	py := need(t, "/usr/bin/python3")
	if out, err := exec.Command(py, "-c", "import "+strings.Join(mods, ",")).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python modules %v: %v %s", mods, err, out)
		}
		t.Skipf("python modules %v missing", mods)
	}
	return py
}

// TestWrittenCase reads a written case back with our NIfTI reader,
// nibabel, pydicom, dcmdump and dciodvfy.
func TestWrittenCase(t *testing.T) {
	v := small(t, "left,otosclerosis")
	v.Size = [3]int{96, 80, 48}
	c := gen(t, 4, v)
	dir := t.TempDir()
	if err := WriteCase(context.Background(), dir, "c4", c, WriteOptions{DICOM: true}); err != nil {
		t.Fatal(err)
	}
	ct, _, err := nifti.ReadFileAs[int16](filepath.Join(dir, FileCT))
	if err != nil {
		t.Fatal(err)
	}
	if ct.Size != c.CT.Size || !sameAffine(ct.Affine, c.CT.Affine) || !equal(ct.Data, c.CT.Data) {
		t.Fatal("ct.nii.gz does not hold the case's CT")
	}
	lab, _, err := nifti.ReadFileAs[uint8](filepath.Join(dir, FileLabel))
	if err != nil {
		t.Fatal(err)
	}
	if lab.Size != c.Label.Size || !sameAffine(lab.Affine, c.Label.Affine) || !equal(lab.Data, c.Label.Data) {
		t.Fatal("label.nii.gz does not hold the case's label")
	}
	var mrk mrkFile
	b, err := os.ReadFile(filepath.Join(dir, FileLandmarks))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &mrk); err != nil {
		t.Fatal(err)
	}
	if len(mrk.Markups) != 1 || len(mrk.Markups[0].ControlPoints) != 3 || mrk.Markups[0].CoordinateSystem != "LPS" {
		t.Fatalf("markups %+v", mrk)
	}
	for i, p := range mrk.Markups[0].ControlPoints {
		if p.Label != LandmarkNames[i] || p.Position != c.Info.Ears[0].Landmarks[LandmarkNames[i]].PatientMM {
			t.Errorf("control point %d: %s %v", i, p.Label, p.Position)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, DirDICOM, "*.dcm"))
	if len(files) != v.Size[2] {
		t.Fatalf("%d DICOM files for %d slices", len(files), v.Size[2])
	}

	t.Run("dcmdump", func(t *testing.T) {
		dd := need(t, "dcmdump")
		for _, f := range []string{files[0], files[len(files)/2], files[len(files)-1]} {
			cmd := exec.Command(dd, "-q", "+L", f)
			cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
			out, err := cmd.CombinedOutput()
			if err != nil || strings.Contains(string(out), "W: ") || strings.Contains(string(out), "E: ") {
				t.Fatalf("dcmdump %s: %v\n%s", f, err, out)
			}
			if !strings.Contains(string(out), "(0028,0101) US 12") {
				t.Errorf("no BitsStored 12 in\n%s", out)
			}
		}
	})
	t.Run("dciodvfy", func(t *testing.T) {
		dv := need(t, "dciodvfy")
		for _, f := range []string{files[0], files[len(files)-1]} {
			out, _ := exec.Command(dv, f).CombinedOutput()
			if !strings.Contains(string(out), "CTImage") {
				t.Fatalf("dciodvfy did not recognise a CT image:\n%s", out)
			}
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, "Error") {
					t.Errorf("dciodvfy: %s", line)
				}
			}
		}
	})
	t.Run("pydicom+nibabel", func(t *testing.T) {
		py := pythonWith(t, "pydicom", "nibabel", "numpy")
		out, err := exec.Command(py, "-c", pyCheck, dir).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "OK") {
			t.Fatalf("python check: %v\n%s", err, out)
		}
	})
}

// sameAffine allows for the single precision of the NIfTI sform.
func sameAffine(a, b volume.Affine) bool {
	for r := 0; r < 3; r++ {
		for c := 0; c < 4; c++ {
			if math.Abs(a[r][c]-b[r][c]) > 1e-4 {
				return false
			}
		}
	}
	return true
}

// pyCheck reads the series with pydicom and the NIfTI files with nibabel and
// compares both with case.json.
const pyCheck = `
import glob, json, os, sys
import numpy as np, pydicom, nibabel as nib
d = sys.argv[1]
case = json.load(open(os.path.join(d, "case.json")))
ds = [pydicom.dcmread(f) for f in sorted(glob.glob(os.path.join(d, "dicom", "*.dcm")))]
ds.sort(key=lambda x: float(x.ImagePositionPatient[2]))
assert len({x.SeriesInstanceUID for x in ds}) == 1
assert len({x.StudyInstanceUID for x in ds}) == 1
assert len({x.FrameOfReferenceUID for x in ds}) == 1
assert len({x.SOPInstanceUID for x in ds}) == len(ds)
assert ds[0].SeriesInstanceUID == case["identity"]["series_instance_uid"]
hu = np.stack([x.pixel_array.astype(np.float64) * float(x.RescaleSlope) + float(x.RescaleIntercept) for x in ds])
A = np.array(case["grid"]["affine_lps"])
for k, x in enumerate(ds):
    exp = A[:, :3] @ np.array([0, 0, k]) + A[:, 3]
    assert np.allclose([float(v) for v in x.ImagePositionPatient], exp, atol=1e-3), (k, x.ImagePositionPatient, exp)
assert np.allclose([float(v) for v in ds[0].PixelSpacing], [A[1, 1], A[0, 0]])
ct = nib.load(os.path.join(d, "ct.nii.gz"))
lab = nib.load(os.path.join(d, "label.nii.gz"))
ras = np.diag([-1, -1, 1]) @ A
assert np.allclose(ct.affine[:3, :], ras, atol=1e-4), ct.affine
assert np.allclose(lab.affine, ct.affine)
assert lab.get_data_dtype() == np.uint8
v = np.asarray(ct.dataobj).transpose(2, 1, 0)
assert np.array_equal(v, hu), "DICOM and NIfTI differ"
l = np.asarray(lab.dataobj)
assert set(np.unique(l)) <= {0, 1, 2, 3}
for ear in case["ears"]:
    assert (l > 0).sum() == ear["label_voxels"]
    for name in ["helicotrema", "oval_window", "round_window"]:
        lm = ear["landmarks"][name]
        ijk = np.linalg.solve(A[:, :3], np.array(lm["patient_mm"]) - A[:, 3])
        assert np.allclose(ijk, lm["voxel"], atol=1e-6)
print("OK")
`

// TestCrop: cropped NIfTI files keep the whole label and the landmarks
// keep their patient positions, with voxel indices in the cropped grid.
func TestCrop(t *testing.T) {
	v := small(t, "right")
	v.Size = [3]int{120, 120, 100}
	v.SpacingMM = [3]float64{0.25, 0.25, 0.25}
	c := gen(t, 9, v)
	dir := t.TempDir()
	if err := WriteCase(context.Background(), dir, "c9", c, WriteOptions{Crop: 72}); err != nil {
		t.Fatal(err)
	}
	lab, _, err := nifti.ReadFileAs[uint8](filepath.Join(dir, FileLabel))
	if err != nil {
		t.Fatal(err)
	}
	if lab.Size[0] >= v.Size[0] || lab.Size[0] < 72 {
		t.Fatalf("cropped size %v", lab.Size)
	}
	var n int64
	for _, l := range lab.Data {
		if l != 0 {
			n++
		}
	}
	if n != c.Info.Ears[0].LabelVoxels {
		t.Fatalf("crop kept %d of %d labelled voxels", n, c.Info.Ears[0].LabelVoxels)
	}
	var cj caseJSON
	b, _ := os.ReadFile(filepath.Join(dir, FileCase))
	if err := json.Unmarshal(b, &cj); err != nil {
		t.Fatal(err)
	}
	if cj.DICOMGrid == nil || cj.DICOMGrid.Size != v.Size || cj.Grid.Size != lab.Size {
		t.Fatalf("grids in case.json: %+v / %+v", cj.Grid, cj.DICOMGrid)
	}
	for _, name := range LandmarkNames {
		lm := cj.Ears[0].Landmarks[name]
		if d := dist3(lab.Affine.Apply(lm.Voxel), lm.PatientMM); d > 1e-3 {
			t.Errorf("%s: cropped voxel maps %.4f mm off", name, d)
		}
		if lm.PatientMM != c.Info.Ears[0].Landmarks[name].PatientMM {
			t.Errorf("%s moved", name)
		}
	}
}
