package nifti

import (
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/otonode/otonode/analysis/volume"
)

const python = "/usr/bin/python3"

// needNibabel skips (or fails under CI) when nibabel cannot be imported.
func needNibabel(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(python, "-c", "import nibabel, numpy").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("nibabel is required in CI: %v: %s", err, out)
		}
		t.Skipf("nibabel not available: %v", err)
	}
}

func runPython(t *testing.T, script string, args ...string) {
	t.Helper()
	cmd := exec.Command(python, append([]string{"-c", script}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
}

// readF64 reads a raw little-endian float64 file written by numpy.
func readF64(t *testing.T, path string) []float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(b)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out
}

// Our file, read by nibabel: same affine (RAS) and the same scaled data.
func TestNibabelReadsOurFiles(t *testing.T) {
	needNibabel(t)
	for _, name := range []string{"a.nii", "a.nii.gz"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			g := volume.Grid{Size: [3]int{6, 5, 4}, Affine: obliqueAffine(name == "a.nii")}
			v := fill[int16](g, func(i int) float64 { return float64(i*37%500 - 250) })
			path := filepath.Join(dir, name)
			if err := WriteFile(path, v, Options{SclSlope: 0.25, SclInter: 7}); err != nil {
				t.Fatal(err)
			}
			runPython(t, `
import sys, numpy as np, nibabel as nib
img = nib.load(sys.argv[1])
assert img.header['sform_code'] == 2 and img.header['qform_code'] == 1
np.asarray(img.affine, '<f8').tofile(sys.argv[2])
np.asarray(img.get_qform(), '<f8').tofile(sys.argv[3])
np.asarray(img.get_fdata(), '<f8').ravel(order='F').tofile(sys.argv[4])
`, path, filepath.Join(dir, "aff"), filepath.Join(dir, "qaff"), filepath.Join(dir, "data"))
			ras := lpsToRAS(g.Affine)
			for _, f := range []string{"aff", "qaff"} {
				m := readF64(t, filepath.Join(dir, f))
				var got volume.Affine
				for r := 0; r < 3; r++ {
					copy(got[r][:], m[4*r:4*r+4])
				}
				affineClose(t, got, ras, 1e-5)
			}
			data := readF64(t, filepath.Join(dir, "data"))
			if len(data) != len(v.Data) {
				t.Fatalf("nibabel read %d voxels, want %d", len(data), len(v.Data))
			}
			for i, x := range data {
				if want := float64(v.Data[i])*0.25 + 7; x != want {
					t.Fatalf("voxel %d: nibabel %v, want %v", i, x, want)
				}
			}
		})
	}
}

// nibabel's file, read by us: big-endian, scaled, oblique, sform and qform
// set differently so the preference order is visible.
func TestWeReadNibabelFiles(t *testing.T) {
	needNibabel(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "nb.nii.gz")
	runPython(t, `
import sys, numpy as np, nibabel as nib
d = (np.arange(5*4*3).reshape((5,4,3), order='F') * 3 - 20).astype('>i2')
a = np.array([[0.0, -0.5, 0.1, 10], [0.7, 0.0, 0.0, -20], [0.0, 0.05, 2.0, 30], [0, 0, 0, 1]])
img = nib.Nifti1Image(d, a)
img.header.set_data_dtype('>i2')
img.header.set_slope_inter(2.0, -5.0)
img.set_qform(np.diag([1.5, 2.5, 3.5, 1.0]), code=1)
img.set_sform(a, code=2)
nib.save(img, sys.argv[1])
a.astype('<f8').tofile(sys.argv[2])
`, path, filepath.Join(dir, "aff"))
	v, h, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if h.Source != "sform" {
		t.Fatalf("source %q", h.Source)
	}
	m := readF64(t, filepath.Join(dir, "aff"))
	var ras volume.Affine
	for r := 0; r < 3; r++ {
		copy(ras[r][:], m[4*r:4*r+4])
	}
	affineClose(t, v.Affine, lpsToRAS(ras), 1e-6)
	if v.Size != [3]int{5, 4, 3} {
		t.Fatalf("size %v", v.Size)
	}
	for i, x := range v.Data {
		if want := float32((i*3-20)*2 - 5); x != want {
			t.Fatalf("voxel %d = %v, want %v", i, x, want)
		}
	}
}
