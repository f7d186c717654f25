package phantom

import "math"

// Tissue is a material class of the phantom; a HU table maps it to CT
// numbers, so contrast variants and domain randomisation only swap tables.
type Tissue uint8

// Tissues, roughly from least to most dense.
const (
	TAir Tissue = iota
	TFat
	TSoft
	TBrain
	TCSF
	TNerve
	TBlood
	TFluid
	TMarrow
	TSeptum
	TPetrous
	TCortical
	TCapsule
	TOssicle
	TLesion
	TWater
	nTissue
)

var tissueNames = [nTissue]string{"air", "fat", "soft_tissue", "brain", "csf", "nerve", "blood",
	"labyrinth_fluid", "marrow", "mastoid_septa", "petrous_bone", "cortical_bone", "otic_capsule",
	"ossicles", "otosclerotic_lesion", "immersion_water"}

func (t Tissue) String() string { return tissueNames[t] }

// layer is one region of a scene. Layers are ordered by priority: a point
// takes the tissue of the first layer whose signed distance is negative.
// A layer has f (a plain distance) or fl (a distance that may also need the
// signed distance to its ear's labyrinth, which pt computes once per point).
type layer struct {
	t     Tissue
	frame int // 0 the head frame, 1+e the frame of ear e
	f     func(q vec3) float64
	fl    func(q vec3, c *pt) float64
	fluid *labyrinth // set on the fluid layer of an ear: gives the label
	ear   int
	name  string
}

// pose maps one frame to another: q = m·(p − o).
type pose struct {
	m mat3
	o vec3
}

func (ps pose) apply(p vec3) vec3 { return ps.m.mul(sub(p, ps.o)) }

// scene is everything the renderer needs: patient → head → ear frames and
// the layers.
type scene struct {
	toHead pose
	ears   []pose // head frame → ear frame
	direct []pose // patient → ear frame (toHead then ears[e]), set by prepare
	labs   []*labyrinth
	layers []layer
	bg     Tissue
	safety float64 // Lipschitz allowance of the distance estimates
}

// pt is one point being classified, with its frames and labyrinth
// distances computed on first use.
type pt struct {
	sc    *scene
	p     vec3
	fr    [3]vec3
	have  [3]bool
	dl    [2]float64
	ll    [2]uint8
	haveL [2]bool
}

// prepare composes the patient → ear transforms.
func (s *scene) prepare() {
	s.direct = s.direct[:0]
	for _, e := range s.ears {
		// q = Me·(Rh·(p − oh) − oe) = (Me·Rh)·(p − (oh + Rhᵀ·oe))
		s.direct = append(s.direct, pose{m: e.m.mulM(s.toHead.m), o: add(s.toHead.o, s.toHead.m.t().mul(e.o))})
	}
}

func (c *pt) reset(sc *scene, p vec3) {
	c.sc, c.p = sc, p
	c.have = [3]bool{}
	c.haveL = [2]bool{}
}

func (c *pt) frame(f int) vec3 {
	if !c.have[f] {
		if f == 0 {
			c.fr[0] = c.sc.toHead.apply(c.p)
		} else {
			c.fr[f] = c.sc.direct[f-1].apply(c.p)
		}
		c.have[f] = true
	}
	return c.fr[f]
}

func (c *pt) lab(e int) (float64, uint8) {
	if !c.haveL[e] {
		c.dl[e], c.ll[e] = c.sc.labs[e].sdf(c.frame(1 + e))
		c.haveL[e] = true
	}
	return c.dl[e], c.ll[e]
}

// dist evaluates layer l at the point.
func (c *pt) dist(l *layer) (float64, uint8) {
	q := c.frame(l.frame)
	switch {
	case l.fluid != nil:
		return c.lab(l.ear)
	case l.fl != nil:
		return l.fl(q, c), 0
	default:
		return l.f(q), 0
	}
}

// classify returns the tissue at the point, the label and which ear (-1
// none) it belongs to, evaluating only the layers in active (in priority
// order) and falling back to def.
func (s *scene) classify(c *pt, active []int32, def Tissue) (Tissue, uint8, int) {
	for _, li := range active {
		l := &s.layers[li]
		d, lab := c.dist(l)
		if d < 0 {
			return l.t, lab, l.ear
		}
	}
	return def, 0, -1
}

// cull splits active layers for a region of half-diagonal hd around the
// point c: it returns the layers that may change inside the region and the
// tissue that applies where none of them does. When the returned list is
// empty the region is uniform. d0 is the distance of the first kept layer.
func (s *scene) cull(c *pt, hd float64, active []int32, def Tissue, out []int32) ([]int32, Tissue, uint8, int, float64) {
	lim := hd * s.safety
	d0 := 0.0
	for _, li := range active {
		l := &s.layers[li]
		d, lab := c.dist(l)
		if d > lim {
			continue // outside everywhere in the region
		}
		if len(out) == 0 {
			d0 = d
		}
		if d < -lim {
			// Inside everywhere: nothing below can show through. The fluid
			// stays active because its label may switch between structures.
			if l.fluid != nil {
				return append(out, li), l.t, lab, l.ear, d0
			}
			return out, l.t, 0, l.ear, d0
		}
		out = append(out, li)
	}
	return out, def, 0, -1, d0
}

// Primitive constructors returning distance functions.

func sphereF(c vec3, r float64) func(vec3) float64 {
	return func(q vec3) float64 { return norm(sub(q, c)) - r }
}

func tubeF(a, b vec3, ra, rb float64) func(vec3) float64 {
	t := tube{a: a, b: b, ra: ra, rb: rb}
	return t.sdf
}

func ellF(c, r vec3, rot mat3) func(vec3) float64 {
	b := blob{c: c, r: r, rot: rot}
	return b.sdf
}

func discF(c vec3, rot mat3, th, a, b float64) func(vec3) float64 {
	return func(q vec3) float64 { return discSDF(rot.mul(sub(q, c)), th, a, b) }
}

// shellF is the region between an ellipsoid and one shrunk by th.
func shellF(c, r vec3, th float64) func(vec3) float64 {
	in := vec3{r[0] - th, r[1] - th, r[2] - th}
	return func(q vec3) float64 {
		d := sub(q, c)
		return math.Max(ellipsoidSDF(d, r), -ellipsoidSDF(d, in))
	}
}

// roundBoxF is a box of half sizes hs with edges rounded by rr.
func roundBoxF(c, hs vec3, rot mat3, rr float64) func(vec3) float64 {
	return func(q vec3) float64 {
		d := rot.mul(sub(q, c))
		var o vec3
		m := -math.MaxFloat64
		for i := 0; i < 3; i++ {
			v := math.Abs(d[i]) - (hs[i] - rr)
			o[i] = math.Max(v, 0)
			m = math.Max(m, v)
		}
		return norm(o) + math.Min(m, 0) - rr
	}
}

func unionF(fs ...func(vec3) float64) func(vec3) float64 {
	return func(q vec3) float64 {
		d := math.Inf(1)
		for _, f := range fs {
			d = math.Min(d, f(q))
		}
		return d
	}
}

// rotRows builds a rotation whose rows are the unit vectors a, b, a×b, so
// that rot·v gives v in the frame of a and b.
func rotRows(a, b vec3) mat3 {
	a = unit(a)
	b = perp(b, a)
	c := cross(a, b)
	return mat3{a, b, c}
}
