package metrics

import (
	"math"
	"runtime"
	"sync"
)

// SquaredEDT returns, for every voxel of a grid of the given size and
// spacing (mm per voxel along i, j, k), the squared Euclidean distance in
// mm² to the nearest voxel where feature is true (+Inf when there is
// none). It is exact: the separable algorithm of Felzenszwalb and
// Huttenlocher (lower envelope of parabolas), one pass per axis, each pass
// weighted by that axis's spacing.
func SquaredEDT(feature []bool, size [3]int, spacing [3]float64) []float64 {
	n := size[0] * size[1] * size[2]
	d := make([]float64, n)
	for i, f := range feature[:n] {
		if !f {
			d[i] = math.Inf(1)
		}
	}
	stride := [3]int{1, size[0], size[0] * size[1]}
	for axis := 0; axis < 3; axis++ {
		m := size[axis]
		if m <= 1 {
			continue
		}
		// Lines along axis: start offsets are all voxels with index 0 on it.
		var starts []int
		for k := 0; k < size[2]; k++ {
			for j := 0; j < size[1]; j++ {
				for i := 0; i < size[0]; i++ {
					if [3]int{i, j, k}[axis] == 0 {
						starts = append(starts, i+size[0]*(j+size[1]*k))
					}
				}
			}
		}
		w2 := spacing[axis] * spacing[axis]
		parallel(len(starts), func(lo, hi int) {
			line := make([]float64, m)
			out := make([]float64, m)
			env := newEnvelope(m)
			for _, s := range starts[lo:hi] {
				for q := 0; q < m; q++ {
					line[q] = d[s+q*stride[axis]]
				}
				env.transform(line, out, w2)
				for q := 0; q < m; q++ {
					d[s+q*stride[axis]] = out[q]
				}
			}
		})
	}
	return d
}

// EDT is SquaredEDT's square root: distances in mm.
func EDT(feature []bool, size [3]int, spacing [3]float64) []float64 {
	d := SquaredEDT(feature, size, spacing)
	for i, x := range d {
		d[i] = math.Sqrt(x)
	}
	return d
}

type envelope struct {
	v []int     // positions of the parabolas in the lower envelope
	z []float64 // boundaries between them
}

func newEnvelope(m int) *envelope {
	return &envelope{v: make([]int, m), z: make([]float64, m+1)}
}

// transform computes out[p] = min_q w2·(p−q)² + f[q] over the finite f[q].
func (e *envelope) transform(f, out []float64, w2 float64) {
	m := len(f)
	k := -1 // index of the rightmost parabola in the envelope
	for q := 0; q < m; q++ {
		if math.IsInf(f[q], 1) {
			continue // not a site: f is +Inf there
		}
		fq := f[q] + w2*float64(q*q)
		var s float64
		for k >= 0 {
			v := e.v[k]
			// Where the parabola of q starts to lie below the one of v.
			s = (fq - (f[v] + w2*float64(v*v))) / (2 * w2 * float64(q-v))
			if s > e.z[k] {
				break
			}
			k-- // v is hidden by q everywhere it mattered
		}
		k++
		e.v[k] = q
		if k == 0 {
			e.z[0] = math.Inf(-1)
		} else {
			e.z[k] = s
		}
		e.z[k+1] = math.Inf(1)
	}
	if k < 0 {
		for p := range out {
			out[p] = math.Inf(1)
		}
		return
	}
	j := 0
	for p := 0; p < m; p++ {
		for e.z[j+1] < float64(p) {
			j++
		}
		dp := float64(p - e.v[j])
		out[p] = w2*dp*dp + f[e.v[j]]
	}
}

// parallel splits [0, n) across GOMAXPROCS goroutines.
func parallel(n int, f func(lo, hi int)) {
	w := min(runtime.GOMAXPROCS(0), max(1, n/64))
	if w <= 1 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	for t := 0; t < w; t++ {
		lo, hi := t*n/w, (t+1)*n/w
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	wg.Wait()
}
