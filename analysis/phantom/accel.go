package phantom

import "math"

// accel answers "distance to the nearest tube" quickly: a uniform grid
// whose cells list only the tubes that can be nearest anywhere in the cell.
// Cells farther than reach from every tube keep no list, just a lower bound.
type accel struct {
	tubes []tube
	lo    vec3
	h     float64
	n     [3]int
	start []int32
	idx   []int32
	lb    []float32

	scratch []float64 // used while building only
}

const accelCell = 0.6 // mm

func newAccel(tubes []tube) *accel {
	g := &accel{tubes: tubes, h: accelCell}
	lo := vec3{math.Inf(1), math.Inf(1), math.Inf(1)}
	hi := vec3{math.Inf(-1), math.Inf(-1), math.Inf(-1)}
	for _, t := range tubes {
		r := math.Max(t.ra, t.rb)
		for c := 0; c < 3; c++ {
			lo[c] = math.Min(lo[c], math.Min(t.a[c], t.b[c])-r)
			hi[c] = math.Max(hi[c], math.Max(t.a[c], t.b[c])+r)
		}
	}
	for c := 0; c < 3; c++ {
		lo[c] -= reach + g.h
		hi[c] += reach + g.h
		g.n[c] = int(math.Ceil((hi[c] - lo[c]) / g.h))
	}
	g.lo = lo
	ncell := g.n[0] * g.n[1] * g.n[2]
	g.start = make([]int32, ncell+1)
	g.lb = make([]float32, ncell)
	all := make([]int32, len(tubes))
	for i := range all {
		all[i] = int32(i)
	}
	// An octree over cells: each level keeps only the candidates that can
	// still be nearest inside its box.
	cellList := make([][]int32, ncell)
	g.build(cellList, [3]int{}, g.n, all)
	for id, l := range cellList {
		g.start[id+1] = g.start[id] + int32(len(l))
		g.idx = append(g.idx, l...)
	}
	return g
}

// build fills the cell lists of the box of cells [lo, lo+n) from cand.
func (g *accel) build(lists [][]int32, lo, n [3]int, cand []int32) {
	c := vec3{}
	for a := 0; a < 3; a++ {
		c[a] = g.lo[a] + (float64(lo[a])+float64(n[a])/2)*g.h
	}
	hd := 0.5 * g.h * math.Sqrt(float64(n[0]*n[0]+n[1]*n[1]+n[2]*n[2]))
	keep, lb := g.prune(cand, c, hd, nil)
	if len(keep) == 0 || n == [3]int{1, 1, 1} {
		for k := lo[2]; k < lo[2]+n[2]; k++ {
			for j := lo[1]; j < lo[1]+n[1]; j++ {
				for i := lo[0]; i < lo[0]+n[0]; i++ {
					id := i + g.n[0]*(j+g.n[1]*k)
					g.lb[id] = float32(lb)
					if len(keep) > 0 {
						lists[id] = keep
					}
				}
			}
		}
		return
	}
	var h [3][2][2]int // per axis: (start, size) of the two halves
	for a := 0; a < 3; a++ {
		m := (n[a] + 1) / 2
		h[a] = [2][2]int{{lo[a], m}, {lo[a] + m, n[a] - m}}
	}
	for _, z := range h[2] {
		for _, y := range h[1] {
			for _, x := range h[0] {
				if x[1] > 0 && y[1] > 0 && z[1] > 0 {
					g.build(lists, [3]int{x[0], y[0], z[0]}, [3]int{x[1], y[1], z[1]}, keep)
				}
			}
		}
	}
}

// prune keeps the tubes that may be the nearest somewhere within hd of c
// and closer than reach; it also returns a lower bound of the distance.
func (g *accel) prune(from []int32, c vec3, hd float64, out []int32) ([]int32, float64) {
	minUB := math.Inf(1)
	minLB := math.Inf(1)
	if cap(g.scratch) < len(from) {
		g.scratch = make([]float64, len(from))
	}
	ds := g.scratch[:len(from)] // recursion reuses it only after we are done
	for i, t := range from {
		d := g.tubes[t].sdf(c)
		ds[i] = d
		minUB = math.Min(minUB, d+hd)
		minLB = math.Min(minLB, d-hd)
	}
	if minLB > reach {
		return out, minLB
	}
	for i, t := range from {
		if ds[i]-hd <= minUB {
			out = append(out, t)
		}
	}
	return out, minLB
}

// dist returns the signed distance to the union of tubes (exact within
// reach, a lower bound beyond) and the label of the nearest tube.
func (g *accel) dist(p vec3) (float64, uint8) {
	fi := (p[0] - g.lo[0]) / g.h
	fj := (p[1] - g.lo[1]) / g.h
	fk := (p[2] - g.lo[2]) / g.h
	i, j, k := int(math.Floor(fi)), int(math.Floor(fj)), int(math.Floor(fk))
	if i < 0 || j < 0 || k < 0 || i >= g.n[0] || j >= g.n[1] || k >= g.n[2] {
		// Outside the grid box, which extends reach beyond every tube.
		dx := math.Max(math.Max(-fi, fi-float64(g.n[0])), 0)
		dy := math.Max(math.Max(-fj, fj-float64(g.n[1])), 0)
		dz := math.Max(math.Max(-fk, fk-float64(g.n[2])), 0)
		return reach + g.h*math.Sqrt(dx*dx+dy*dy+dz*dz), 0
	}
	id := i + g.n[0]*(j+g.n[1]*k)
	s, e := g.start[id], g.start[id+1]
	if s == e {
		return float64(g.lb[id]), 0
	}
	best := math.Inf(1)
	var lab uint8
	for _, t := range g.idx[s:e] {
		if d := g.tubes[t].sdf(p); d < best {
			best, lab = d, g.tubes[t].lab
		}
	}
	return best, lab
}
