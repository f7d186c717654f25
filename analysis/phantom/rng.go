package phantom

import (
	"math"
	"math/rand/v2"
)

// draws hands out the random numbers of one case. Every parameter is drawn
// in a fixed order from a PCG stream keyed by the seed, so one seed always
// gives the same case on every platform.
type draws struct{ r *rand.Rand }

func newDraws(seed uint64, stream uint64) *draws {
	return &draws{r: rand.New(rand.NewPCG(seed, stream^0x9e3779b97f4a7c15))}
}

func (d *draws) uni(lo, hi float64) float64 { return lo + (hi-lo)*d.r.Float64() }
func (d *draws) jit(s float64) float64      { return s * (2*d.r.Float64() - 1) }
func (d *draws) jit3(s float64) vec3        { return vec3{d.jit(s), d.jit(s), d.jit(s)} }
func (d *draws) intn(n int) int             { return d.r.IntN(n) }
func (d *draws) u64() uint64                { return d.r.Uint64() }

// unitVec draws a direction uniformly on the sphere.
func (d *draws) unitVec() vec3 {
	z := d.uni(-1, 1)
	phi := d.uni(0, 2*math.Pi)
	s := math.Sqrt(1 - z*z)
	return vec3{s * math.Cos(phi), s * math.Sin(phi), z}
}

// rotation draws a rotation uniformly from SO(3) (Shoemake's quaternion).
func (d *draws) rotation() mat3 {
	u1, u2, u3 := d.r.Float64(), d.r.Float64(), d.r.Float64()
	a, b := math.Sqrt(1-u1), math.Sqrt(u1)
	w, x := a*math.Sin(2*math.Pi*u2), a*math.Cos(2*math.Pi*u2)
	y, z := b*math.Sin(2*math.Pi*u3), b*math.Cos(2*math.Pi*u3)
	return mat3{
		{1 - 2*(y*y+z*z), 2 * (x*y - z*w), 2 * (x*z + y*w)},
		{2 * (x*y + z*w), 1 - 2*(x*x+z*z), 2 * (y*z - x*w)},
		{2 * (x*z - y*w), 2 * (y*z + x*w), 1 - 2*(x*x+y*y)},
	}
}

// hash64 mixes a key into 64 well-spread bits (splitmix64 finaliser); used
// for position-keyed randomness (air cells, noise) that must not depend on
// the order in which goroutines visit voxels.
func hash64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
