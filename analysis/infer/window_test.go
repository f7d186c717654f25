package infer

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

// pointwise is a network whose outputs at a voxel depend only on the input at
// that voxel, so any correct tiling and blending reproduces them exactly.
type pointwise struct {
	multiple int
	shapes   [][3]int
}

func (p *pointwise) Run(x []float32, d, h, w int) ([][]float32, error) {
	if d%p.multiple != 0 || h%p.multiple != 0 || w%p.multiple != 0 {
		return nil, fmt.Errorf("input %d×%d×%d not divisible by %d", d, h, w, p.multiple)
	}
	p.shapes = append(p.shapes, [3]int{d, h, w})
	n := len(x)
	seg := make([]float32, n)
	heat := make([]float32, 3*n)
	for i, v := range x {
		seg[i] = 2*v + 1
		heat[i], heat[n+i], heat[2*n+i] = v, -v, v*v
	}
	return [][]float32{seg, heat}, nil
}

func TestPredictMatchesPointwise(t *testing.T) {
	tests := []struct {
		name    string
		dims    [3]int
		tiling  Tiling
		wantRun int
	}{
		{"single padded", [3]int{10, 13, 7}, Tiling{Window: [3]int{16, 16, 16}, Overlap: 4, Multiple: 8}, 1},
		{"tiled", [3]int{20, 30, 17}, Tiling{Window: [3]int{8, 8, 8}, Overlap: 3, Multiple: 4}, 4 * 6 * 3},
		{"single bigger than window", [3]int{20, 30, 17}, Tiling{Window: [3]int{8, 8, 8}, Overlap: 3, Multiple: 4, Single: [3]int{32, 32, 32}}, 1},
		{"tiled, one axis shorter than window", [3]int{5, 30, 9}, Tiling{Window: [3]int{8, 8, 8}, Overlap: 2, Multiple: 8}, 1 * 5 * 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := tt.dims[0] * tt.dims[1] * tt.dims[2]
			x := make([]float32, n)
			r := rand.New(rand.NewPCG(3, 4))
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			net := &pointwise{multiple: tt.tiling.Multiple}
			out, err := Predict(context.Background(), net, x, tt.dims, tt.tiling)
			if err != nil {
				t.Fatal(err)
			}
			if len(net.shapes) != tt.wantRun {
				t.Errorf("%d runs, want %d (shapes %v)", len(net.shapes), tt.wantRun, net.shapes)
			}
			if len(out[0]) != n || len(out[1]) != 3*n {
				t.Fatalf("output sizes %d, %d", len(out[0]), len(out[1]))
			}
			for i, v := range x {
				want := []float32{2*v + 1, v, -v, v * v}
				got := []float32{out[0][i], out[1][i], out[1][n+i], out[1][2*n+i]}
				for c := range want {
					if math.Abs(float64(got[c]-want[c])) > 1e-5 {
						t.Fatalf("voxel %d channel %d: %g, want %g", i, c, got[c], want[c])
					}
				}
			}
		})
	}
}

func TestWindowStarts(t *testing.T) {
	tests := []struct {
		n, w, stride int
		want         []int
	}{
		{5, 8, 6, []int{0}},
		{8, 8, 6, []int{0}},
		{9, 8, 6, []int{0, 1}},
		{20, 8, 5, []int{0, 5, 10, 12}},
		{400, 128, 103, []int{0, 103, 206, 272}}, // the paper's 128³ chunks, 25 overlap
	}
	for _, tt := range tests {
		if got := WindowStarts(tt.n, tt.w, tt.stride); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("WindowStarts(%d, %d, %d) = %v, want %v", tt.n, tt.w, tt.stride, got, tt.want)
		}
	}
}

func TestPredictErrors(t *testing.T) {
	net := &pointwise{multiple: 1}
	ctx := context.Background()
	if _, err := Predict(ctx, net, make([]float32, 5), [3]int{2, 2, 2}, Tiling{Window: [3]int{2, 2, 2}}); err == nil {
		t.Error("wrong region length accepted")
	}
	if _, err := Predict(ctx, net, make([]float32, 27), [3]int{3, 3, 3}, Tiling{Window: [3]int{2, 2, 2}, Overlap: 2}); err == nil {
		t.Error("overlap equal to the window accepted")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Predict(cancelled, net, make([]float32, 27), [3]int{3, 3, 3}, Tiling{Window: [3]int{4, 4, 4}}); err == nil {
		t.Error("cancelled context ignored")
	}
}
