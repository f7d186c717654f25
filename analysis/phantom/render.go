package phantom

import (
	"context"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/otonode/otonode/analysis/volume"
)

// rendered is the noise-free image of a scene on a grid.
type rendered struct {
	hu       []float32
	lab      []uint8
	tissue   [nTissue]int64 // voxel counts by centre tissue
	earVoxel [][4]int64     // labelled voxels per ear and label
}

// renderer rasterises a scene: an octree over index boxes that stops as
// soon as a box is uniform, so cost follows the area of tissue boundaries,
// not the number of voxels. Voxels on a boundary get partial volume:
// analytic for one boundary, four samples for several.
type renderer struct {
	sc     *scene
	g      volume.Grid
	hu     [nTissue]float32
	super  bool
	out    *rendered
	nears  int
	sp     [3]float64
	vox    float64 // a voxel's mean edge, for partial volume
	colmat [3]vec3 // patient step of one voxel along i, j, k
}

const tile = 16

func render(ctx context.Context, sc *scene, g volume.Grid, hu [nTissue]float32, super bool, workers int) (*rendered, error) {
	sc.prepare()
	n := g.Len()
	out := &rendered{hu: make([]float32, n), lab: make([]uint8, n), earVoxel: make([][4]int64, len(sc.ears))}
	r := &renderer{sc: sc, g: g, hu: hu, super: super, out: out, nears: len(sc.ears), sp: g.Affine.Spacing()}
	r.vox = math.Cbrt(r.sp[0] * r.sp[1] * r.sp[2])
	for c := 0; c < 3; c++ {
		r.colmat[c] = vec3{g.Affine[0][c], g.Affine[1][c], g.Affine[2][c]}
	}
	tx := (g.Size[0] + tile - 1) / tile
	ty := (g.Size[1] + tile - 1) / tile
	tz := (g.Size[2] + tile - 1) / tile
	ntile := int64(tx * ty * tz)
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	all := make([]int32, len(sc.layers))
	for i := range all {
		all[i] = int32(i)
	}
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	var cancelled atomic.Bool
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &rstate{earVoxel: make([][4]int64, r.nears)}
			for {
				t := next.Add(1) - 1
				if t >= ntile {
					break
				}
				if t%64 == 0 && ctx.Err() != nil {
					cancelled.Store(true)
					break
				}
				i0 := int(t%int64(tx)) * tile
				j0 := int((t/int64(tx))%int64(ty)) * tile
				k0 := int(t/int64(tx*ty)) * tile
				r.box(st, 0, i0, j0, k0, min(tile, g.Size[0]-i0), min(tile, g.Size[1]-j0), min(tile, g.Size[2]-k0), all, sc.bg)
			}
			mu.Lock()
			for i := range st.tissue {
				out.tissue[i] += st.tissue[i]
			}
			for e := range st.earVoxel {
				for l := range st.earVoxel[e] {
					out.earVoxel[e][l] += st.earVoxel[e][l]
				}
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if cancelled.Load() {
		return nil, ctx.Err()
	}
	return out, nil
}

type rstate struct {
	c        pt
	stack    [8][]int32
	tissue   [nTissue]int64
	earVoxel [][4]int64
}

func (r *renderer) point(fi, fj, fk float64) vec3 {
	a := &r.g.Affine
	return vec3{
		a[0][0]*fi + a[0][1]*fj + a[0][2]*fk + a[0][3],
		a[1][0]*fi + a[1][1]*fj + a[1][2]*fk + a[1][3],
		a[2][0]*fi + a[2][1]*fj + a[2][2]*fk + a[2][3],
	}
}

func (r *renderer) box(st *rstate, depth, i0, j0, k0, ni, nj, nk int, active []int32, def Tissue) {
	c := r.point(float64(i0)+float64(ni-1)/2, float64(j0)+float64(nj-1)/2, float64(k0)+float64(nk-1)/2)
	hd := 0.5 * math.Sqrt(sq(float64(ni)*r.sp[0])+sq(float64(nj)*r.sp[1])+sq(float64(nk)*r.sp[2]))
	st.c.reset(r.sc, c)
	act, t, lab, ear, d0 := r.sc.cull(&st.c, hd, active, def, st.stack[depth][:0])
	st.stack[depth] = act
	if len(act) == 0 {
		r.fill(st, i0, j0, k0, ni, nj, nk, t, lab, ear)
		return
	}
	if ni == 1 && nj == 1 && nk == 1 {
		r.voxel(st, i0, j0, k0, act, t, d0)
		return
	}
	hi, hj, hk := (ni+1)/2, (nj+1)/2, (nk+1)/2
	for _, z := range [2][2]int{{k0, hk}, {k0 + hk, nk - hk}} {
		if z[1] == 0 {
			continue
		}
		for _, y := range [2][2]int{{j0, hj}, {j0 + hj, nj - hj}} {
			if y[1] == 0 {
				continue
			}
			for _, x := range [2][2]int{{i0, hi}, {i0 + hi, ni - hi}} {
				if x[1] == 0 {
					continue
				}
				r.box(st, depth+1, x[0], y[0], z[0], x[1], y[1], z[1], act, t)
			}
		}
	}
}

func (r *renderer) fill(st *rstate, i0, j0, k0, ni, nj, nk int, t Tissue, lab uint8, ear int) {
	v := r.hu[t]
	nx, ny := r.g.Size[0], r.g.Size[1]
	for k := k0; k < k0+nk; k++ {
		for j := j0; j < j0+nj; j++ {
			o := i0 + nx*(j+ny*k)
			h := r.out.hu[o : o+ni]
			for i := range h {
				h[i] = v
			}
			if lab != 0 {
				l := r.out.lab[o : o+ni]
				for i := range l {
					l[i] = lab
				}
			}
		}
	}
	cnt := int64(ni * nj * nk)
	st.tissue[t] += cnt
	if lab != 0 && ear >= 0 {
		st.earVoxel[ear][lab&3] += cnt
	}
}

// subOff are four sub-voxel sample points (a tetrahedral pattern, which
// spans all three axes with half the samples of a 2×2×2 grid).
var subOff = [4][3]float64{{0.25, 0.25, 0.25}, {0.25, -0.25, -0.25}, {-0.25, 0.25, -0.25}, {-0.25, -0.25, 0.25}}

// voxel sets one voxel whose region still straddles a boundary. With one
// boundary the covered fraction follows from the signed distance d0 at the
// centre (a box filter across a locally flat surface); with several it is
// sampled at four points.
func (r *renderer) voxel(st *rstate, i, j, k int, act []int32, def Tissue, d0 float64) {
	o := r.g.Index(i, j, k)
	if len(act) == 1 {
		l := &r.sc.layers[act[0]]
		// st.c still holds the voxel centre from cull.
		t, lab := def, uint8(0)
		var dl uint8
		if l.fluid != nil {
			_, dl = st.c.lab(l.ear)
		}
		if d0 < 0 {
			t, lab = l.t, dl
		}
		st.tissue[t]++
		if lab != 0 {
			st.earVoxel[l.ear][lab&3]++
			r.out.lab[o] = lab
		}
		if !r.super {
			r.out.hu[o] = r.hu[t]
			return
		}
		f := float32(clamp(0.5-d0/r.vox, 0, 1))
		r.out.hu[o] = f*r.hu[l.t] + (1-f)*r.hu[def]
		return
	}
	t, lab, ear := r.sc.classify(&st.c, act, def)
	st.tissue[t]++
	if lab != 0 && ear >= 0 {
		st.earVoxel[ear][lab&3]++
		r.out.lab[o] = lab
	}
	if !r.super {
		r.out.hu[o] = r.hu[t]
		return
	}
	var sum float32
	for _, d := range subOff {
		st.c.reset(r.sc, r.point(float64(i)+d[0], float64(j)+d[1], float64(k)+d[2]))
		ts, _, _ := r.sc.classify(&st.c, act, def)
		sum += r.hu[ts]
	}
	r.out.hu[o] = sum / float32(len(subOff))
}
