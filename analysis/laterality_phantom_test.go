package analysis

import (
	"context"
	"testing"

	"github.com/otonode/otonode/analysis/phantom"
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
