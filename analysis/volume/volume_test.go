package volume

import (
	"math"
	"testing"
)

func TestAffineRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		a    Affine
	}{
		{"identity", Identity},
		{"axial", NewAffine([3]float64{1, 0, 0}, [3]float64{0, 1, 0}, [3]float64{0, 0, 1},
			[3]float64{0.099, 0.099, 0.2}, [3]float64{-25, -30, 100})},
		{"oblique", NewAffine([3]float64{0.8, 0.6, 0}, [3]float64{-0.6, 0.8, 0}, [3]float64{0, 0, -1},
			[3]float64{0.3, 0.3, 0.5}, [3]float64{10, 20, 30})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := tt.a.Inverse()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range [][3]float64{{0, 0, 0}, {1, 2, 3}, {511, 0.5, 399}} {
				q := inv.Apply(tt.a.Apply(p))
				for c := range 3 {
					if math.Abs(q[c]-p[c]) > 1e-9 {
						t.Fatalf("round trip of %v gave %v", p, q)
					}
				}
			}
		})
	}
}

func TestSpacingAndSingular(t *testing.T) {
	a := NewAffine([3]float64{0, 1, 0}, [3]float64{0, 0, -1}, [3]float64{1, 0, 0},
		[3]float64{0.5, 0.25, 2}, [3]float64{})
	if s := a.Spacing(); s != [3]float64{0.5, 0.25, 2} {
		t.Fatalf("spacing %v", s)
	}
	if d := a.Direction(1); d != [3]float64{0, 0, -1} {
		t.Fatalf("direction %v", d)
	}
	if _, err := (Affine{}).Inverse(); err != ErrSingular {
		t.Fatalf("zero affine: err %v, want ErrSingular", err)
	}
	g := Grid{Size: [3]int{2, 3, 4}, Affine: Identity}
	if g.Index(1, 2, 3) != 1+2*2+3*6 || g.Len() != 24 || g.Validate() != nil {
		t.Fatal("grid indexing")
	}
	if (Grid{Size: [3]int{0, 1, 1}, Affine: Identity}).Validate() == nil {
		t.Fatal("empty grid validated")
	}
}
