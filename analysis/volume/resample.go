package volume

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// Box is a half-open box of voxel indices: Min ≤ (i, j, k) < Max.
type Box struct{ Min, Max [3]int }

// Size is the number of voxels along each axis (0 when empty).
func (b Box) Size() [3]int {
	var s [3]int
	for c := 0; c < 3; c++ {
		s[c] = max(0, b.Max[c]-b.Min[c])
	}
	return s
}

// Empty reports whether the box holds no voxel.
func (b Box) Empty() bool {
	s := b.Size()
	return s[0] == 0 || s[1] == 0 || s[2] == 0
}

// Intersect returns the voxels in both boxes.
func (b Box) Intersect(o Box) Box {
	for c := 0; c < 3; c++ {
		b.Min[c] = max(b.Min[c], o.Min[c])
		b.Max[c] = min(b.Max[c], o.Max[c])
	}
	return b
}

// Bounds is the box of the whole grid.
func (g Grid) Bounds() Box { return Box{Max: g.Size} }

// Sub returns the grid of the voxels of g inside b (clipped to g), placed
// where they are in g. Resampling straight from a volume onto
// IsotropicGrid(g.Sub(box), s) needs no cropped copy.
func (g Grid) Sub(b Box) Grid {
	b = b.Intersect(g.Bounds())
	return Grid{Size: b.Size(), Affine: g.Affine.Shift(b.Min)}
}

// Shift returns the affine of the same space with index origin moved to
// voxel d: the new (0,0,0) is the old d.
func (a Affine) Shift(d [3]int) Affine {
	o := a.Apply([3]float64{float64(d[0]), float64(d[1]), float64(d[2])})
	a[0][3], a[1][3], a[2][3] = o[0], o[1], o[2]
	return a
}

// Crop copies the voxels of v inside b (clipped to the grid) into a new
// volume whose affine keeps every voxel at its patient position.
func Crop[T Scalar](v *Volume[T], b Box) (*Volume[T], error) {
	b = b.Intersect(v.Bounds())
	if b.Empty() {
		return nil, fmt.Errorf("volume: crop box %v misses the grid %v", b, v.Size)
	}
	out := New[T](v.Sub(b))
	n := out.Size[0]
	for k := 0; k < out.Size[2]; k++ {
		for j := 0; j < out.Size[1]; j++ {
			src := v.Index(b.Min[0], b.Min[1]+j, b.Min[2]+k)
			copy(out.Data[out.Index(0, j, k):][:n], v.Data[src:src+n])
		}
	}
	return out, nil
}

// IsotropicGrid returns a grid with cubic voxels of size s that covers the
// physical box of g: its axes follow g's i and j directions and their
// normal (so a gantry-tilted, sheared grid becomes an orthogonal one whose
// extent along the normal equals g's), and its voxels are centred in the
// box. It is the target grid of the resampling to the model's voxel size.
func IsotropicGrid(g Grid, s float64) Grid {
	d0, d1 := g.Affine.Direction(0), g.Affine.Direction(1)
	d1 = rsSub(d1, rsScale(d0, rsDot(d0, d1)))
	d1 = rsScale(d1, 1/math.Sqrt(rsDot(d1, d1)))
	d2 := rsCross(d0, d1)
	c2 := [3]float64{g.Affine[0][2], g.Affine[1][2], g.Affine[2][2]}
	if rsDot(d2, c2) < 0 {
		d2 = rsScale(d2, -1)
	}
	sp := g.Affine.Spacing()
	ext := [3]float64{
		float64(g.Size[0]) * sp[0],
		float64(g.Size[1]) * math.Abs(rsDot(d1, [3]float64{g.Affine[0][1], g.Affine[1][1], g.Affine[2][1]})),
		float64(g.Size[2]) * math.Abs(rsDot(d2, c2)),
	}
	var out Grid
	dirs := [3][3]float64{d0, d1, d2}
	// Corner of the box: half a source voxel before voxel (0,0,0).
	corner := g.Affine.Apply([3]float64{-0.5, -0.5, -0.5})
	// Along the normal a sheared grid's corner lies on the first slice's
	// plane, which Apply(-0.5) already gives; across, the shear is dropped.
	for c := 0; c < 3; c++ {
		out.Size[c] = max(1, int(math.Round(ext[c]/s)))
		for r := 0; r < 3; r++ {
			out.Affine[r][c] = dirs[c][r] * s
		}
	}
	// Centre the new voxels in the box.
	for r := 0; r < 3; r++ {
		o := corner[r]
		for c := 0; c < 3; c++ {
			slack := ext[c] - float64(out.Size[c])*s
			o += dirs[c][r] * (slack/2 + s/2)
		}
		out.Affine[r][3] = o
	}
	return out
}

// mapping gives, for destination voxel (0, j, k), the source index-space
// position and its step along i.
type mapping struct {
	m Affine // dst index → src index
}

func newMapping(src, dst Affine) (mapping, error) {
	inv, err := src.Inverse()
	if err != nil {
		return mapping{}, err
	}
	var m Affine
	for r := 0; r < 3; r++ {
		for c := 0; c < 4; c++ {
			for q := 0; q < 3; q++ {
				m[r][c] += inv[r][q] * dst[q][c]
			}
		}
		m[r][3] += inv[r][3]
	}
	return mapping{m}, nil
}

// parallelSlices runs f(k) for k in [0, n) on GOMAXPROCS goroutines.
func parallelSlices(n int, f func(k int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	var wg sync.WaitGroup
	next := make(chan int, n)
	for k := 0; k < n; k++ {
		next <- k
	}
	close(next)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				f(k)
			}
		}()
	}
	wg.Wait()
}

// ResampleLinear samples src at the voxel centres of grid g by trilinear
// interpolation. Points more than half a voxel outside src get fill;
// within that half voxel the edge value is used.
func ResampleLinear[T Scalar](src *Volume[T], g Grid, fill float32) (*Volume[float32], error) {
	mp, err := newMapping(src.Affine, g.Affine)
	if err != nil {
		return nil, err
	}
	out := New[float32](g)
	nx, ny, nz := src.Size[0], src.Size[1], src.Size[2]
	sx, sxy := 1, nx
	sxyz := nx * ny
	parallelSlices(g.Size[2], func(k int) {
		for j := 0; j < g.Size[1]; j++ {
			p := mp.m.Apply([3]float64{0, float64(j), float64(k)})
			row := out.Data[g.Index(0, j, k):][:g.Size[0]]
			for i := range row {
				x, y, z := p[0], p[1], p[2]
				p[0] += mp.m[0][0]
				p[1] += mp.m[1][0]
				p[2] += mp.m[2][0]
				if x < -0.5 || y < -0.5 || z < -0.5 || x > float64(nx)-0.5 || y > float64(ny)-0.5 || z > float64(nz)-0.5 {
					row[i] = fill
					continue
				}
				x = min(max(x, 0), float64(nx-1))
				y = min(max(y, 0), float64(ny-1))
				z = min(max(z, 0), float64(nz-1))
				x0, y0, z0 := int(x), int(y), int(z)
				fx, fy, fz := x-float64(x0), y-float64(y0), z-float64(z0)
				dx, dy, dz := sx, sxy, sxyz
				if x0 == nx-1 {
					dx = 0
				}
				if y0 == ny-1 {
					dy = 0
				}
				if z0 == nz-1 {
					dz = 0
				}
				b := x0 + nx*(y0+ny*z0)
				d := src.Data
				c00 := float64(d[b])*(1-fx) + float64(d[b+dx])*fx
				c10 := float64(d[b+dy])*(1-fx) + float64(d[b+dy+dx])*fx
				c01 := float64(d[b+dz])*(1-fx) + float64(d[b+dz+dx])*fx
				c11 := float64(d[b+dz+dy])*(1-fx) + float64(d[b+dz+dy+dx])*fx
				c0 := c00*(1-fy) + c10*fy
				c1 := c01*(1-fy) + c11*fy
				row[i] = float32(c0*(1-fz) + c1*fz)
			}
		}
	})
	return out, nil
}

// ResampleNearest samples src at the voxel centres of grid g taking the
// nearest voxel (for label maps); points outside src get fill.
func ResampleNearest[T Scalar](src *Volume[T], g Grid, fill T) (*Volume[T], error) {
	mp, err := newMapping(src.Affine, g.Affine)
	if err != nil {
		return nil, err
	}
	out := New[T](g)
	nx, ny, nz := src.Size[0], src.Size[1], src.Size[2]
	parallelSlices(g.Size[2], func(k int) {
		for j := 0; j < g.Size[1]; j++ {
			p := mp.m.Apply([3]float64{0, float64(j), float64(k)})
			row := out.Data[g.Index(0, j, k):][:g.Size[0]]
			for i := range row {
				// Round half up, the same way on every axis, so that
				// resampling is deterministic on ties.
				x, y, z := int(math.Floor(p[0]+0.5)), int(math.Floor(p[1]+0.5)), int(math.Floor(p[2]+0.5))
				p[0] += mp.m[0][0]
				p[1] += mp.m[1][0]
				p[2] += mp.m[2][0]
				if x < 0 || y < 0 || z < 0 || x >= nx || y >= ny || z >= nz {
					row[i] = fill
					continue
				}
				row[i] = src.Data[x+nx*(y+ny*z)]
			}
		}
	})
	return out, nil
}

func rsDot(a, b [3]float64) float64 { return a[0]*b[0] + a[1]*b[1] + a[2]*b[2] }
func rsScale(a [3]float64, s float64) [3]float64 {
	return [3]float64{a[0] * s, a[1] * s, a[2] * s}
}
func rsSub(a, b [3]float64) [3]float64 { return [3]float64{a[0] - b[0], a[1] - b[1], a[2] - b[2]} }
func rsCross(a, b [3]float64) [3]float64 {
	return [3]float64{a[1]*b[2] - a[2]*b[1], a[2]*b[0] - a[0]*b[2], a[0]*b[1] - a[1]*b[0]}
}

// BoxIn returns the box of parent that g covers when g is a sub-grid of
// parent (as parent.Sub(box) makes it): the same axes and spacings, its
// voxel (0,0,0) on a voxel centre of parent, and every voxel inside parent.
// It reports false otherwise. A label kept only on the box it covers is
// placed back on its source grid this way.
func (g Grid) BoxIn(parent Grid) (Box, bool) {
	for r := range 3 {
		for c := range 3 {
			if math.Abs(g.Affine[r][c]-parent.Affine[r][c]) > 1e-6*math.Max(1, math.Abs(parent.Affine[r][c])) {
				return Box{}, false
			}
		}
	}
	inv, err := parent.Affine.Inverse()
	if err != nil {
		return Box{}, false
	}
	o := inv.Apply(g.Affine.Origin())
	var b Box
	for ax := range 3 {
		d := math.Round(o[ax])
		if math.Abs(o[ax]-d) > 1e-3 {
			return Box{}, false
		}
		b.Min[ax] = int(d)
		b.Max[ax] = b.Min[ax] + g.Size[ax]
		if b.Min[ax] < 0 || b.Max[ax] > parent.Size[ax] {
			return Box{}, false
		}
	}
	return b, true
}

// Paste copies src into dst where src lies on dst's grid (see BoxIn).
func Paste[T Scalar](dst, src *Volume[T]) error {
	b, ok := src.BoxIn(dst.Grid)
	if !ok {
		return fmt.Errorf("volume: grid %v is not a sub-grid of %v", src.Size, dst.Size)
	}
	n := src.Size[0]
	for k := 0; k < src.Size[2]; k++ {
		for j := 0; j < src.Size[1]; j++ {
			copy(dst.Data[dst.Index(b.Min[0], b.Min[1]+j, b.Min[2]+k):][:n], src.Data[src.Index(0, j, k):][:n])
		}
	}
	return nil
}
