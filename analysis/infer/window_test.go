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

func TestEvenStarts(t *testing.T) {
	tests := []struct {
		lo, hi, n, w, overlap int
		want                  []int
	}{
		{0, 5, 5, 8, 2, []int{0}},             // axis shorter than a window
		{10, 14, 40, 8, 2, []int{8}},          // centred on a short span
		{0, 4, 40, 8, 2, []int{0}},            // …kept inside the axis
		{36, 40, 40, 8, 2, []int{32}},         //
		{0, 20, 20, 8, 3, []int{0, 4, 8, 12}}, // equal overlaps of 4
		{0, 242, 242, 64, 25, []int{0, 36, 71, 107, 142, 178}},
		{0, 242, 242, 64, 12, []int{0, 45, 89, 134, 178}},
		{0, 242, 242, 64, 0, []int{0, 59, 119, 178}},
		{30, 150, 242, 64, 8, []int{30, 86}}, // a box: windows inside it
	}
	for _, tt := range tests {
		got := EvenStarts(tt.lo, tt.hi, tt.n, tt.w, tt.overlap)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("EvenStarts(%d, %d, %d, %d, %d) = %v, want %v", tt.lo, tt.hi, tt.n, tt.w, tt.overlap, got, tt.want)
			continue
		}
		for i := 1; i < len(got); i++ {
			if ov := got[i-1] + tt.w - got[i]; ov < tt.overlap {
				t.Errorf("EvenStarts(%d, %d, %d, %d, %d): overlap %d at window %d", tt.lo, tt.hi, tt.n, tt.w, tt.overlap, ov, i)
			}
		}
		if got[0] > tt.lo && tt.hi-tt.lo > tt.w || got[len(got)-1]+tt.w < min(tt.hi, tt.n) {
			t.Errorf("EvenStarts(%d, %d, %d, %d, %d) = %v leaves voxels uncovered", tt.lo, tt.hi, tt.n, tt.w, tt.overlap, got)
		}
	}
}

// TestPredictBoxMatchesPointwise checks that a box's outputs are the
// region's at the box's voxels, that unwanted outputs are dropped, and that
// windows read context from beyond the box.
func TestPredictBoxMatchesPointwise(t *testing.T) {
	dims := [3]int{20, 30, 17}
	n := dims[0] * dims[1] * dims[2]
	x := make([]float32, n)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	for _, box := range []Box{
		{Min: [3]int{3, 4, 5}, Max: [3]int{19, 29, 12}},
		{Min: [3]int{8, 8, 8}, Max: [3]int{10, 11, 12}}, // smaller than a window
	} {
		net := &pointwise{multiple: 4}
		out, err := PredictBox(context.Background(), net, x, dims, box, Tiling{Window: [3]int{8, 8, 8}, Overlap: 2, Multiple: 4}, []bool{true, false})
		if err != nil {
			t.Fatal(err)
		}
		if out[1] != nil || len(out[0]) != box.Len() {
			t.Fatalf("box %v: outputs of %d and %d values", box, len(out[0]), len(out[1]))
		}
		bs := box.Size()
		for z := range bs[0] {
			for y := range bs[1] {
				for xx := range bs[2] {
					v := x[((box.Min[0]+z)*dims[1]+box.Min[1]+y)*dims[2]+box.Min[2]+xx]
					if got := out[0][(z*bs[1]+y)*bs[2]+xx]; math.Abs(float64(got-(2*v+1))) > 1e-5 {
						t.Fatalf("box %v voxel %v: %g, want %g", box, [3]int{z, y, xx}, got, 2*v+1)
					}
				}
			}
		}
		for _, s := range net.shapes {
			if s != [3]int{8, 8, 8} {
				t.Errorf("box %v: window %v, want 8³ (context, not padding)", box, s)
			}
		}
	}
}

// PredictFrom follows a rod through the windows it crosses and runs no
// other window.
func TestPredictFrom(t *testing.T) {
	dims := [3]int{40, 40, 40}
	x := make([]float32, 40*40*40)
	for i := range x {
		x[i] = -1
	}
	for w := 4; w < 36; w++ { // a rod along w at d = h = 20
		x[(20*40+20)*40+w] = 1
	}
	reach := ReachAbove(0) // 2x+1 ≥ 0: on the rod
	net := &pointwise{multiple: 4}
	seg, windows, err := PredictFrom(context.Background(), net, x, dims, Tiling{Window: [3]int{8, 8, 8}, Multiple: 4}, [3]int{20, 20, 20}, 0, reach, -100, nil)
	if err != nil {
		t.Fatal(err)
	}
	if windows != 5 || len(net.shapes) != 5 {
		t.Fatalf("%d windows (%d runs), want the 5 the rod crosses", windows, len(net.shapes))
	}
	for w := range 40 {
		if got, want := seg[(20*40+20)*40+w], 2*x[(20*40+20)*40+w]+1; got != want {
			t.Errorf("rod row, w=%d: %g, want %g", w, got, want)
		}
	}
	if got := seg[0]; got != -100 {
		t.Errorf("a voxel no window ran: %g, want the fill", got)
	}
}

func TestReachAbove(t *testing.T) {
	e := [3]int{6, 5, 4}
	at := func(p [3]int) int { return (p[0]*e[1]+p[1])*e[2] + p[2] }
	tests := []struct {
		name string
		on   [][3]int
		want [][3]int
	}{
		{"inside", [][3]int{{2, 2, 2}}, nil},
		{"one face", [][3]int{{2, 2, 0}}, [][3]int{{0, 0, -1}}},
		{"edge", [][3]int{{0, 0, 2}}, [][3]int{{-1, 0, 0}, {0, -1, 0}, {-1, -1, 0}}},
		{"corner", [][3]int{{5, 4, 3}}, [][3]int{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 1, 0}, {1, 0, 1}, {0, 1, 1}, {1, 1, 1}}},
		// Two faces reached at different places: no diagonal neighbour.
		{"two faces apart", [][3]int{{0, 2, 2}, {3, 4, 1}}, [][3]int{{-1, 0, 0}, {0, 1, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := make([]float32, e[0]*e[1]*e[2])
			for _, p := range tt.on {
				out[at(p)] = 1
			}
			got := ReachAbove(0.5)(out, e)
			var want Directions
			for _, d := range tt.want {
				want[(d[0]+1)*9+(d[1]+1)*3+d[2]+1] = true
			}
			if got != want {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

// PredictFrom runs a diagonal neighbour only when the structure gets there:
// through a face neighbour (the turn) or not at all. A window that reaches
// two faces at different places does not queue the window between them.
func TestPredictFromDiagonal(t *testing.T) {
	dims := [3]int{8, 16, 16}
	for _, tt := range []struct {
		name string
		turn bool
		want int
	}{
		{"two faces apart", false, 3}, // (0,0), (0,1), (1,0); not (1,1)
		{"turn into the diagonal", true, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			x := make([]float32, dims[0]*dims[1]*dims[2])
			for i := range x {
				x[i] = -1
			}
			for w := 2; w < 12; w++ { // along w at h = 4, into the window at w ≥ 8
				x[(4*16+4)*16+w] = 1
			}
			x[(4*16+7)*16+2] = 1 // the first window reaches h = 7 far from w = 7
			x[(4*16+8)*16+2] = 1 // …and its neighbour at h ≥ 8 has it too
			if tt.turn {
				for h := 4; h < 14; h++ { // along h at w = 11, into h ≥ 8
					x[(4*16+h)*16+11] = 1
				}
			}
			net := &pointwise{multiple: 4}
			_, windows, err := PredictFrom(context.Background(), net, x, dims, Tiling{Window: [3]int{8, 8, 8}, Multiple: 4}, [3]int{4, 4, 4}, 0, ReachAbove(0), -100, nil)
			if err != nil {
				t.Fatal(err)
			}
			if windows != tt.want || len(net.shapes) != tt.want {
				t.Fatalf("%d windows (%d runs), want %d", windows, len(net.shapes), tt.want)
			}
		})
	}
}

// The windows PredictFrom keeps blend again over any box to what the
// network gave there, with the fill where no window ran.
func TestBlendKeptWindows(t *testing.T) {
	dims := [3]int{40, 40, 40}
	x := make([]float32, 40*40*40)
	for i := range x {
		x[i] = -1
	}
	for w := 4; w < 36; w++ {
		x[(20*40+20)*40+w] = 1
	}
	var kept []Window
	net := &pointwise{multiple: 4}
	tl := Tiling{Window: [3]int{8, 8, 8}, Multiple: 4}
	_, windows, err := PredictFrom(context.Background(), net, x, dims, tl, [3]int{20, 20, 20}, 0, ReachAbove(0), -100, func(w Window) { kept = append(kept, w) })
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != windows {
		t.Fatalf("kept %d windows of %d run", len(kept), windows)
	}
	box := Box{Min: [3]int{18, 19, 0}, Max: [3]int{27, 22, 40}} // z ≥ 24: no window ran
	out, err := Blend(kept, dims, box, []float32{-50, 7})
	if err != nil {
		t.Fatal(err)
	}
	bs := box.Size()
	n := box.Len()
	fills := 0
	for z := range bs[0] {
		for y := range bs[1] {
			for w := range bs[2] {
				p := [3]int{box.Min[0] + z, box.Min[1] + y, w}
				v := x[(p[0]*40+p[1])*40+p[2]]
				i := (z*bs[1]+y)*bs[2] + w
				covered := false
				for _, k := range kept {
					covered = covered || k.Box(dims).Overlaps(Box{Min: p, Max: [3]int{p[0] + 1, p[1] + 1, p[2] + 1}})
				}
				wantSeg, wantHeat := 2*v+1, v*v
				if !covered {
					wantSeg, wantHeat = -50, 7
					fills++
				}
				if d := math.Abs(float64(out[0][i] - wantSeg)); d > 1e-5 {
					t.Fatalf("segmentation at %v = %g, want %g", p, out[0][i], wantSeg)
				}
				if d := math.Abs(float64(out[1][2*n+i] - wantHeat)); d > 1e-5 {
					t.Fatalf("third heatmap at %v = %g, want %g", p, out[1][2*n+i], wantHeat)
				}
			}
		}
	}
	if fills == 0 || fills == n {
		t.Errorf("%d of %d box voxels filled; want some covered and some not", fills, n)
	}
	if _, err := Blend(nil, dims, box, nil); err == nil {
		t.Error("no windows: want an error")
	}
}

func TestWindowFor(t *testing.T) {
	tests := []struct {
		l, w, grow, overlap, m, want int
	}{
		{143, 64, 96, 0, 16, 80},  // two of 80 (160) instead of three of 64 (192)
		{127, 64, 96, 0, 16, 64},  // two of 64 already
		{164, 64, 96, 0, 16, 64},  // three of 64 and two of 96 both 192: the shorter
		{143, 64, 0, 0, 16, 64},   // no growth asked
		{90, 64, 96, 0, 16, 96},   // one window of 96 instead of two of 64
		{150, 64, 96, 25, 16, 96}, // with overlap: two of 96 (192) vs four of 64 (256)
		{30, 64, 96, 0, 16, 64},   // short span: one window of the chunk
	}
	for _, tt := range tests {
		if got := windowFor(tt.l, tt.w, tt.grow, tt.overlap, tt.m); got != tt.want {
			t.Errorf("windowFor(%d, %d, %d, %d, %d) = %d, want %d", tt.l, tt.w, tt.grow, tt.overlap, tt.m, got, tt.want)
		}
	}
}

// Grown windows give the same outputs for a pointwise network, seeing fewer
// voxels than windows of the chunk size.
func TestPredictBoxGrow(t *testing.T) {
	dims := [3]int{40, 50, 45}
	box := Box{Min: [3]int{3, 5, 2}, Max: [3]int{38, 44, 40}}
	n := dims[0] * dims[1] * dims[2]
	x := make([]float32, n)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	seen := map[bool]int{}
	for _, grow := range []bool{false, true} {
		net := &pointwise{multiple: 4}
		tl := Tiling{Window: [3]int{16, 16, 16}, Multiple: 4}
		if grow {
			tl.Grow = [3]int{24, 24, 24}
		}
		out, err := PredictBox(context.Background(), net, x, dims, box, tl, nil)
		if err != nil {
			t.Fatal(err)
		}
		bs := box.Size()
		for z := range bs[0] {
			for y := range bs[1] {
				for w := range bs[2] {
					v := x[((box.Min[0]+z)*dims[1]+box.Min[1]+y)*dims[2]+box.Min[2]+w]
					if got := out[0][(z*bs[1]+y)*bs[2]+w]; math.Abs(float64(got-(2*v+1))) > 1e-5 {
						t.Fatalf("grow %v: segmentation at %v = %g, want %g", grow, [3]int{z, y, w}, got, 2*v+1)
					}
				}
			}
		}
		for _, s := range net.shapes {
			seen[grow] += s[0] * s[1] * s[2]
			for a := range 3 {
				if s[a] > 16 && (!grow || s[a] > 24) {
					t.Fatalf("grow %v: window %v too large", grow, s)
				}
			}
		}
	}
	if seen[true] >= seen[false] {
		t.Errorf("grown windows see %d voxels, chunk-sized ones %d: want fewer", seen[true], seen[false])
	}
}
