package metrics

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/otonode/otonode/analysis/volume"
)

func mask(size [3]int, sp [3]float64, on ...[3]int) *volume.Volume[uint8] {
	g := volume.Grid{Size: size, Affine: volume.Affine{{sp[0], 0, 0, 0}, {0, sp[1], 0, 0}, {0, 0, sp[2], 0}}}
	v := volume.New[uint8](g)
	for _, p := range on {
		v.Set(p[0], p[1], p[2], 1)
	}
	return v
}

func box(lo, hi int) [][3]int {
	var out [][3]int
	for k := lo; k <= hi; k++ {
		for j := lo; j <= hi; j++ {
			for i := lo; i <= hi; i++ {
				out = append(out, [3]int{i, j, k})
			}
		}
	}
	return out
}

func near(a, b float64) bool {
	if math.IsInf(a, 1) || math.IsInf(b, 1) {
		return a == b
	}
	return math.Abs(a-b) < 1e-12
}

func TestOverlap(t *testing.T) {
	sz, sp := [3]int{4, 1, 1}, [3]float64{1, 1, 1}
	cases := []struct {
		name          string
		pred, truth   [][3]int
		dice, iou, vs float64
	}{
		// P = {0,1,2}, T = {1,2,3}: TP 2, FP 1, FN 1.
		{"shifted", [][3]int{{0, 0, 0}, {1, 0, 0}, {2, 0, 0}}, [][3]int{{1, 0, 0}, {2, 0, 0}, {3, 0, 0}}, 4.0 / 6, 2.0 / 4, 1},
		// P = {0}, T = {0,1,2,3}: Dice 2/5, IoU 1/4, VS 1 − 3/5.
		{"subset", [][3]int{{0, 0, 0}}, [][3]int{{0, 0, 0}, {1, 0, 0}, {2, 0, 0}, {3, 0, 0}}, 2.0 / 5, 1.0 / 4, 2.0 / 5},
		{"disjoint", [][3]int{{0, 0, 0}}, [][3]int{{3, 0, 0}}, 0, 0, 1},
		{"identical", [][3]int{{2, 0, 0}}, [][3]int{{2, 0, 0}}, 1, 1, 1},
		{"both empty", nil, nil, 1, 1, 1},
		{"prediction empty", nil, [][3]int{{1, 0, 0}}, 0, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, err := Compare(mask(sz, sp, c.pred...), mask(sz, sp, c.truth...))
			if err != nil {
				t.Fatal(err)
			}
			if !near(o.Dice, c.dice) || !near(o.IoU, c.iou) || !near(o.VolumetricSimilarity, c.vs) {
				t.Fatalf("got %+v, want Dice %v IoU %v VS %v", o, c.dice, c.iou, c.vs)
			}
		})
	}
	if _, err := Compare(mask(sz, sp), mask([3]int{4, 2, 1}, sp)); err == nil {
		t.Fatal("different grids accepted")
	}
}

func TestDistances(t *testing.T) {
	aniso := [3]float64{0.5, 1, 2}
	r3, r2 := math.Sqrt(3), math.Sqrt(2)
	mean53 := (8*r3 + 36*r2 + 54) / 98
	cases := []struct {
		name             string
		size             [3]int
		sp               [3]float64
		pred, truth      [][3]int
		hd, pt, tp, avhd float64
	}{
		// Single voxels 3 apart along i at 0.5 mm: 1.5 mm both ways.
		{"points along i", [3]int{5, 2, 2}, aniso, [][3]int{{0, 0, 0}}, [][3]int{{3, 0, 0}}, 1.5, 1.5, 1.5, 1.5},
		// Offsets (1,1,1) → sqrt(0.25 + 1 + 4).
		{"points diagonal", [3]int{3, 3, 3}, aniso, [][3]int{{0, 0, 0}}, [][3]int{{1, 1, 1}}, math.Sqrt(5.25), math.Sqrt(5.25), math.Sqrt(5.25), math.Sqrt(5.25)},
		// A 3-cube inside a 5-cube (unit voxels): the inner surface (26
		// voxels) is 1 from the outer; the outer surface (98 voxels) has 8
		// corners at √3, 36 edge voxels at √2 and 54 face voxels at 1.
		{"nested cubes", [3]int{7, 7, 7}, [3]float64{1, 1, 1}, box(2, 4), box(1, 5), r3, 1, mean53, mean53},
		{"identical", [3]int{4, 4, 4}, aniso, box(1, 2), box(1, 2), 0, 0, 0, 0},
		{"both empty", [3]int{2, 2, 2}, aniso, nil, nil, 0, 0, 0, 0},
		{"one empty", [3]int{2, 2, 2}, aniso, box(0, 0), nil, math.Inf(1), math.Inf(1), math.Inf(1), math.Inf(1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := Distances(mask(c.size, c.sp, c.pred...), mask(c.size, c.sp, c.truth...))
			if err != nil {
				t.Fatal(err)
			}
			if !near(d.Hausdorff, c.hd) || !near(d.MeanPredToTruth, c.pt) || !near(d.MeanTruthToPred, c.tp) || !near(d.AverageHausdorff, c.avhd) {
				t.Fatalf("got %+v, want HD %v, P→T %v, T→P %v, AHD %v", d, c.hd, c.pt, c.tp, c.avhd)
			}
		})
	}
}

func TestSurface(t *testing.T) {
	s := Surface(mask([3]int{7, 7, 7}, [3]float64{1, 1, 1}, box(1, 5)...))
	if n := count(s); n != 125-27 {
		t.Fatalf("%d surface voxels of a 5-cube, want 98", n)
	}
}

// The EDT against brute force on random volumes with random anisotropic
// spacing.
func TestEDTMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for n := 0; n < 60; n++ {
		size := [3]int{1 + rng.IntN(9), 1 + rng.IntN(8), 1 + rng.IntN(7)}
		sp := [3]float64{0.1 + rng.Float64(), 0.1 + rng.Float64(), 0.1 + 3*rng.Float64()}
		nv := size[0] * size[1] * size[2]
		feat := make([]bool, nv)
		density := []float64{0, 0.01, 0.1, 0.5, 1}[n%5]
		for i := range feat {
			feat[i] = rng.Float64() < density
		}
		got := SquaredEDT(feat, size, sp)
		for k := 0; k < size[2]; k++ {
			for j := 0; j < size[1]; j++ {
				for i := 0; i < size[0]; i++ {
					best := math.Inf(1)
					for c := 0; c < size[2]; c++ {
						for b := 0; b < size[1]; b++ {
							for a := 0; a < size[0]; a++ {
								if !feat[a+size[0]*(b+size[1]*c)] {
									continue
								}
								dx, dy, dz := float64(i-a)*sp[0], float64(j-b)*sp[1], float64(k-c)*sp[2]
								best = math.Min(best, dx*dx+dy*dy+dz*dz)
							}
						}
					}
					g := got[i+size[0]*(j+size[1]*k)]
					if math.IsInf(best, 1) != math.IsInf(g, 1) || (!math.IsInf(best, 1) && math.Abs(g-best) > 1e-9*math.Max(1, best)) {
						t.Fatalf("size %v spacing %v voxel (%d,%d,%d): EDT² %v, brute force %v", size, sp, i, j, k, g, best)
					}
				}
			}
		}
	}
}

func TestLandmarkDistance(t *testing.T) {
	a := volume.Affine{{0.099, 0, 0, 10}, {0, 0.099, 0, 20}, {0, 0, 0.099, 30}}
	cases := []struct {
		p, q    [3]float64
		vox, mm float64
		affine  volume.Affine
	}{
		{[3]float64{0, 0, 0}, [3]float64{3, 4, 0}, 5, 0.495, a},
		{[3]float64{1.5, 2, 3}, [3]float64{1.5, 2, 3}, 0, 0, a},
		{[3]float64{0, 0, 0}, [3]float64{1, 1, 1}, math.Sqrt(3), math.Sqrt(0.25 + 1 + 4), volume.Affine{{0.5, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 2, 0}}},
	}
	for _, c := range cases {
		v, mm := LandmarkDistance(c.p, c.q, c.affine)
		if math.Abs(v-c.vox) > 1e-12 || math.Abs(mm-c.mm) > 1e-12 {
			t.Fatalf("%v–%v: %v voxels %v mm, want %v and %v", c.p, c.q, v, mm, c.vox, c.mm)
		}
	}
}
