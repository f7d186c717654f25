package analysis

import (
	"context"
	"math"
	"testing"

	"github.com/otonode/otonode/analysis/internal/scene"
	"github.com/otonode/otonode/analysis/tta"
	"github.com/otonode/otonode/analysis/volume"
)

// ellipsoid is the tests' name for a painted ellipsoid.
type ellipsoid = scene.Ellipsoid

func paint(size [3]int, spacing float64, origin [3]float64, bg float32, shapes []ellipsoid) *volume.Volume[float32] {
	return scene.Paint(size, spacing, origin, bg, shapes)
}

// An ear: a dense capsule and two fluid cavities in petrous bone (1100 HU
// in the scenes below). No air: its partial-volume rim would pass for fluid
// with the stand-in network below (laterality from air is tested in
// analysis/roi).
var (
	vestibule = ellipsoid{Centre: [3]float64{0, 0, 0}, Radii: [3]float64{2.5, 1.6, 1.6}, HU: 30}
	cochlea   = ellipsoid{Centre: [3]float64{-1, -4, -1}, Radii: [3]float64{2, 2, 1.2}, HU: 30}
	earScene  = []ellipsoid{
		{Centre: [3]float64{0, 0, 0}, Radii: [3]float64{7, 7, 6}, HU: 2000},
		vestibule, cochlea,
	}
)

// fluidNet is a stand-in network that is exactly equivariant under the TTA
// rotations: it segments fluid-density voxels and puts every heatmap's peak
// at their centroid. With it, the pipeline's geometry (resampling, TTA
// inversion, landmarks, volume) can be checked against the scene.
type fluidNet struct {
	lo, hi float32 // normalised fluid range
	biased bool    // break equivariance: add a logit depending on the index
}

func (f fluidNet) Run(x []float32, d, h, w int) ([][]float32, error) {
	n := len(x)
	seg := make([]float32, n)
	heat := make([]float32, 3*n)
	var c [3]float64
	var cnt float64
	for idx, v := range x {
		i, j, k := idx%w, idx/w%h, idx/(w*h)
		if v >= f.lo && v <= f.hi {
			seg[idx] = 8
			c[0] += float64(i)
			c[1] += float64(j)
			c[2] += float64(k)
			cnt++
		} else {
			seg[idx] = -8
		}
		if f.biased && i < 10 {
			seg[idx] += 10 // a slab of false foreground that turns with the input
		}
	}
	for a := range c {
		c[a] /= max(cnt, 1)
	}
	for idx := range x {
		i, j, k := float64(idx%w), float64(idx/w%h), float64(idx/(w*h))
		g := float32(math.Exp(-((i-c[0])*(i-c[0]) + (j-c[1])*(j-c[1]) + (k-c[2])*(k-c[2])) / 8))
		heat[idx], heat[n+idx], heat[2*n+idx] = g, g, g
	}
	return [][]float32{seg, heat}, nil
}

func testManifest(voxel float64) *Manifest {
	m := &Manifest{Format: ManifestFormat, Name: "test", TrainedOnSyntheticPhantoms: true, IntendedUse: "not for diagnosis"}
	m.VoxelSizeMM = voxel
	m.Chunk.Size = [3]int{64, 64, 64}
	m.Chunk.Overlap = 16
	m.Input.SpatialMultiple = 4
	m.Normalization.ClipLow, m.Normalization.ClipHigh = -1000, 2500
	m.Normalization.Mean, m.Normalization.Std = 500, 1000
	m.Threshold = 0.5
	m.Uncertainty.MarginMM = 1
	lo, hi := 20.0, 200.0
	m.PlausibleVolumeMM3.Min, m.PlausibleVolumeMM3.Max = &lo, &hi
	return m
}

func TestAnalyzeGeometry(t *testing.T) {
	ct := paint([3]int{110, 100, 90}, 0.25, [3]float64{-12, -13, -11}, 1100, earScene)
	m := testManifest(0.2)
	norm := func(hu float32) float32 { return (hu - 500) / 1000 }
	// Fluid is what is less dense than halfway between fluid and capsule.
	// fluidNet looks at its whole input (the centroid), so it must see the
	// region in one window.
	a := &Analyzer{Manifest: m, Model: fluidNet{lo: norm(-500), hi: norm(1015)}, Options: Options{SingleWindow: 256}}
	res, err := a.Analyze(context.Background(), ct)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusDone || len(res.Ears) != 1 {
		t.Fatalf("status %q (%s), %d ears", res.Status, res.Reason, len(res.Ears))
	}
	ear := res.Ears[0]
	if ear.Laterality != "" {
		t.Errorf("laterality %q, want unknown (no middle ear in view)", ear.Laterality)
	}
	want := 4.0 / 3 * math.Pi * (2.5*1.6*1.6 + 2*2*1.2)
	if math.Abs(ear.VolumeMM3-want)/want > 0.15 {
		t.Errorf("volume %.1f mm³, want %.1f ± 15%%", ear.VolumeMM3, want)
	}
	// The label covers the cavities, on the analysed box of the source
	// grid.
	for _, e := range []ellipsoid{vestibule, cochlea} {
		if labelAt(ear, e.Centre) != 1 {
			t.Errorf("label misses the cavity at %v", e.Centre)
		}
	}
	if b, ok := ear.Label.BoxIn(ct.Grid); !ok || [2][3]int{b.Min, b.Max} != ear.Analysed.SourceBox {
		t.Errorf("label's box on the source grid %v (%v), want the analysed box %v", b, ok, ear.Analysed.SourceBox)
	}
	if ear.Label.Len() >= ct.Len() {
		t.Errorf("label of %d voxels for a source grid of %d: want the analysed box only", ear.Label.Len(), ct.Len())
	}
	full, err := ear.LabelOn(ct.Grid)
	if err != nil {
		t.Fatal(err)
	}
	if full.At(0, 0, 0) != 0 {
		t.Error("label outside the region")
	}
	// Every landmark sits at the volume-weighted centroid of the cavities.
	v1, v2 := 2.5*1.6*1.6, 2*2*1.2
	var centroid [3]float64
	for a := range 3 {
		centroid[a] = (vestibule.Centre[a]*v1 + cochlea.Centre[a]*v2) / (v1 + v2)
	}
	for _, l := range ear.Landmarks {
		if d := dist3(l.PatientMM, centroid); d > 0.5 {
			t.Errorf("%s at %v, %.2f mm from %v", l.Name, l.PatientMM, d, centroid)
		}
		back := ct.Affine.Apply(l.Voxel)
		if dist3(back, l.PatientMM) > 1e-6 {
			t.Errorf("%s: voxel and patient coordinates disagree", l.Name)
		}
	}
	// An equivariant network has no spread across the rotations.
	if ear.Uncertainty > 1e-6 || ear.VolumeSpreadMM3 != 0 || ear.Flag.Raised {
		t.Errorf("uncertainty %g, volume spread %g, flag %+v; want none", ear.Uncertainty, ear.VolumeSpreadMM3, ear.Flag)
	}
	if !res.Model.NotForDiagnosis || len(res.Stages) == 0 {
		t.Errorf("model info %+v, stages %v", res.Model, res.Stages)
	}
}

func TestAnalyzeUncertaintyAndFlags(t *testing.T) {
	ct := paint([3]int{110, 100, 90}, 0.25, [3]float64{-12, -13, -11}, 1100, earScene)
	m := testManifest(0.25)
	thr := 1e-3
	m.Uncertainty.FlagThreshold = &thr
	norm := func(hu float32) float32 { return (hu - 500) / 1000 }
	a := &Analyzer{Manifest: m, Model: fluidNet{lo: norm(-500), hi: norm(1015), biased: true}, Options: Options{SingleWindow: 256}}
	res, err := a.Analyze(context.Background(), ct)
	if err != nil {
		t.Fatal(err)
	}
	ear := res.Ears[0]
	if ear.Uncertainty <= thr || ear.VolumeSpreadMM3 <= 0 || !ear.Flag.Raised {
		t.Fatalf("a network that is not rotation-equivariant gave uncertainty %g, flag %+v", ear.Uncertainty, ear.Flag)
	}
	// With the identity alone there is nothing to disagree.
	a.Options.TTA = []tta.Transform{tta.Identity}
	res, err = a.Analyze(context.Background(), ct)
	if err != nil {
		t.Fatal(err)
	}
	if u := res.Ears[0].Uncertainty; u != 0 {
		t.Fatalf("one pass gave uncertainty %g", u)
	}
}

func TestAnalyzeRefusals(t *testing.T) {
	m := testManifest(0.25)
	a := &Analyzer{Manifest: m, Model: fluidNet{}}
	tests := []struct {
		name   string
		ct     *volume.Volume[float32]
		status string
	}{
		{"thick slices", paint([3]int{40, 40, 10}, 1.0, [3]float64{-20, -20, -5}, 400, earScene), StatusNotAnalysable},
		{"no bone", paint([3]int{60, 60, 60}, 0.25, [3]float64{-7, -7, -7}, 40, nil), StatusNoInnerEar},
		{"solid bone", paint([3]int{60, 60, 60}, 0.25, [3]float64{-7, -7, -7}, 40, []ellipsoid{{Centre: [3]float64{}, Radii: [3]float64{5, 5, 5}, HU: 2000}}), StatusNoInnerEar},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := a.Analyze(context.Background(), tt.ct)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tt.status || res.Reason == "" || len(res.Ears) != 0 {
				t.Fatalf("status %q reason %q ears %d, want %q with a reason", res.Status, res.Reason, len(res.Ears), tt.status)
			}
		})
	}
}

func TestPeakSubVoxel(t *testing.T) {
	n := [3]int{9, 9, 9}
	h := make([]float32, 9*9*9)
	c := [3]float64{4.3, 3.8, 5.1}
	for k := range 9 {
		for j := range 9 {
			for i := range 9 {
				d := (float64(i)-c[0])*(float64(i)-c[0]) + (float64(j)-c[1])*(float64(j)-c[1]) + (float64(k)-c[2])*(float64(k)-c[2])
				h[i+9*(j+9*k)] = float32(-d) // a paraboloid: the fit is exact
			}
		}
	}
	_, p := peak(h, n)
	if dist3(p, c) > 1e-4 {
		t.Fatalf("peak %v, want %v", p, c)
	}
}

func dist3(a, b [3]float64) float64 {
	return math.Sqrt((a[0]-b[0])*(a[0]-b[0]) + (a[1]-b[1])*(a[1]-b[1]) + (a[2]-b[2])*(a[2]-b[2]))
}

// sizeNet records the input sizes it is given.
type sizeNet struct {
	fluidNet
	largest *int
}

func (s sizeNet) Run(x []float32, d, h, w int) ([][]float32, error) {
	*s.largest = max(*s.largest, d, h, w)
	return s.fluidNet.Run(x, d, h, w)
}

// TestAnalyzeWindowSizes: the network never sees an input larger than the
// manifest's chunk with MaxWindow -1, nor larger than 1.5 × the chunk by
// default (windows grow only where that saves voxels).
func TestAnalyzeWindowSizes(t *testing.T) {
	ct := paint([3]int{110, 100, 90}, 0.25, [3]float64{-12, -13, -11}, 1100, earScene)
	m := testManifest(0.2) // the region is about 110 voxels a side
	// A wide score margin makes the analysed box span more than one chunk
	// but less than two, where one larger window sees fewer voxels.
	m.Uncertainty.MarginMM = 4
	// A network that finds the fluid, so that the TTA passes run focused
	// (full TTA keeps the chunk).
	norm := func(hu float32) float32 { return (hu - 500) / 1000 }
	fluid := fluidNet{lo: norm(-500), hi: norm(1015)}
	for _, tt := range []struct {
		maxWindow, most int
	}{
		{-1, 64},
		{0, 96},
		{80, 80},
	} {
		var largest int
		// A pass other than the identity: the identity pass reuses the
		// scout's windows, which keep the chunk size.
		a := &Analyzer{Manifest: m, Model: sizeNet{fluid, &largest}, Options: Options{TTA: []tta.Transform{tta.Rotation(0, 2)}, MaxWindow: tt.maxWindow}}
		if _, err := a.Analyze(context.Background(), ct); err != nil {
			t.Fatal(err)
		}
		if largest > tt.most || largest < m.Chunk.Size[0] {
			t.Errorf("MaxWindow %d: largest input %d, want %d to %d", tt.maxWindow, largest, m.Chunk.Size[0], tt.most)
		}
	}
}

// labelAt is an ear's label at the source voxel nearest the patient
// position mm; 0 outside the label's box.
func labelAt(e Ear, mm [3]float64) uint8 {
	inv, err := e.Label.Affine.Inverse()
	if err != nil {
		return 0
	}
	p := inv.Apply(mm)
	i, j, k := int(math.Round(p[0])), int(math.Round(p[1])), int(math.Round(p[2]))
	if !e.Label.Contains(i, j, k) {
		return 0
	}
	return e.Label.At(i, j, k)
}

// The int16 volume of LoadOptions.Int16 gives the result of its float32
// copy, voxel for voxel: every step reads voxels as float32 or float64.
func TestAnalyzeInputInt16(t *testing.T) {
	ct := paint([3]int{110, 100, 90}, 0.25, [3]float64{-12, -13, -11}, 1100, earScene)
	ct16 := volume.New[int16](ct.Grid)
	for i, v := range ct.Data {
		ct16.Data[i] = int16(math.Round(float64(v)))
		ct.Data[i] = float32(ct16.Data[i]) // integer HU, as CT's are
	}
	m := testManifest(0.2)
	norm := func(hu float32) float32 { return (hu - 500) / 1000 }
	a := &Analyzer{Manifest: m, Model: fluidNet{lo: norm(-500), hi: norm(1015)}, Options: Options{SingleWindow: 256}}
	want, err := a.AnalyzeInput(context.Background(), &Input{CT: ct})
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.AnalyzeInput(context.Background(), &Input{CT16: ct16})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != StatusDone || len(got.Ears) != len(want.Ears) {
		t.Fatalf("int16: status %q, %d ears; float32: %q, %d ears", got.Status, len(got.Ears), want.Status, len(want.Ears))
	}
	for n, w := range want.Ears {
		g := got.Ears[n]
		if g.Label.Grid != w.Label.Grid || string(g.Label.Data) != string(w.Label.Data) {
			t.Errorf("ear %d: labels differ", n+1)
		}
		if g.VolumeMM3 != w.VolumeMM3 || g.Uncertainty != w.Uncertainty || g.Laterality != w.Laterality || g.Analysed != w.Analysed {
			t.Errorf("ear %d: int16 %+v, float32 %+v", n+1, g, w)
		}
		for l := range w.Landmarks {
			if g.Landmarks[l] != w.Landmarks[l] {
				t.Errorf("ear %d: landmark %s %+v, want %+v", n+1, w.Landmarks[l].Name, g.Landmarks[l], w.Landmarks[l])
			}
		}
	}
	if _, err := a.AnalyzeInput(context.Background(), &Input{}); err == nil {
		t.Error("an input without a volume was analysed")
	}
}
