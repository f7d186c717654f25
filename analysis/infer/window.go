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
	// Grow lets PredictBox's windows grow, per axis, up to this size (a
	// multiple of Multiple) where fewer, larger windows cover the box with
	// fewer voxels: a box of 143 voxels takes two windows of 80 instead of
	// three of 64. Zero: Window.
	Grow [3]int
}

// windowFor is the window length along one axis for a span of l voxels:
// among the multiples of m from w up to grow, the one whose windows (as
// EvenStarts places them) see the fewest voxels, the shortest on a tie.
func windowFor(l, w, grow, overlap, m int) int {
	best, cost := w, math.MaxInt
	for c := w; c <= max(grow, w); c += m {
		n := 1
		if l > c {
			n = max((l-overlap+(c-overlap)-1)/(c-overlap), 2)
		}
		if n*c < cost {
			best, cost = c, n*c
		}
	}
	return best
}

// Predict runs r over the region x of size dims (d, h, w; w fastest) and
// returns each output at the region's size. Overlapping windows are blended
// with Gaussian weights centred on each window, so voxels near a window's
// border, where the network sees less context, count less.
func Predict(ctx context.Context, r Runner, x []float32, dims [3]int, t Tiling) ([][]float32, error) {
	return PredictBox(ctx, r, x, dims, Box{Max: dims}, t, nil)
}

// Box is a part of a region: indices [Min[a], Max[a]) along each axis a
// (d, h, w).
type Box struct{ Min, Max [3]int }

// Size is the extent of b along each axis.
func (b Box) Size() [3]int {
	return [3]int{b.Max[0] - b.Min[0], b.Max[1] - b.Min[1], b.Max[2] - b.Min[2]}
}

// Len is the number of voxels in b.
func (b Box) Len() int { s := b.Size(); return s[0] * s[1] * s[2] }

// PredictBox runs r over the windows that cover box, a part of the region x
// of size dims, and returns each output at the box's size. Windows read
// their input from the whole region, so the network sees the image beyond
// the box's faces as context rather than padding; only the region's own
// edge is padded. Windows are spread evenly over the box (Tiling.Overlap is
// the least overlap) and blended as in Predict. keep, when not nil, says
// which outputs to return (nil for the others): outputs not wanted cost no
// memory.
func PredictBox(ctx context.Context, r Runner, x []float32, dims [3]int, box Box, t Tiling, keep []bool) ([][]float32, error) {
	if len(x) != dims[0]*dims[1]*dims[2] {
		return nil, fmt.Errorf("infer: region has %d values, want %v", len(x), dims)
	}
	for a := range 3 {
		if box.Min[a] < 0 || box.Max[a] > dims[a] || box.Min[a] >= box.Max[a] {
			return nil, fmt.Errorf("infer: box %v outside the region %v", box, dims)
		}
	}
	if t.Multiple < 1 {
		t.Multiple = 1
	}
	single := t.Single
	if single == ([3]int{}) {
		single = t.Window
	}
	// A box that fits Single runs as one input (the box rounded up to the
	// multiple, with what lies beyond it as context); with no Single set,
	// only the whole region does, and a smaller box runs as windows of the
	// usual size around it, with context, so that the network sees what it
	// was trained on.
	bs := box.Size()
	fits := t.Single != ([3]int{}) || bs == dims
	for a := range 3 {
		if roundUp(bs[a], t.Multiple) > roundUp(single[a], t.Multiple) {
			fits = false
		}
	}
	var (
		starts [3][]int
		win    [3]int
		weight [3][]float32
	)
	if fits {
		for a := range 3 {
			win[a] = roundUp(bs[a], t.Multiple)
			starts[a] = []int{box.Min[a]}
			weight[a] = make([]float32, win[a])
			for i := range weight[a] {
				weight[a][i] = 1
			}
		}
	} else {
		for a := range 3 {
			if t.Window[a] <= 0 || t.Window[a]%t.Multiple != 0 || t.Overlap >= t.Window[a] || t.Overlap < 0 {
				return nil, fmt.Errorf("infer: bad tiling: window %v, overlap %d, multiple %d", t.Window, t.Overlap, t.Multiple)
			}
			win[a] = windowFor(bs[a], t.Window[a], t.Grow[a], t.Overlap, t.Multiple)
			starts[a] = EvenStarts(box.Min[a], box.Max[a], dims[a], win[a], t.Overlap)
		}
		weight = gaussianWindow(win)
	}
	n := box.Len()
	var acc [][]float32
	norm := make([]float32, n)
	for _, z := range starts[0] {
		for _, y := range starts[1] {
			for _, xs := range starts[2] {
				s := [3]int{z, y, xs}
				out, err := runPadded(ctx, r, x, dims, s, win, t.Pad)
				if err != nil {
					return nil, err
				}
				e := windowLen(win, dims, s)
				if acc == nil {
					acc = make([][]float32, len(out))
					for o := range out {
						if keep == nil || (o < len(keep) && keep[o]) {
							acc[o] = make([]float32, len(out[o])/e*n)
						}
					}
				}
				accumulate(acc, norm, out, weight, dims, win, s, box)
			}
		}
	}
	normalise(acc, norm, nil)
	return acc, nil
}

// normalise divides each channel of the blended outputs acc (nil ones
// skipped) by the summed weights norm; where no window counted (norm 0),
// output o becomes fill[o] (fill nil: every voxel had a window).
func normalise(acc [][]float32, norm, fill []float32) {
	n := len(norm)
	for o := range acc {
		for ch := range len(acc[o]) / n {
			plane := acc[o][ch*n : (ch+1)*n]
			for i := range plane {
				if norm[i] > 0 {
					plane[i] /= norm[i]
				} else if fill != nil {
					plane[i] = fill[o]
				}
			}
		}
	}
}

// EvenStarts places windows of size w to cover [lo, hi) of an axis of
// length n: as few as keep at least overlap voxels between neighbours,
// spread evenly so that the overlaps are equal (to a voxel) instead of the
// last window taking all the slack. A span shorter than w gets one window
// centred on it, shifted to stay inside the axis (and at 0 when the axis is
// shorter than w).
func EvenStarts(lo, hi, n, w, overlap int) []int {
	l := hi - lo
	if l <= w {
		return []int{max(min(lo-(w-l)/2, n-w), 0)}
	}
	c := (l - overlap + (w - overlap) - 1) / (w - overlap)
	c = max(c, 2)
	s := make([]int, c)
	for i := range c {
		s[i] = lo + int(math.Round(float64(i*(l-w))/float64(c-1)))
	}
	return s
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

// accumulate adds the part inside box of one window's cropped outputs,
// weighted, into acc (box-sized; nil outputs are skipped) and the weights
// into norm.
func accumulate(acc [][]float32, norm []float32, out [][]float32, g [3][]float32, dims, win, start [3]int, box Box) {
	var ext, lo, hi [3]int
	for a := range 3 {
		ext[a] = min(win[a], dims[a]-start[a])
		lo[a] = max(box.Min[a]-start[a], 0)
		hi[a] = min(box.Max[a]-start[a], ext[a])
		if lo[a] >= hi[a] {
			return
		}
	}
	bs := box.Size()
	n := bs[0] * bs[1] * bs[2]
	e := ext[0] * ext[1] * ext[2]
	for z := lo[0]; z < hi[0]; z++ {
		for y := lo[1]; y < hi[1]; y++ {
			wzy := g[0][z] * g[1][y]
			row := ((start[0]+z-box.Min[0])*bs[1]+start[1]+y-box.Min[1])*bs[2] + start[2] - box.Min[2]
			for x := lo[2]; x < hi[2]; x++ {
				norm[row+x] += wzy * g[2][x]
			}
			for o := range out {
				if acc[o] == nil {
					continue
				}
				c := len(out[o]) / e
				for ch := range c {
					src := out[o][ch*e+(z*ext[1]+y)*ext[2]:]
					dst := acc[o][ch*n : (ch+1)*n]
					for x := lo[2]; x < hi[2]; x++ {
						dst[row+x] += wzy * g[2][x] * src[x]
					}
				}
			}
		}
	}
}

// Directions is a set of a window's 26 neighbours, by direction d (each
// axis −1, 0 or +1; d, h, w order): index (d0+1)*9 + (d1+1)*3 + d2+1.
type Directions [27]bool

// Has tells whether d is in the set.
func (s *Directions) Has(d [3]int) bool { return s[(d[0]+1)*9+(d[1]+1)*3+d[2]+1] }

// Reach tells, from one window's output channel (window-sized ext, d, h, w
// order), which neighbouring windows the structure continues into.
type Reach func(out []float32, ext [3]int) Directions

// ReachAbove is the Reach of a structure made of the voxels at or above
// thr: a neighbour is reached when such a voxel lies on the face, edge or
// corner the window shares with it. A structure that crosses into a
// diagonal neighbour through a face neighbour is followed there from that
// neighbour, so a diagonal neighbour is queued only for a structure on
// the shared edge or corner itself — not whenever two faces are reached
// somewhere, which ran windows the structure never entered.
func ReachAbove(thr float32) Reach {
	return func(out []float32, e [3]int) Directions {
		var s Directions
		mark := func(p [3]int) {
			var b [3]int
			for a := range 3 {
				switch {
				case p[a] == 0:
					b[a] = -1
				case p[a] == e[a]-1:
					b[a] = 1
				}
			}
			// Every direction whose non-zero components are those of b.
			for dz := min(b[0], 0); dz <= max(b[0], 0); dz++ {
				for dy := min(b[1], 0); dy <= max(b[1], 0); dy++ {
					for dx := min(b[2], 0); dx <= max(b[2], 0); dx++ {
						s[(dz+1)*9+(dy+1)*3+dx+1] = true
					}
				}
			}
		}
		for z := range e[0] {
			for y := range e[1] {
				row := out[(z*e[1]+y)*e[2]:][:e[2]]
				if z == 0 || z == e[0]-1 || y == 0 || y == e[1]-1 {
					for x, v := range row {
						if v >= thr {
							mark([3]int{z, y, x})
						}
					}
					continue
				}
				// An inner row touches the boundary at its ends only.
				if row[0] >= thr {
					mark([3]int{z, y, 0})
				}
				if last := e[2] - 1; row[last] >= thr {
					mark([3]int{z, y, last})
				}
			}
		}
		s[13] = false // the window itself
		return s
	}
}

// PredictFrom follows a structure through the region instead of running
// every window: it runs the window of the evenly spread tiling (as
// Predict's) nearest seed (d, h, w), then the neighbours of each window run
// that its output reaches (reach, on channel output; see ReachAbove), and so
// on. It returns that channel blended over the windows run, fill where none
// ran, and the number of windows run. keep, when not nil, is given every
// window run with all its outputs, so that a caller can blend them again
// over a part of the region (see Blend) instead of running them twice.
func PredictFrom(ctx context.Context, r Runner, x []float32, dims [3]int, t Tiling, seed [3]int, output int, reach Reach, fill float32, keep func(Window)) ([]float32, int, error) {
	if len(x) != dims[0]*dims[1]*dims[2] {
		return nil, 0, fmt.Errorf("infer: region has %d values, want %v", len(x), dims)
	}
	if t.Multiple < 1 {
		t.Multiple = 1
	}
	var starts [3][]int
	var first [3]int
	for a := range 3 {
		if t.Window[a] <= 0 || t.Window[a]%t.Multiple != 0 || t.Overlap >= t.Window[a] || t.Overlap < 0 {
			return nil, 0, fmt.Errorf("infer: bad tiling: window %v, overlap %d, multiple %d", t.Window, t.Overlap, t.Multiple)
		}
		starts[a] = EvenStarts(0, dims[a], dims[a], t.Window[a], t.Overlap)
		best := math.MaxInt
		for i, s := range starts[a] {
			if d := abs(s + t.Window[a]/2 - seed[a]); d < best {
				best, first[a] = d, i
			}
		}
	}
	weight := gaussianWindow(t.Window)
	n := dims[0] * dims[1] * dims[2]
	acc := make([][]float32, output+1)
	acc[output] = make([]float32, n)
	norm := make([]float32, n)
	seen := map[[3]int]bool{first: true}
	queue := [][3]int{first}
	for len(queue) > 0 {
		w := queue[0]
		queue = queue[1:]
		s := [3]int{starts[0][w[0]], starts[1][w[1]], starts[2][w[2]]}
		out, err := runPadded(ctx, r, x, dims, s, t.Window, t.Pad)
		if err != nil {
			return nil, 0, err
		}
		if len(out) <= output {
			return nil, 0, fmt.Errorf("infer: %d outputs, want output %d", len(out), output)
		}
		var ext [3]int
		for a := range 3 {
			ext[a] = min(t.Window[a], dims[a]-s[a])
		}
		accumulate(acc, norm, out[:output+1], weight, dims, t.Window, s, Box{Max: dims})
		if keep != nil {
			keep(Window{Start: s, Size: t.Window, Out: out})
		}
		reached := reach(out[output][:ext[0]*ext[1]*ext[2]], ext)
		for dz := -1; dz <= 1; dz++ {
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					d := [3]int{dz, dy, dx}
					nb := [3]int{w[0] + dz, w[1] + dy, w[2] + dx}
					ok := d != [3]int{} && reached.Has(d)
					for a := range 3 {
						ok = ok && nb[a] >= 0 && nb[a] < len(starts[a])
					}
					if ok && !seen[nb] {
						seen[nb] = true
						queue = append(queue, nb)
					}
				}
			}
		}
	}
	fills := make([]float32, output+1)
	fills[output] = fill
	normalise(acc, norm, fills)
	return acc[output], len(seen), nil
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// Window is one network input that ran: where it starts in the region and
// its extent (d, h, w), and its outputs cropped to the region, [C, d, h, w]
// each.
type Window struct {
	Start, Size [3]int
	Out         [][]float32
}

// Box is the part of a region of size dims the window covers.
func (w Window) Box(dims [3]int) Box {
	var b Box
	for a := range 3 {
		b.Min[a], b.Max[a] = w.Start[a], min(w.Start[a]+w.Size[a], dims[a])
	}
	return b
}

// Overlaps tells whether boxes b and o share a voxel.
func (b Box) Overlaps(o Box) bool {
	for a := range 3 {
		if b.Max[a] <= o.Min[a] || o.Max[a] <= b.Min[a] {
			return false
		}
	}
	return true
}

// Blend blends the outputs of windows of a region of size dims over box
// with the Gaussian weights PredictBox uses and returns each output at the
// box's size; output o is fill[o] where no window covers a voxel.
func Blend(windows []Window, dims [3]int, box Box, fill []float32) ([][]float32, error) {
	if len(windows) == 0 {
		return nil, fmt.Errorf("infer: no windows to blend")
	}
	n := box.Len()
	outs := len(windows[0].Out)
	if len(fill) != outs {
		return nil, fmt.Errorf("infer: %d fill values for %d outputs", len(fill), outs)
	}
	acc := make([][]float32, outs)
	norm := make([]float32, n)
	weights := map[[3]int][3][]float32{}
	for _, w := range windows {
		if len(w.Out) != outs {
			return nil, fmt.Errorf("infer: windows with %d and %d outputs", outs, len(w.Out))
		}
		e := windowLen(w.Size, dims, w.Start)
		for o := range acc {
			if acc[o] == nil {
				acc[o] = make([]float32, len(w.Out[o])/e*n)
			}
		}
		g, ok := weights[w.Size]
		if !ok {
			g = gaussianWindow(w.Size)
			weights[w.Size] = g
		}
		accumulate(acc, norm, w.Out, g, dims, w.Size, w.Start, box)
	}
	normalise(acc, norm, fill)
	return acc, nil
}
