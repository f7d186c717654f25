package analysis

import (
	"context"
	"math"
	"testing"

	"github.com/otonode/otonode/analysis/phantom"
	"github.com/otonode/otonode/analysis/tta"
	"github.com/otonode/otonode/analysis/volume"
)

// TestSideFromShapeOnPhantoms checks the chirality rule on the phantoms'
// ground truth (landmarks and label centroid), in standard and arbitrary
// orientations and for both ears of a head.
func TestSideFromShapeOnPhantoms(t *testing.T) {
	for _, vs := range []string{"right", "left", "rotated,left", "rotated,right", "bilateral"} {
		v, err := phantom.ParseVariant(vs)
		if err != nil {
			t.Fatal(err)
		}
		if !v.Bilateral {
			v.Size = [3]int{100, 100, 90}
			v.SpacingMM = [3]float64{0.22, 0.22, 0.22}
		}
		for seed := uint64(1); seed <= 2; seed++ {
			c, err := phantom.Generate(context.Background(), seed, v, phantom.Options{NoSupersample: true})
			if err != nil {
				t.Fatal(err)
			}
			g := c.Label.Grid
			for _, e := range c.Info.Ears {
				// The centroid of this ear's label (the other ear of a
				// head is far away along x).
				var sum [3]float64
				var n float64
				for idx, l := range c.Label.Data {
					if l == 0 {
						continue
					}
					p := g.Affine.Apply([3]float64{float64(idx % g.Size[0]), float64(idx / g.Size[0] % g.Size[1]), float64(idx / (g.Size[0] * g.Size[1]))})
					if dx := p[0] - e.VestibuleMM[0]; dx*dx > 400 {
						continue
					}
					for a := range 3 {
						sum[a] += p[a]
					}
					n++
				}
				centre := [3]float64{sum[0] / n, sum[1] / n, sum[2] / n}
				lm := e.Landmarks
				got := sideFromShape(lm[Helicotrema].PatientMM, lm[OvalWindow].PatientMM, lm[RoundWindow].PatientMM, centre)
				if string(got) != e.Laterality {
					t.Errorf("%s seed %d: true side %s, from shape %q", vs, seed, e.Laterality, got)
				}
			}
		}
	}
}

// TestAnalyzeRefusesThickSlicePhantom: the thick-slice head CT negative
// has inner ears in view but is refused by the input gate before the model.
func TestAnalyzeRefusesThickSlicePhantom(t *testing.T) {
	v, err := phantom.ParseVariant("thickslice")
	if err != nil {
		t.Fatal(err)
	}
	c, err := phantom.Generate(context.Background(), 1, v, phantom.Options{NoSupersample: true})
	if err != nil {
		t.Fatal(err)
	}
	ct := volume.New[float32](c.CT.Grid)
	for i, x := range c.CT.Data {
		ct.Data[i] = float32(x)
	}
	a := &Analyzer{Manifest: testManifest(0.2), Model: fluidNet{}}
	res, err := a.Analyze(context.Background(), ct)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusNotAnalysable || len(res.Ears) != 0 {
		t.Fatalf("status %q (%s), %d ears; want not-analysable", res.Status, res.Reason, len(res.Ears))
	}
}

// leftNet segments like fluidNet but puts its landmarks, around the
// foreground's centroid, where a left labyrinth has them, whatever the
// input: a model that gets the shape wrong for a right ear.
type leftNet struct {
	fluidNet
	voxelMM float64
}

func (f leftNet) Run(x []float32, d, h, w int) ([][]float32, error) {
	outs, err := f.fluidNet.Run(x, d, h, w)
	if err != nil {
		return nil, err
	}
	seg, heat := outs[0], outs[1]
	n := len(x)
	var c [3]float64
	var cnt float64
	for idx, l := range seg {
		if l > 0 {
			c[0] += float64(idx % w)
			c[1] += float64(idx / w % h)
			c[2] += float64(idx / (w * h))
			cnt++
		}
	}
	for a := range c {
		c[a] /= max(cnt, 1)
	}
	for ch, p := range [][3]float64{mirror(rightHelicotrema), mirror(rightOval), mirror(rightRound)} {
		var q [3]float64 // the landmark in voxels, the centre at the centroid
		for a := range 3 {
			q[a] = c[a] + (p[a]-rightCentre[a])/f.voxelMM
		}
		for idx := range n {
			i, j, k := float64(idx%w), float64(idx/w%h), float64(idx/(w*h))
			heat[ch*n+idx] = float32(math.Exp(-((i-q[0])*(i-q[0]) + (j-q[1])*(j-q[1]) + (k-q[2])*(k-q[2])) / 8))
		}
	}
	return outs, nil
}

// TestAnalyzeBilateralSides: both ears of a bilateral head CT are analysed,
// each in its own half of the head and with its own side, even when the
// model's landmarks give both the shape of a left ear.
func TestAnalyzeBilateralSides(t *testing.T) {
	v, err := phantom.ParseVariant("bilateral")
	if err != nil {
		t.Fatal(err)
	}
	v.Size = [3]int{280, 160, 64}
	v.SpacingMM = [3]float64{0.4, 0.4, 0.4}
	c, err := phantom.Generate(context.Background(), 1, v, phantom.Options{NoSupersample: true})
	if err != nil {
		t.Fatal(err)
	}
	ct := volume.New[float32](c.CT.Grid)
	for i, x := range c.CT.Data {
		ct.Data[i] = float32(x)
	}
	identity, err := tta.ByName([]string{"identity"})
	if err != nil {
		t.Fatal(err)
	}
	norm := func(hu float32) float32 { return (hu - 500) / 1000 }
	net := leftNet{fluidNet: fluidNet{lo: norm(-500), hi: norm(1015)}, voxelMM: 0.4}
	a := &Analyzer{Manifest: testManifest(0.4), Model: net, Options: Options{TTA: identity, SingleWindow: 256}}
	res, err := a.Analyze(context.Background(), ct)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusDone || len(res.Ears) != 2 {
		t.Fatalf("status %q (%s), %d ears; want 2", res.Status, res.Reason, len(res.Ears))
	}
	for n, truth := range c.Info.Ears { // right first, as the result's
		ear := res.Ears[n]
		if string(ear.Laterality) != truth.Laterality {
			t.Errorf("ear %d: side %q, want %s", n+1, ear.Laterality, truth.Laterality)
		}
		// The ear's label holds its own vestibule.
		if labelAt(ear, truth.VestibuleMM) != 1 {
			t.Errorf("ear %d (%s): label misses the vestibule at %.1f", n+1, ear.Laterality, truth.VestibuleMM)
		}
	}
}
