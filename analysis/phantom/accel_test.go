package phantom

import (
	"math"
	"testing"

	"github.com/otonode/otonode/analysis/volume"
)

// TestAccelMatchesBruteForce: the grid gives the exact distance to the
// nearest tube within reach and a lower bound beyond.
func TestAccelMatchesBruteForce(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		L := newLabyrinth(newDraws(seed, 1))
		d := newDraws(seed, 99)
		bad := 0
		for n := 0; n < 20000; n++ {
			p := add(L.tubes[d.intn(len(L.tubes))].a, d.jit3(reach+1))
			want := math.Inf(1)
			for i := range L.tubes {
				want = math.Min(want, L.tubes[i].sdf(p))
			}
			got, _ := L.all.dist(p)
			if want < reach && math.Abs(got-want) > 1e-9 || want >= reach && got > want+1e-9 {
				bad++
				if bad < 5 {
					t.Errorf("seed %d: at %v accel %.4f, brute force %.4f", seed, p, got, want)
				}
			}
		}
		if bad > 0 {
			t.Errorf("seed %d: %d of 20000 points wrong", seed, bad)
		}
	}
}

// TestRenderMatchesBruteForce: the octree's culling never changes which
// tissue or label a voxel centre gets.
func TestRenderMatchesBruteForce(t *testing.T) {
	for _, tc := range []struct {
		tokens string
		size   [3]int
		sp     float64
	}{
		{"right,otosclerosis", [3]int{64, 64, 64}, 0.25},
		{"left,rotated,formalin", [3]int{56, 56, 56}, 0.35},
		{"bilateral", [3]int{100, 40, 40}, 1.0},
	} {
		t.Run(tc.tokens, func(t *testing.T) { renderVsBrute(t, tc.tokens, tc.size, tc.sp) })
	}
}

func renderVsBrute(t *testing.T, tokens string, size [3]int, sp float64) {
	v := small(t, tokens)
	v.Size = size
	v.SpacingMM = [3]float64{sp, sp, sp}
	var sc *scene
	var g volume.Grid
	if _, err := Generate(t.Context(), 2, v, Options{onScene: func(s *scene, gg volume.Grid) { sc, g = s, gg }}); err != nil {
		t.Fatal(err)
	}
	r, err := render(t.Context(), sc, g, clinicalHU(), false, 2)
	if err != nil {
		t.Fatal(err)
	}
	all := make([]int32, len(sc.layers))
	for i := range all {
		all[i] = int32(i)
	}
	var p pt
	hu := clinicalHU()
	bad := 0
	for k := 0; k < g.Size[2]; k++ {
		for j := 0; j < g.Size[1]; j++ {
			for i := 0; i < g.Size[0]; i++ {
				p.reset(sc, g.Affine.Apply([3]float64{float64(i), float64(j), float64(k)}))
				ts, lab, _ := sc.classify(&p, all, sc.bg)
				o := g.Index(i, j, k)
				if r.hu[o] != hu[ts] || r.lab[o] != lab {
					bad++
					if bad < 10 {
						t.Logf("voxel %d,%d,%d: render %v/%d, brute force %v/%d", i, j, k, r.hu[o], r.lab[o], ts, lab)
					}
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d voxels differ from brute force", bad, g.Len())
	}
}

// TestAdaptiveRender: with a half-resolution far field the image stays
// close to the full render, and exact inside the fine box.
func TestAdaptiveRender(t *testing.T) {
	v := small(t, "right")
	v.Size = [3]int{120, 120, 100}
	v.SpacingMM = [3]float64{0.15, 0.15, 0.15}
	var sc *scene
	var g volume.Grid
	c, err := Generate(t.Context(), 1, v, Options{onScene: func(s *scene, gg volume.Grid) { sc, g = s, gg }})
	if err != nil {
		t.Fatal(err)
	}
	e := c.Info.Ears[0]
	ctr := e.Landmarks["oval_window"].Voxel
	b := volume.Box{}
	for a := 0; a < 3; a++ {
		b.Min[a], b.Max[a] = int(ctr[a])-20, int(ctr[a])+20
	}
	hu := clinicalHU()
	full, err := render(t.Context(), sc, g, hu, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	ad, coarse, err := renderAdaptive(t.Context(), sc, g, hu, true, 0, []volume.Box{b})
	if err != nil || coarse {
		t.Fatalf("adaptive: %v (coarse %v): the grid is below fineLimit", err, coarse)
	}
	ad, err = renderHalf(t.Context(), sc, g, hu, true, 0, []volume.Box{b})
	if err != nil {
		t.Fatal(err)
	}
	var diff float64
	for k := 0; k < g.Size[2]; k++ {
		for j := 0; j < g.Size[1]; j++ {
			for i := 0; i < g.Size[0]; i++ {
				o := g.Index(i, j, k)
				d := math.Abs(float64(full.hu[o] - ad.hu[o]))
				in := i >= b.Min[0] && i < b.Max[0] && j >= b.Min[1] && j < b.Max[1] && k >= b.Min[2] && k < b.Max[2]
				if in && (d != 0 || full.lab[o] != ad.lab[o]) {
					t.Fatalf("voxel %d,%d,%d inside the fine box differs", i, j, k)
				}
				diff += d
			}
		}
	}
	if m := diff / float64(g.Len()); m > 80 {
		t.Errorf("mean |full − adaptive| = %.1f HU", m)
	} else {
		t.Logf("mean |full − adaptive| = %.1f HU", m)
	}
}
