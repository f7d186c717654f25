package infer

import (
	"context"
	"fmt"
	"math"
)

// Runner runs a network on one [1,1,d,h,w] input and returns each output as
// [C,d,h,w] values (C channels, w fastest). *Model is a Runner.
type Runner interface {
	Run(x []float32, d, h, w int) ([][]float32, error)
}

// Tiling says how a region is cut into network inputs.
type Tiling struct {
	// Window is the size of one sliding window (d, h, w), the manifest's
	// chunk size; Overlap is the voxels shared by neighbouring windows.
	Window  [3]int
	Overlap int
	// Multiple is what every input dimension must be divisible by (2 to the
	// number of down-sampling steps); inputs are padded up to it.
	Multiple int
	// Single is the largest region (per axis) run as one input, padded,
	// instead of as sliding windows. Zero means Window. A network with
	// dynamic spatial axes sees the whole region at once, which wastes no
	// work on overlaps and has no seams.
	Single [3]int
	// Pad is the value inputs are padded with (for standardised CT, the
	// value of air or of the background after normalisation).
	Pad float32
}

// Predict runs r over the region x of size dims (d, h, w; w fastest) and
// returns each output at the region's size. Overlapping windows are blended
// with Gaussian weights centred on each window, so voxels near a window's
// border, where the network sees less context, count less.
func Predict(ctx context.Context, r Runner, x []float32, dims [3]int, t Tiling) ([][]float32, error) {
	if len(x) != dims[0]*dims[1]*dims[2] {
		return nil, fmt.Errorf("infer: region has %d values, want %v", len(x), dims)
	}
	if t.Multiple < 1 {
		t.Multiple = 1
	}
	single := t.Single
	if single == ([3]int{}) {
		single = t.Window
	}
	fits := true
	for a := range 3 {
		if roundUp(dims[a], t.Multiple) > roundUp(single[a], t.Multiple) {
			fits = false
		}
	}
	if fits {
		var size [3]int
		for a := range 3 {
			size[a] = roundUp(dims[a], t.Multiple)
		}
		return runPadded(ctx, r, x, dims, [3]int{}, size, t.Pad)
	}
	for a := range 3 {
		if t.Window[a] <= 0 || t.Window[a]%t.Multiple != 0 || t.Overlap >= t.Window[a] || t.Overlap < 0 {
			return nil, fmt.Errorf("infer: bad tiling: window %v, overlap %d, multiple %d", t.Window, t.Overlap, t.Multiple)
		}
	}
	var starts [3][]int
	for a := range 3 {
		starts[a] = WindowStarts(dims[a], t.Window[a], t.Window[a]-t.Overlap)
	}
	weight := gaussianWindow(t.Window)
	n := dims[0] * dims[1] * dims[2]
	var acc [][]float32
	norm := make([]float32, n)
	for _, z := range starts[0] {
		for _, y := range starts[1] {
			for _, xs := range starts[2] {
				out, err := runPadded(ctx, r, x, dims, [3]int{z, y, xs}, t.Window, t.Pad)
				if err != nil {
					return nil, err
				}
				if acc == nil {
					acc = make([][]float32, len(out))
					for o := range out {
						acc[o] = make([]float32, len(out[o])/windowLen(t.Window, dims, [3]int{z, y, xs})*n)
					}
				}
				accumulate(acc, norm, out, weight, dims, t.Window, [3]int{z, y, xs})
			}
		}
	}
	for o := range acc {
		c := len(acc[o]) / n
		for ch := range c {
			plane := acc[o][ch*n : (ch+1)*n]
			for i := range plane {
				plane[i] /= norm[i]
			}
		}
	}
	return acc, nil
}

func roundUp(n, m int) int { return (n + m - 1) / m * m }

// WindowStarts places windows of size w with the given stride along an axis
// of length n; the last window ends at the axis end, so no voxel is left out
// and no window hangs over the edge unless the axis is shorter than w.
func WindowStarts(n, w, stride int) []int {
	if n <= w {
		return []int{0}
	}
	var s []int
	for p := 0; ; p += stride {
		if p+w >= n {
			s = append(s, n-w)
			return s
		}
		s = append(s, p)
	}
}

// windowLen is the number of region voxels a window at start covers.
func windowLen(win, dims, start [3]int) int {
	n := 1
	for a := range 3 {
		n *= min(win[a], dims[a]-start[a])
	}
	return n
}

// runPadded cuts size voxels at start out of x (padding beyond the region),
// runs r, and returns the outputs cropped to the part inside the region.
func runPadded(ctx context.Context, r Runner, x []float32, dims, start, size [3]int, pad float32) ([][]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	in := make([]float32, size[0]*size[1]*size[2])
	var ext [3]int
	for a := range 3 {
		ext[a] = min(size[a], dims[a]-start[a])
	}
	for i := range in {
		in[i] = pad
	}
	for z := range ext[0] {
		for y := range ext[1] {
			src := ((start[0]+z)*dims[1]+start[1]+y)*dims[2] + start[2]
			dst := (z*size[1] + y) * size[2]
			copy(in[dst:dst+ext[2]], x[src:src+ext[2]])
		}
	}
	outs, err := r.Run(in, size[0], size[1], size[2])
	if err != nil {
		return nil, err
	}
	m := size[0] * size[1] * size[2]
	e := ext[0] * ext[1] * ext[2]
	cropped := make([][]float32, len(outs))
	for o, out := range outs {
		if len(out)%m != 0 {
			return nil, fmt.Errorf("infer: output %d has %d values, not a multiple of %v", o, len(out), size)
		}
		c := len(out) / m
		cropped[o] = make([]float32, c*e)
		for ch := range c {
			for z := range ext[0] {
				for y := range ext[1] {
					src := ch*m + (z*size[1]+y)*size[2]
					dst := ch*e + (z*ext[1]+y)*ext[2]
					copy(cropped[o][dst:dst+ext[2]], out[src:src+ext[2]])
				}
			}
		}
	}
	return cropped, nil
}

// gaussianWindow is a separable Gaussian importance map over a window, with
// sigma an eighth of the window, floored so no voxel has zero weight.
func gaussianWindow(win [3]int) [3][]float32 {
	var g [3][]float32
	for a := range 3 {
		n := win[a]
		sigma := float64(n) / 8
		c := float64(n-1) / 2
		g[a] = make([]float32, n)
		for i := range n {
			d := (float64(i) - c) / sigma
			g[a][i] = float32(math.Max(math.Exp(-0.5*d*d), 1e-3))
		}
	}
	return g
}

// accumulate adds one window's cropped outputs, weighted, into acc and the
// weights into norm.
func accumulate(acc [][]float32, norm []float32, out [][]float32, g [3][]float32, dims, win, start [3]int) {
	var ext [3]int
	for a := range 3 {
		ext[a] = min(win[a], dims[a]-start[a])
	}
	n := dims[0] * dims[1] * dims[2]
	e := ext[0] * ext[1] * ext[2]
	for z := range ext[0] {
		for y := range ext[1] {
			wzy := g[0][z] * g[1][y]
			row := ((start[0]+z)*dims[1]+start[1]+y)*dims[2] + start[2]
			for x := range ext[2] {
				norm[row+x] += wzy * g[2][x]
			}
			for o := range out {
				c := len(out[o]) / e
				for ch := range c {
					src := out[o][ch*e+(z*ext[1]+y)*ext[2]:]
					dst := acc[o][ch*n+row:]
					for x := range ext[2] {
						dst[x] += wzy * g[2][x] * src[x]
					}
				}
			}
		}
	}
}
