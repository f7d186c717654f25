package analysis

// largestComponent keeps the largest 26-connected component of mask (a grid
// of size n, i fastest) and clears every other voxel. It returns the number
// of voxels kept. Ties keep the component met first in index order.
func largestComponent(mask []bool, n [3]int) int {
	comp := make([]int32, len(mask))
	var queue []int
	var best, bestSize int32
	var id int32
	for seed, on := range mask {
		if !on || comp[seed] != 0 {
			continue
		}
		id++
		comp[seed] = id
		queue = append(queue[:0], seed)
		var size int32
		for len(queue) > 0 {
			p := queue[len(queue)-1]
			queue = queue[:len(queue)-1]
			size++
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
		if size > bestSize {
			best, bestSize = id, size
		}
	}
	for p, c := range comp {
		if c != best {
			mask[p] = false
		}
	}
	return int(bestSize)
}
