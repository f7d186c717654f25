package roi

import (
	"math"

	"github.com/otonode/otonode/analysis/volume"
)

// coarse is a block-mean copy of part of a volume.
type coarse struct {
	size    [3]int
	data    []float32
	affine  volume.Affine // coarse index → patient mm
	spacing [3]float64
}

func (c *coarse) index(i, j, k int) int { return i + c.size[0]*(j+c.size[1]*k) }

func (c *coarse) patient(i, j, k int) [3]float64 {
	return c.affine.Apply([3]float64{float64(i), float64(j), float64(k)})
}

// coarsen averages blocks of about stepMM along each axis over the index box
// of v. Axes already coarser than the step are kept as they are.
func coarsen[T volume.Scalar](v *volume.Volume[T], box [2][3]int, stepMM float64) *coarse {
	sp := v.Affine.Spacing()
	var f, n [3]int
	for a := range 3 {
		f[a] = max(1, int(math.Round(stepMM/sp[a])))
		n[a] = max(1, (box[1][a]-box[0][a]+f[a]-1)/f[a])
	}
	c := &coarse{size: n, data: make([]float32, n[0]*n[1]*n[2])}
	count := make([]float32, len(c.data))
	for k := box[0][2]; k < box[1][2]; k++ {
		ck := (k - box[0][2]) / f[2]
		for j := box[0][1]; j < box[1][1]; j++ {
			cj := (j - box[0][1]) / f[1]
			row := v.Data[v.Index(0, j, k):]
			base := c.index(0, cj, ck)
			for i := box[0][0]; i < box[1][0]; i++ {
				ci := (i - box[0][0]) / f[0]
				c.data[base+ci] += float32(row[i])
				count[base+ci]++
			}
		}
	}
	for i := range c.data {
		if count[i] > 0 {
			c.data[i] /= count[i]
		}
	}
	// Coarse voxel (0,0,0) is centred on the middle of the first block.
	var centre0 [3]float64
	for a := range 3 {
		centre0[a] = float64(box[0][a]) + float64(f[a]-1)/2
	}
	for r := range 3 {
		for a := range 3 {
			c.affine[r][a] = v.Affine[r][a] * float64(f[a])
		}
	}
	o := v.Affine.Apply(centre0)
	for r := range 3 {
		c.affine[r][3] = o[r]
	}
	c.spacing = c.affine.Spacing()
	return c
}

// cluster is a group of enclosed-cavity components that belong together.
type cluster struct {
	centreMM  [3]float64
	volumeMM3 float64
	extentMM  float64
	// long is set for a cluster longer than a labyrinth (up to twice
	// maxExtentMM): a labyrinth joined by the internal auditory canal, a
	// fluid-filled tube in the same bone as long as the labyrinth is wide.
	// Find looks at it again in a box around it, which cuts the canal.
	long bool
}

// directions are the 26 neighbours, opposite pairs first so that a voxel in
// a wide cavity (whose rays miss in many directions) fails fast.
var directions = func() [][3]int {
	var d [][3]int
	seen := map[[3]int]bool{}
	for dz := -1; dz <= 1; dz++ {
		for dy := -1; dy <= 1; dy++ {
			for dx := -1; dx <= 1; dx++ {
				p := [3]int{dx, dy, dz}
				if p == ([3]int{}) || seen[p] {
					continue
				}
				q := [3]int{-dx, -dy, -dz}
				seen[p], seen[q] = true, true
				d = append(d, p, q)
			}
		}
	}
	return d
}()

// needHits is how many of the 26 rays must meet dense bone for a voxel to
// count as enclosed; the windows and the canals' openings leave a few open.
const needHits = 22

// cavities finds clusters of low-density voxels enclosed by dense bone.
func (c *coarse) cavities(lv levels) []cluster {
	n := len(c.data)
	enclosed := make([]bool, n)
	var steps [26]int
	for d, dir := range directions {
		l := math.Sqrt(sq(float64(dir[0])*c.spacing[0]) + sq(float64(dir[1])*c.spacing[1]) + sq(float64(dir[2])*c.spacing[2]))
		steps[d] = max(1, int(math.Ceil(enclosureMM/l)))
	}
	for k := range c.size[2] {
		for j := range c.size[1] {
			for i := range c.size[0] {
				if c.data[c.index(i, j, k)] >= lv.cavity {
					continue
				}
				misses := 0
				for d, dir := range directions {
					if !c.ray(i, j, k, dir, steps[d], lv.dense) {
						misses++
						if misses > len(directions)-needHits {
							break
						}
					}
				}
				if misses <= len(directions)-needHits {
					enclosed[c.index(i, j, k)] = true
				}
			}
		}
	}
	// Fluid and air form separate cavities: the vestibule's fluid must not
	// join the middle ear's air through a window that the coarse step
	// cannot resolve. (A dry specimen's labyrinth is air throughout.)
	fluid := make([]bool, n)
	air := make([]bool, n)
	for i, e := range enclosed {
		if e {
			if c.data[i] < lv.air {
				air[i] = true
			} else {
				fluid[i] = true
			}
		}
	}
	return append(c.clusters(fluid), c.clusters(air)...)
}

func sq(x float64) float64 { return x * x }

// ray reports whether dense bone lies within n steps of (i,j,k) along dir.
func (c *coarse) ray(i, j, k int, dir [3]int, n int, dense float32) bool {
	for s := 1; s <= n; s++ {
		x, y, z := i+s*dir[0], j+s*dir[1], k+s*dir[2]
		if x < 0 || y < 0 || z < 0 || x >= c.size[0] || y >= c.size[1] || z >= c.size[2] {
			return false
		}
		if c.data[c.index(x, y, z)] > dense {
			return true
		}
	}
	return false
}

// clusters labels 26-connected components of the mask, groups components
// whose centroids lie within clusterMM, and keeps groups of labyrinth size
// (or long ones, see cluster.long).
func (c *coarse) clusters(mask []bool) []cluster {
	voxMM3 := c.spacing[0] * c.spacing[1] * c.spacing[2]
	type comp struct {
		sum      [3]float64
		n        float64
		lo, hi   [3]float64
		assigned bool
	}
	var comps []comp
	seen := make([]bool, len(mask))
	var stack [][3]int
	for k := range c.size[2] {
		for j := range c.size[1] {
			for i := range c.size[0] {
				idx := c.index(i, j, k)
				if !mask[idx] || seen[idx] {
					continue
				}
				cp := comp{lo: [3]float64{math.Inf(1), math.Inf(1), math.Inf(1)}, hi: [3]float64{math.Inf(-1), math.Inf(-1), math.Inf(-1)}}
				seen[idx] = true
				stack = append(stack[:0], [3]int{i, j, k})
				for len(stack) > 0 {
					p := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					mm := c.patient(p[0], p[1], p[2])
					for a := range 3 {
						cp.sum[a] += mm[a]
						cp.lo[a] = math.Min(cp.lo[a], mm[a])
						cp.hi[a] = math.Max(cp.hi[a], mm[a])
					}
					cp.n++
					for _, d := range directions {
						x, y, z := p[0]+d[0], p[1]+d[1], p[2]+d[2]
						if x < 0 || y < 0 || z < 0 || x >= c.size[0] || y >= c.size[1] || z >= c.size[2] {
							continue
						}
						q := c.index(x, y, z)
						if mask[q] && !seen[q] {
							seen[q] = true
							stack = append(stack, [3]int{x, y, z})
						}
					}
				}
				comps = append(comps, cp)
			}
		}
	}
	centre := func(cp comp) [3]float64 {
		return [3]float64{cp.sum[0] / cp.n, cp.sum[1] / cp.n, cp.sum[2] / cp.n}
	}
	var out []cluster
	for s := range comps {
		if comps[s].assigned {
			continue
		}
		// Single-linkage grouping by centroid distance.
		group := []int{s}
		comps[s].assigned = true
		for g := 0; g < len(group); g++ {
			for t := range comps {
				if !comps[t].assigned && dist(centre(comps[group[g]]), centre(comps[t])) < clusterMM {
					comps[t].assigned = true
					group = append(group, t)
				}
			}
		}
		var sum [3]float64
		var nvox float64
		lo := [3]float64{math.Inf(1), math.Inf(1), math.Inf(1)}
		hi := [3]float64{math.Inf(-1), math.Inf(-1), math.Inf(-1)}
		for _, g := range group {
			cp := comps[g]
			for a := range 3 {
				sum[a] += cp.sum[a]
				lo[a] = math.Min(lo[a], cp.lo[a])
				hi[a] = math.Max(hi[a], cp.hi[a])
			}
			nvox += cp.n
		}
		cl := cluster{
			centreMM:  [3]float64{sum[0] / nvox, sum[1] / nvox, sum[2] / nvox},
			volumeMM3: nvox * voxMM3,
			extentMM:  math.Max(hi[0]-lo[0], math.Max(hi[1]-lo[1], hi[2]-lo[2])),
		}
		cl.long = cl.extentMM > maxExtentMM
		if cl.volumeMM3 >= minCavityMM3 && cl.volumeMM3 <= maxCavityMM3 && cl.extentMM <= 2*maxExtentMM {
			out = append(out, cl)
		}
	}
	return out
}
