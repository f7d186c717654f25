package analysis

import "testing"

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
