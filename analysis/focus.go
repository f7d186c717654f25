package analysis

import (
	"math"

	"github.com/otonode/otonode/analysis/volume"
)

// focusMinMarginMM is the least margin around the first pass's foreground
// that the other TTA passes see: enough context for the network near the
// labyrinth's edge, and room for a pass to segment a little more than the
// first did.
const focusMinMarginMM = 3.0

// focusMaxFraction is the largest share of the region a focus box may
// cover; above it cropping saves too little to be worth its seams.
const focusMaxFraction = 0.5

// focusBox returns the bounding box, on a grid of extents n, of the voxels
// with prob ≥ thr together with the peak of each heatmap channel (heat
// holds len(heat)/len(prob) channels), grown by margin voxels per axis and
// clipped to the grid. It reports false when no voxel reaches thr: then
// there is nothing to focus on.
func focusBox(prob, heat []float32, n [3]int, thr float32, margin [3]int) (volume.Box, bool) {
	lo := [3]int{math.MaxInt, math.MaxInt, math.MaxInt}
	hi := [3]int{-1, -1, -1}
	grow := func(idx int) {
		p := [3]int{idx % n[0], idx / n[0] % n[1], idx / (n[0] * n[1])}
		for a := range 3 {
			lo[a] = min(lo[a], p[a])
			hi[a] = max(hi[a], p[a])
		}
	}
	for i, p := range prob {
		if p >= thr {
			grow(i)
		}
	}
	if hi[0] < 0 {
		return volume.Box{}, false
	}
	if nv := len(prob); nv > 0 {
		for c := 0; c+nv <= len(heat); c += nv {
			best := 0
			for i, v := range heat[c : c+nv] {
				if v > heat[c+best] {
					best = i
				}
			}
			grow(best)
		}
	}
	var b volume.Box
	for a := range 3 {
		b.Min[a] = max(lo[a]-margin[a], 0)
		b.Max[a] = min(hi[a]+margin[a]+1, n[a])
	}
	return b, true
}

// focusMargin is the margin of focusBox in voxels of spacing sp: the
// larger of focusMinMarginMM and the uncertainty score's margin plus 1 mm,
// so the voxels that score looks at all lie inside the box.
func focusMargin(sp [3]float64, uncertaintyMarginMM float64) [3]int {
	mm := max(focusMinMarginMM, uncertaintyMarginMM+1)
	var m [3]int
	for a := range 3 {
		m[a] = int(math.Ceil(mm / sp[a]))
	}
	return m
}

// boxLen is the number of voxels in b.
func boxLen(b volume.Box) int {
	s := b.Size()
	return s[0] * s[1] * s[2]
}

// cropInto copies the part of src (extents n) inside b into dst
// (extents b.Size(), i fastest).
func cropInto(dst, src []float32, n [3]int, b volume.Box) {
	w := b.Max[0] - b.Min[0]
	o := 0
	for k := b.Min[2]; k < b.Max[2]; k++ {
		for j := b.Min[1]; j < b.Max[1]; j++ {
			p := (k*n[1]+j)*n[0] + b.Min[0]
			copy(dst[o:o+w], src[p:p+w])
			o += w
		}
	}
}

// pasteBox copies src (extents b.Size()) into the part of dst (extents n)
// inside b.
func pasteBox(dst, src []float32, n [3]int, b volume.Box) {
	w := b.Max[0] - b.Min[0]
	o := 0
	for k := b.Min[2]; k < b.Max[2]; k++ {
		for j := b.Min[1]; j < b.Max[1]; j++ {
			p := (k*n[1]+j)*n[0] + b.Min[0]
			copy(dst[p:p+w], src[o:o+w])
			o += w
		}
	}
}

// majorComponents returns the 26-connected components of mask with at least
// frac of the largest one's voxels (at most 8 of them, largest first).
func majorComponents(mask []bool, n [3]int, frac float64) []bool {
	rest := append([]bool(nil), mask...)
	keep := make([]bool, len(mask))
	cur := make([]bool, len(mask))
	first := 0
	for range 8 {
		copy(cur, rest)
		size := largestComponent(cur, n)
		if size == 0 || float64(size) < frac*float64(first) {
			break
		}
		first = max(first, size)
		for i, in := range cur {
			if in {
				keep[i], rest[i] = true, false
			}
		}
	}
	return keep
}
