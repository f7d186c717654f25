package analysis

// components labels the 26-connected components of mask (a grid of size n,
// i fastest): comp[p] is the component of voxel p, numbered from 1 in the
// order their first voxels come in index order (0: background), and
// size[c] its voxel count (size[0] is unused).
func components(mask []bool, n [3]int) (comp []int32, size []int) {
	comp = make([]int32, len(mask))
	size = []int{0}
	var queue []int
	for seed, on := range mask {
		if !on || comp[seed] != 0 {
			continue
		}
		id := int32(len(size))
		comp[seed] = id
		queue = append(queue[:0], seed)
		var count int
		for len(queue) > 0 {
			p := queue[len(queue)-1]
			queue = queue[:len(queue)-1]
			count++
			i, j, k := p%n[0], p/n[0]%n[1], p/(n[0]*n[1])
			for dk := -1; dk <= 1; dk++ {
				kk := k + dk
				if kk < 0 || kk >= n[2] {
					continue
				}
				for dj := -1; dj <= 1; dj++ {
					jj := j + dj
					if jj < 0 || jj >= n[1] {
						continue
					}
					for di := -1; di <= 1; di++ {
						ii := i + di
						if ii < 0 || ii >= n[0] {
							continue
						}
						q := ii + n[0]*(jj+n[1]*kk)
						if mask[q] && comp[q] == 0 {
							comp[q] = id
							queue = append(queue, q)
						}
					}
				}
			}
		}
		size = append(size, count)
	}
	return comp, size
}

// largestComponent keeps the largest 26-connected component of mask (a grid
// of size n, i fastest) and clears every other voxel. It returns the number
// of voxels kept. Ties keep the component met first in index order.
func largestComponent(mask []bool, n [3]int) int {
	comp, size := components(mask, n)
	var best int32
	for c := 1; c < len(size); c++ {
		if size[c] > size[best] {
			best = int32(c)
		}
	}
	for p, c := range comp {
		if c != best {
			mask[p] = false
		}
	}
	return size[best]
}

// majorComponents returns the 26-connected components of mask with at least
// frac of the largest one's voxels (at most maxMajor of them, the largest
// first; ties in index order).
func majorComponents(mask []bool, n [3]int, frac float64) []bool {
	comp, size := components(mask, n)
	largest := 0
	for _, s := range size {
		largest = max(largest, s)
	}
	keep := make([]bool, len(size))
	for range maxMajor {
		best := 0
		for c := 1; c < len(size); c++ {
			if !keep[c] && size[c] > size[best] {
				best = c
			}
		}
		if best == 0 || float64(size[best]) < frac*float64(largest) {
			break
		}
		keep[best] = true
	}
	out := make([]bool, len(mask))
	for p, c := range comp {
		out[p] = keep[c]
	}
	return out
}

// maxMajor is the most components majorComponents keeps.
const maxMajor = 8
