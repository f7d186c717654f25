package analysis

import (
	"testing"

	"github.com/otonode/otonode/analysis/volume"
)

func TestLargestComponent(t *testing.T) {
	n := [3]int{5, 4, 3}
	at := func(i, j, k int) int { return i + n[0]*(j+n[1]*k) }
	tests := []struct {
		name string
		on   [][3]int
		keep [][3]int
	}{
		{"empty", nil, nil},
		{"one voxel", [][3]int{{2, 2, 1}}, [][3]int{{2, 2, 1}}},
		{"bigger wins",
			[][3]int{{0, 0, 0}, {4, 3, 2}, {3, 3, 2}},
			[][3]int{{4, 3, 2}, {3, 3, 2}}},
		{"corner neighbours are connected (26)",
			[][3]int{{0, 0, 0}, {1, 1, 1}, {2, 2, 2}, {4, 0, 0}, {4, 1, 0}},
			[][3]int{{0, 0, 0}, {1, 1, 1}, {2, 2, 2}}},
		{"no wrap across a row end",
			[][3]int{{4, 0, 0}, {0, 1, 0}, {2, 3, 2}, {3, 3, 2}},
			[][3]int{{2, 3, 2}, {3, 3, 2}}},
		{"tie keeps the first",
			[][3]int{{0, 0, 0}, {0, 3, 2}},
			[][3]int{{0, 0, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mask := make([]bool, n[0]*n[1]*n[2])
			for _, p := range tt.on {
				mask[at(p[0], p[1], p[2])] = true
			}
			want := make([]bool, len(mask))
			for _, p := range tt.keep {
				want[at(p[0], p[1], p[2])] = true
			}
			if got := largestComponent(mask, n); got != len(tt.keep) {
				t.Errorf("kept %d voxels, want %d", got, len(tt.keep))
			}
			for p := range mask {
				if mask[p] != want[p] {
					t.Errorf("voxel %d: %v, want %v", p, mask[p], want[p])
				}
			}
		})
	}
}

// With the clean-up, a landmark whose heatmap peaks on a false-positive blob
// is looked for near the kept structure instead.
func TestLandmarkNearLargest(t *testing.T) {
	g := volume.Grid{Size: [3]int{20, 6, 6}, Affine: volume.NewAffine([3]float64{1, 0, 0}, [3]float64{0, 1, 0}, [3]float64{0, 0, 1}, [3]float64{0.5, 0.5, 0.5}, [3]float64{})}
	prob := make([]float32, g.Len())
	heat := make([]float32, g.Len())
	for k := 1; k < 5; k++ {
		for j := 1; j < 5; j++ {
			for i := 1; i < 6; i++ { // the labyrinth: 5×4×4 voxels at i 1–5
				prob[g.Index(i, j, k)] = 0.9
			}
			prob[g.Index(17, j, k)] = 0.9 // a smaller false positive at i 17
		}
	}
	heat[g.Index(17, 2, 2)] = 9 // its heatmap peak is on the false positive
	heat[g.Index(6, 2, 2)] = 5  // and lower next to the labyrinth
	if _, p := peakWithin(heat, g.Size, nil); p[0] != 17 {
		t.Fatalf("unrestricted peak at %v, want i = 17", p)
	}
	near := nearLargest(prob, g, 0.5, 1.5)
	if near == nil || near[g.Index(17, 2, 2)] || !near[g.Index(6, 2, 2)] || !near[g.Index(8, 2, 2)] || near[g.Index(9, 2, 2)] {
		t.Fatalf("near mask wrong: %v", near)
	}
	if _, p := peakWithin(heat, g.Size, near); p[0] != 6 {
		t.Errorf("restricted peak at %v, want i = 6", p)
	}
	if nearLargest(make([]float32, g.Len()), g, 0.5, 1.5) != nil {
		t.Error("nothing predicted: want no restriction")
	}
}
