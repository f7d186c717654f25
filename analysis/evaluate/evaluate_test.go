package evaluate

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otonode/otonode/analysis"
	"github.com/otonode/otonode/analysis/nifti"
	"github.com/otonode/otonode/analysis/volume"
)

// thresholdNet segments voxels below a normalised level and puts its
// heatmap peaks at their centroid: exactly rotation-equivariant, so the
// scores below depend on the pipeline and the metrics only.
type thresholdNet struct{ lo, hi float32 }

func (f thresholdNet) Run(x []float32, d, h, w int) ([][]float32, error) {
	n := len(x)
	seg, heat := make([]float32, n), make([]float32, 3*n)
	var c [3]float64
	var cnt float64
	for idx, v := range x {
		seg[idx] = -8
		if v >= f.lo && v < f.hi {
			seg[idx] = 8
			c[0], c[1], c[2] = c[0]+float64(idx%w), c[1]+float64(idx/w%h), c[2]+float64(idx/(w*h))
			cnt++
		}
	}
	for a := range c {
		c[a] /= math.Max(cnt, 1)
	}
	for idx := range x {
		i, j, k := float64(idx%w)-c[0], float64(idx/w%h)-c[1], float64(idx/(w*h))-c[2]
		g := float32(math.Exp(-(i*i + j*j + k*k) / 8))
		heat[idx], heat[n+idx], heat[2*n+idx] = g, g, g
	}
	return [][]float32{seg, heat}, nil
}

// writeCase writes a case: a capsule (2000 HU) with a fluid ellipsoid in
// petrous bone (1100 HU); the label is the ellipsoid; all three landmarks
// are put at its centre, shifted by offset mm along x.
func writeCase(t *testing.T, dir, id string, negative bool, offset float64) {
	t.Helper()
	g := volume.Grid{Size: [3]int{80, 80, 64}, Affine: volume.NewAffine([3]float64{1, 0, 0}, [3]float64{0, 1, 0}, [3]float64{0, 0, 1}, [3]float64{0.3, 0.3, 0.3}, [3]float64{-12, -12, -9.6})}
	ct := volume.New[float32](g)
	lab := volume.New[uint8](g)
	for k := range g.Size[2] {
		for j := range g.Size[1] {
			for i := range g.Size[0] {
				p := g.Affine.Apply([3]float64{float64(i), float64(j), float64(k)})
				val := float32(1100)
				if negative {
					val = 40
				} else if p[0]*p[0]+p[1]*p[1]+p[2]*p[2] < 49 {
					val = 2000
				}
				if !negative && p[0]*p[0]/6.25+p[1]*p[1]/2.56+p[2]*p[2]/2.56 < 1 {
					val = 30
					lab.Set(i, j, k, 2)
				}
				ct.Set(i, j, k, val)
			}
		}
	}
	cd := filepath.Join(dir, id)
	os.MkdirAll(cd, 0o755)
	if err := nifti.WriteFile(filepath.Join(cd, "ct.nii.gz"), ct, nifti.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := nifti.WriteFile(filepath.Join(cd, "label.nii.gz"), lab, nifti.Options{}); err != nil {
		t.Fatal(err)
	}
	ears := []any{}
	if !negative {
		inv, _ := g.Affine.Inverse()
		pt := [3]float64{offset, 0, 0}
		lm := map[string]any{}
		for _, n := range analysis.LandmarkOrder {
			lm[n] = map[string]any{"patient_mm": pt, "voxel": inv.Apply(pt)}
		}
		ears = append(ears, map[string]any{"laterality": "R", "landmarks": lm})
	}
	b, _ := json.Marshal(map[string]any{"variant_tokens": map[bool]string{true: "negative", false: "normal"}[negative], "ears": ears})
	os.WriteFile(filepath.Join(cd, "case.json"), b, 0o644)
}

func TestEvaluateDataset(t *testing.T) {
	dir := t.TempDir()
	writeCase(t, dir, "c1", false, 0)
	writeCase(t, dir, "c2", false, 0.6) // the truth 2 voxels off the centre
	writeCase(t, dir, "n1", true, 0)
	ds, _ := json.Marshal(map[string]any{"format": "otonode-dataset/1", "splits": map[string][]string{"test": {"c1", "c2", "n1"}, "train": {}}})
	os.WriteFile(filepath.Join(dir, "dataset.json"), ds, 0o644)

	cases, err := ReadDataset(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 3 || cases[2].Variant != "negative" {
		t.Fatalf("cases %+v", cases)
	}
	m := &analysis.Manifest{Name: "threshold", VoxelSizeMM: 0.3, Threshold: 0.5}
	m.Chunk.Size, m.Chunk.Overlap, m.Input.SpatialMultiple = [3]int{64, 64, 64}, 8, 1
	m.Normalization.ClipLow, m.Normalization.ClipHigh, m.Normalization.Mean, m.Normalization.Std = -1000, 2500, 0, 1000
	a := &analysis.Analyzer{Manifest: m, Model: thresholdNet{lo: -0.5, hi: 1.015}}
	var rs []CaseResult
	for _, c := range cases {
		r, err := Run(context.Background(), a, c)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, *r)
	}
	for _, r := range rs[:2] {
		if !r.Correct || r.Dice < 0.85 || float64(r.Hausdorff) > 1.0 {
			t.Errorf("%s: correct %v dice %.3f HD %.2f", r.ID, r.Correct, r.Dice, r.Hausdorff)
		}
	}
	if e := rs[0].Landmarks["helicotrema"]; e.MM > 0.3 {
		t.Errorf("c1 helicotrema error %.2f mm, want about 0", e.MM)
	}
	if e := rs[1].Landmarks["oval_window"]; math.Abs(e.MM-0.6) > 0.3 || math.Abs(e.Voxels-e.MM/0.3) > 1e-6 {
		t.Errorf("c2 oval window error %.2f mm / %.2f voxels, want 0.6 mm / 2 voxels", e.MM, e.Voxels)
	}
	if !rs[2].Correct || rs[2].Status != analysis.StatusNoInnerEar {
		t.Errorf("negative: %+v", rs[2])
	}
	ss := Summarise(rs, func(r CaseResult) string { return r.Variant })
	if len(ss) != 3 || ss[0].Subset != "all" || ss[0].Cases != 3 || ss[0].Correct != 3 || ss[0].Dice.N != 2 {
		t.Fatalf("summaries %+v", ss)
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, ss); err != nil || !strings.Contains(buf.String(), "negative") {
		t.Fatalf("table %q %v", buf.String(), err)
	}
	buf.Reset()
	if err := WriteCSV(&buf, rs); err != nil || strings.Count(buf.String(), "\n") != 4 {
		t.Fatalf("csv %q %v", buf.String(), err)
	}
	buf.Reset()
	if err := WriteJSON(&buf, rs, ss); err != nil || !json.Valid(buf.Bytes()) {
		t.Fatalf("json %v", err)
	}
}

func TestReadDatasetErrors(t *testing.T) {
	if _, err := ReadDataset(t.TempDir()); err == nil {
		t.Fatal("folder without dataset.json accepted")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "dataset.json"), []byte(`{"splits":{"test":["x"]}}`), 0o644)
	if _, err := ReadDataset(dir, "validation"); err == nil {
		t.Fatal("unknown split accepted")
	}
	if _, err := ReadDataset(dir); err == nil {
		t.Fatal("missing case accepted")
	}
}
