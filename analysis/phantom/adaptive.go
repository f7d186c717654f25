package phantom

import (
	"context"
	"math"

	"github.com/otonode/otonode/analysis/volume"
)

// fineLimit is the grid size above which only the region around the
// labyrinth(s) is rendered at full resolution; the far field is rendered
// at half resolution and interpolated, as its detail is coarser anyway.
const fineLimit = 24 << 20

// nearMargin is how far (mm) around the labyrinth the full-resolution box
// reaches: the capsule, the windows and the ossicles lie within it.
const nearMargin = 6.0

// renderAdaptive renders g, at full resolution inside near (index boxes)
// and at half resolution elsewhere when g is large. Tissue counts then
// cover only the near boxes; coarse reports that.
func renderAdaptive(ctx context.Context, sc *scene, g volume.Grid, hu [nTissue]float32, super bool, workers int, near []volume.Box) (r *rendered, coarse bool, err error) {
	if len(near) == 0 || g.Len() < fineLimit {
		r, err = render(ctx, sc, g, hu, super, workers)
		return r, false, err
	}
	r, err = renderHalf(ctx, sc, g, hu, super, workers, near)
	return r, err == nil, err
}

// renderHalf renders near at full resolution and the rest at half.
func renderHalf(ctx context.Context, sc *scene, g volume.Grid, hu [nTissue]float32, super bool, workers int, near []volume.Box) (*rendered, error) {
	a := g.Affine
	var cs [3]int
	for c := 0; c < 3; c++ {
		cs[c] = (g.Size[c] + 1) / 2
	}
	ca := a
	for rr := 0; rr < 3; rr++ {
		for c := 0; c < 3; c++ {
			ca[rr][c] = 2 * a[rr][c]
		}
	}
	o := a.Apply([3]float64{0.5, 0.5, 0.5})
	for rr := 0; rr < 3; rr++ {
		ca[rr][3] = o[rr]
	}
	cg := volume.Grid{Size: cs, Affine: ca}
	rc, err := render(ctx, sc, cg, hu, super, workers)
	if err != nil {
		return nil, err
	}
	out := &rendered{hu: make([]float32, g.Len()), lab: make([]uint8, g.Len()), earVoxel: make([][4]int64, len(sc.ears))}
	nx, ny, nz := g.Size[0], g.Size[1], g.Size[2]
	// Trilinear interpolation: fine index i sits at coarse (i−0.5)/2.
	type w struct {
		i0, i1 int
		f      float32
	}
	axis := func(n, cn int) []w {
		ws := make([]w, n)
		for i := range ws {
			x := math.Max((float64(i)-0.5)/2, 0)
			i0 := min(int(x), cn-1)
			ws[i] = w{i0, min(i0+1, cn-1), float32(x - float64(i0))}
		}
		return ws
	}
	wx, wy, wz := axis(nx, cs[0]), axis(ny, cs[1]), axis(nz, cs[2])
	parallel(nz, workers, func(k int) {
		z := wz[k]
		for j := 0; j < ny; j++ {
			y := wy[j]
			r00 := rc.hu[cs[0]*(y.i0+cs[1]*z.i0):]
			r10 := rc.hu[cs[0]*(y.i1+cs[1]*z.i0):]
			r01 := rc.hu[cs[0]*(y.i0+cs[1]*z.i1):]
			r11 := rc.hu[cs[0]*(y.i1+cs[1]*z.i1):]
			dst := out.hu[nx*(j+ny*k) : nx*(j+ny*k)+nx]
			for i := range dst {
				x := wx[i]
				a0 := r00[x.i0] + (r00[x.i1]-r00[x.i0])*x.f
				a1 := r10[x.i0] + (r10[x.i1]-r10[x.i0])*x.f
				b0 := r01[x.i0] + (r01[x.i1]-r01[x.i0])*x.f
				b1 := r11[x.i0] + (r11[x.i1]-r11[x.i0])*x.f
				c0 := a0 + (a1-a0)*y.f
				c1 := b0 + (b1-b0)*y.f
				dst[i] = c0 + (c1-c0)*z.f
			}
		}
	})
	for _, b := range near {
		sz := b.Size()
		sub := volume.Grid{Size: sz, Affine: a}
		org := a.Apply([3]float64{float64(b.Min[0]), float64(b.Min[1]), float64(b.Min[2])})
		for rr := 0; rr < 3; rr++ {
			sub.Affine[rr][3] = org[rr]
		}
		rn, err := render(ctx, sc, sub, hu, super, workers)
		if err != nil {
			return nil, err
		}
		for k := 0; k < sz[2]; k++ {
			for j := 0; j < sz[1]; j++ {
				so := sz[0] * (j + sz[1]*k)
				do := g.Index(b.Min[0], b.Min[1]+j, b.Min[2]+k)
				copy(out.hu[do:do+sz[0]], rn.hu[so:so+sz[0]])
				copy(out.lab[do:do+sz[0]], rn.lab[so:so+sz[0]])
			}
		}
		for t := range rn.tissue {
			out.tissue[t] += rn.tissue[t]
		}
		for e := range rn.earVoxel {
			for l := range rn.earVoxel[e] {
				out.earVoxel[e][l] += rn.earVoxel[e][l]
			}
		}
	}
	return out, nil
}

// nearBox is the index box around a labyrinth (ear frame → patient via
// toPatient), grown by nearMargin and clipped to the grid; ok is false
// when it misses the grid.
func nearBox(L *labyrinth, toPatient func(vec3) vec3, g volume.Grid) (volume.Box, bool) {
	inv, err := g.Affine.Inverse()
	if err != nil {
		return volume.Box{}, false
	}
	lo := [3]float64{math.Inf(1), math.Inf(1), math.Inf(1)}
	hi := [3]float64{math.Inf(-1), math.Inf(-1), math.Inf(-1)}
	back := L.rot.t()
	grow := func(p vec3) {
		x := inv.Apply(toPatient(back.mul(p)))
		for c := 0; c < 3; c++ {
			lo[c] = math.Min(lo[c], x[c])
			hi[c] = math.Max(hi[c], x[c])
		}
	}
	for _, t := range L.tubes {
		grow(t.a)
		grow(t.b)
	}
	for _, b := range L.blobs {
		grow(b.c)
	}
	sp := g.Affine.Spacing()
	var b volume.Box
	for c := 0; c < 3; c++ {
		m := (nearMargin + L.P.CapsuleMM) / sp[c]
		b.Min[c] = max(0, int(math.Floor(lo[c]-m)))
		b.Max[c] = min(g.Size[c], int(math.Ceil(hi[c]+m))+1)
		if b.Min[c] >= b.Max[c] {
			return b, false
		}
	}
	return b, true
}
