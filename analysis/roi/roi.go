// Package roi finds the inner ears in a CT volume from the image alone,
// before any model runs: the otic capsule is the densest bone of the body and
// encloses the labyrinth, a small cavity of fluid (or, in dry specimens, air)
// that is surrounded by dense bone in almost every direction. Other cavities
// fail that test: the brain and the sinuses are too wide, mastoid air cells
// have walls too thin to stay dense at a coarse resolution.
//
// The search runs on a coarse copy of the volume (block means), first over
// the whole field of view, then again at a finer step around each hit, so a
// 512×512×400 series costs a fraction of a second and no full-volume
// resampling.
package roi

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/otonode/otonode/analysis/volume"
)

// Side is the laterality of a found ear, as DICOM spells it; "" when the
// image does not tell.
type Side string

const (
	Right   Side = "R"
	Left    Side = "L"
	Unknown Side = ""
)

// Candidate is one inner ear found in the volume.
type Candidate struct {
	Side Side
	// SideFromPosition is set when Side comes from the ear's half of the
	// head (two ears found: the one at smaller patient x is the right), not
	// from the middle-ear air beside a single ear. In patient coordinates
	// that is the strongest evidence there is; it holds only when the scan's
	// patient orientation is right, which a bilateral head scan's is.
	SideFromPosition bool
	CentreMM         [3]float64 // patient coordinates (LPS) of the enclosed cavity's centroid
	CentreVoxel      [3]float64 // the same on the source grid
	// Box is the region to analyse on the source grid: voxel indices
	// [Box[0][a], Box[1][a]) along each axis a, clipped to the grid.
	Box [2][3]int
	// CavityMM3 is the volume of the enclosed cavity at the coarse step; it
	// underestimates the labyrinth (thin canals blur away) and serves only
	// to rank candidates.
	CavityMM3 float64
	// Clipped is set when the box had to be cut at the edge of the field of
	// view, i.e. the ear may be cut off.
	Clipped bool
}

// Options tune the search; the zero value gives the defaults.
type Options struct {
	// StepMM is the coarse voxel size of the fine pass (default 0.5 mm);
	// the first pass uses a larger step when the field of view is wide.
	StepMM float64
	// HalfSizeMM is half the edge of the box returned around each ear's
	// centre (default 12 mm: the labyrinth spans about 20 mm).
	HalfSizeMM float64
	// MinContrast is the least difference between the densest bone and soft
	// tissue, in the volume's units, for a search to be meaningful (default
	// 600); below it the volume has no otic capsule.
	MinContrast float64
}

func (o Options) withDefaults() Options {
	if o.StepMM <= 0 {
		o.StepMM = 0.5
	}
	if o.HalfSizeMM <= 0 {
		o.HalfSizeMM = 12
	}
	if o.MinContrast <= 0 {
		o.MinContrast = 600
	}
	return o
}

// Limits of a plausible labyrinth cavity at the coarse step, and of the
// distance between the two ears of one head.
const (
	enclosureMM    = 4.0  // rays look this far for dense bone
	minCavityMM3   = 8.0  // smaller clusters are noise or foramina
	maxCavityMM3   = 1500 // larger ones are not a labyrinth
	maxExtentMM    = 25.0 // a labyrinth cluster fits in this
	clusterMM      = 10.0 // cavities closer than this belong to one ear
	bilateralMinMM = 40.0 // two ears are at least this far apart
	airSearchMM    = 15.0 // middle ear and mastoid air lie within this
	maxCoarseVoxel = 200  // per axis in the first pass
)

// ErrNoBone is returned when the volume has no bone dense enough to hold an
// otic capsule (another body region, a localizer, a soft-tissue window).
var ErrNoBone = errors.New("roi: no dense bone in the volume")

// Find returns the inner ears of v (values in HU or the scanner's units),
// at most one per side, ordered right then left. The voxel type is the
// volume's as loaded (int16 HU halve the memory of float32); the search
// averages in float32 either way. An empty result with a nil
// error means the volume has dense bone but nothing that looks like an inner
// ear.
func Find[T volume.Scalar](v *volume.Volume[T], opt Options) ([]Candidate, error) {
	if err := v.Validate(); err != nil {
		return nil, err
	}
	opt = opt.withDefaults()
	sp := v.Affine.Spacing()
	// First pass: a step that keeps the coarse grid within maxCoarseVoxel.
	step := opt.StepMM
	for a := range 3 {
		step = math.Max(step, float64(v.Size[a])*sp[a]/maxCoarseVoxel)
	}
	full := [2][3]int{{0, 0, 0}, v.Size}
	c := coarsen(v, full, step)
	lv, err := levelsOf(c.data, opt.MinContrast)
	if err != nil {
		return nil, err
	}
	hits := c.cavities(lv)
	coarser := step > opt.StepMM*1.01
	// Refine each hit at the fine step in a box around it; this sharpens
	// the centre, drops hits the fine look rejects, and cuts a long hit
	// (a labyrinth with its internal auditory canal) to the box. On a
	// fine enough grid only the long hits need it.
	var refined []cluster
	for _, h := range hits {
		if !coarser && !h.long {
			refined = append(refined, h)
			continue
		}
		box := boxAround(v.Grid, h.centreMM, 2*opt.HalfSizeMM)
		fc := coarsen(v, box, opt.StepMM)
		for _, f := range fc.cavities(lv) {
			if !f.long && dist(f.centreMM, h.centreMM) < clusterMM*1.5 {
				refined = append(refined, f)
			}
		}
	}
	hits = dedupe(refined)
	if len(hits) == 0 {
		return nil, nil
	}
	slices.SortFunc(hits, func(a, b cluster) int { return cmpFloat(b.volumeMM3, a.volumeMM3) })
	best := hits[:1]
	// A second ear must be far from the first along the left-right axis.
	for _, h := range hits[1:] {
		if math.Abs(h.centreMM[0]-best[0].centreMM[0]) >= bilateralMinMM && h.volumeMM3 >= 0.25*best[0].volumeMM3 {
			best = append(best, h)
			break
		}
	}
	inv, _ := v.Affine.Inverse() // Validate checked it
	var out []Candidate
	for _, h := range best {
		cand := Candidate{CentreMM: h.centreMM, CentreVoxel: inv.Apply(h.centreMM), CavityMM3: h.volumeMM3}
		cand.Box, cand.Clipped = boxAroundClipped(v.Grid, h.centreMM, opt.HalfSizeMM)
		out = append(out, cand)
	}
	if len(out) == 2 {
		// Patient left is +x in DICOM patient coordinates.
		if out[0].CentreMM[0] > out[1].CentreMM[0] {
			out[0], out[1] = out[1], out[0]
		}
		out[0].Side, out[1].Side = Right, Left
		out[0].SideFromPosition, out[1].SideFromPosition = true, true
	} else {
		out[0].Side = sideFromAir(v, out[0].CentreMM, lv)
	}
	return out, nil
}

// levels are the intensity thresholds of one volume.
type levels struct {
	dense  float32 // otic-capsule bone is above this
	cavity float32 // fluid and air are below this
	air    float32 // air is below this
}

// levelsOf derives thresholds from the volume itself, because cone-beam and
// flat-panel scanners are not calibrated to HU. The capsule is near the top
// percentile. Soft tissue is the median of what lies between air and dense
// bone; when there is no air in the field of view, the lowest values are
// soft tissue themselves.
func levelsOf(data []float32, minContrast float64) (levels, error) {
	s := slices.Clone(data)
	slices.Sort(s)
	q := func(p float64) float32 { return s[int(p*float64(len(s)-1))] }
	lo, top := q(0.001), q(0.999)
	from, _ := slices.BinarySearch(s, lo+0.1*(top-lo))
	to, _ := slices.BinarySearch(s, top-0.4*(top-lo))
	soft := lo
	if to-from >= len(s)/20 {
		soft = s[(from+to)/2]
	}
	// Uncalibrated scanners still put water within a few hundred units of 0;
	// a "soft tissue" far below that is air, and the volume has no tissue
	// to compare bone with.
	soft = max(soft, -200)
	if float64(top-soft) < minContrast {
		return levels{}, fmt.Errorf("%w (densest %.0f, soft tissue %.0f)", ErrNoBone, top, soft)
	}
	return levels{
		dense:  soft + 0.55*(top-soft),
		cavity: soft + 0.30*(top-soft),
		air:    lo + 0.5*(soft-lo),
	}, nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func dist(a, b [3]float64) float64 {
	return math.Sqrt((a[0]-b[0])*(a[0]-b[0]) + (a[1]-b[1])*(a[1]-b[1]) + (a[2]-b[2])*(a[2]-b[2]))
}

// dedupe merges clusters whose centres are within clusterMM, keeping the
// larger.
func dedupe(cs []cluster) []cluster {
	slices.SortFunc(cs, func(a, b cluster) int { return cmpFloat(b.volumeMM3, a.volumeMM3) })
	var out []cluster
next:
	for _, c := range cs {
		for _, o := range out {
			if dist(c.centreMM, o.centreMM) < clusterMM {
				continue next
			}
		}
		out = append(out, c)
	}
	return out
}

// boxAround is the index box of the grid (clipped) that covers a cube of
// the given edge in patient space centred at p.
func boxAround(g volume.Grid, p [3]float64, edgeMM float64) [2][3]int {
	b, _ := boxAroundClipped(g, p, edgeMM/2)
	return b
}

func boxAroundClipped(g volume.Grid, p [3]float64, half float64) ([2][3]int, bool) {
	inv, _ := g.Affine.Inverse()
	lo := [3]float64{math.Inf(1), math.Inf(1), math.Inf(1)}
	hi := [3]float64{math.Inf(-1), math.Inf(-1), math.Inf(-1)}
	for corner := range 8 {
		q := p
		for a := range 3 {
			if corner&(1<<a) != 0 {
				q[a] += half
			} else {
				q[a] -= half
			}
		}
		ijk := inv.Apply(q)
		for a := range 3 {
			lo[a] = math.Min(lo[a], ijk[a])
			hi[a] = math.Max(hi[a], ijk[a])
		}
	}
	var b [2][3]int
	clipped := false
	for a := range 3 {
		l, h := int(math.Floor(lo[a])), int(math.Ceil(hi[a]))+1
		if l < 0 {
			l, clipped = 0, true
		}
		if h > g.Size[a] {
			h, clipped = g.Size[a], true
		}
		b[0][a], b[1][a] = l, max(h, l)
	}
	return b, clipped
}

// sideFromAir tells the side of a single ear from where the air is: the
// middle ear and the mastoid lie lateral to the labyrinth, so the air near
// it is on the lateral side, and lateral is +x for a left ear.
func sideFromAir[T volume.Scalar](v *volume.Volume[T], centre [3]float64, lv levels) Side {
	c := coarsen(v, boxAround(v.Grid, centre, 2*airSearchMM), 1.0)
	var sum, n float64
	for k := range c.size[2] {
		for j := range c.size[1] {
			for i := range c.size[0] {
				if c.data[c.index(i, j, k)] >= lv.air {
					continue
				}
				p := c.patient(i, j, k)
				if dist(p, centre) > airSearchMM {
					continue
				}
				sum += p[0] - centre[0]
				n++
			}
		}
	}
	if n < 8 { // under 8 mm³ of air: no middle ear in view
		return Unknown
	}
	switch mean := sum / n; {
	case mean > 1:
		return Left
	case mean < -1:
		return Right
	}
	return Unknown
}
