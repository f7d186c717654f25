package phantom

import (
	"math"
)

// Label values of the ground-truth volume (foreground = label > 0).
const (
	LabelBackground uint8 = 0
	LabelCochlea    uint8 = 1
	LabelVestibule  uint8 = 2
	LabelCanals     uint8 = 3
)

// Landmark names in the order used everywhere in otonode.
var LandmarkNames = [3]string{"helicotrema", "oval_window", "round_window"}

// LabyrinthParams are the drawn anatomical numbers of one ear, in mm. They
// are recorded in case.json so a case can be described without the code.
type LabyrinthParams struct {
	Scale             float64    `json:"scale"`
	CochlearTurns     float64    `json:"cochlear_turns"`
	BasalRadiusMM     float64    `json:"basal_turn_centreline_radius_mm"`
	ApicalRadiusMM    float64    `json:"apical_centreline_radius_mm"`
	CochlearHeightMM  float64    `json:"cochlear_centreline_height_mm"`
	LumenBaseMM       float64    `json:"lumen_radius_base_mm"`
	LumenApexMM       float64    `json:"lumen_radius_apex_mm"`
	CochlearAxisTilt  [2]float64 `json:"cochlear_axis_tilt_deg"`
	VestibuleMM       [3]float64 `json:"vestibule_semi_axes_mm"`
	CanalRadiusMM     [3]float64 `json:"canal_arc_radius_mm"` // superior, posterior, lateral
	CanalLumenMM      float64    `json:"canal_lumen_radius_mm"`
	AmpullaRadiusMM   float64    `json:"ampulla_radius_mm"`
	LateralCanalTilt  float64    `json:"lateral_canal_tilt_deg"`
	CapsuleMM         float64    `json:"otic_capsule_thickness_mm"`
	CochlearLengthMM  float64    `json:"cochlear_centreline_length_mm"`
	BasalDiameterAMM  float64    `json:"basal_turn_diameter_a_mm"`
	CanalPlaneAngles  [3]float64 `json:"canal_plane_angles_deg"` // sup-post, sup-lat, post-lat
	OrientationJitter float64    `json:"orientation_jitter_deg"`
}

// tube is a round cone from a (radius ra) to b (radius rb).
type tube struct {
	a, b   vec3
	ra, rb float64
	lab    uint8
}

func (t *tube) sdf(p vec3) float64 {
	d, s := segDist(p, t.a, t.b)
	return d - (t.ra + s*(t.rb-t.ra))
}

// blob is an ellipsoid: rot maps ear-frame offsets to its own axes.
type blob struct {
	c   vec3
	rot mat3
	r   vec3
	lab uint8
}

func (b *blob) sdf(p vec3) float64 { return ellipsoidSDF(b.rot.mul(sub(p, b.c)), b.r) }

// labyrinth is the fluid space of one ear in its ear frame: u lateral,
// v anterior, w superior (mm), origin at the vestibule centre. Left ears use
// the same description; the mirror lives in the ear-to-head transform.
type labyrinth struct {
	P      LabyrinthParams
	tubes  []tube
	nCoch  int // tubes[:nCoch] are the cochlear canal
	blobs  []blob
	all    *accel
	axis   vec3 // modiolar axis, base to apex
	base   vec3 // centre of the basal turn on the axis
	lm     [3]vec3
	owN    vec3 // outward normal of the oval window (towards the middle ear)
	rwN    vec3
	rwTube int  // index of the first cochlear tube
	fundus vec3 // lateral end of the internal auditory canal
	rot    mat3 // ear frame → labyrinth frame (the canal pitch)
}

// reach is how far from the labyrinth distances must be exact: the capsule,
// the lesions and the air-cell exclusion zone all lie inside it.
const reach = 3.6

func newLabyrinth(d *draws) *labyrinth {
	L := &labyrinth{}
	P := &L.P
	s := d.uni(0.97, 1.05)
	P.Scale = s
	P.CochlearTurns = d.uni(2.2, 2.9)
	P.BasalRadiusMM = d.uni(3.6, 4.0) * s
	P.ApicalRadiusMM = d.uni(0.55, 0.8) * s
	P.CochlearHeightMM = d.uni(3.0, 3.7) * s
	P.LumenBaseMM = d.uni(1.13, 1.23) * s
	P.LumenApexMM = d.uni(0.55, 0.68) * s
	P.VestibuleMM = [3]float64{d.uni(1.55, 1.75) * s, d.uni(2.7, 3.1) * s, d.uni(1.65, 1.9) * s}
	P.CanalRadiusMM = [3]float64{d.uni(2.95, 3.45) * s, d.uni(2.85, 3.35) * s, d.uni(2.15, 2.45) * s}
	P.CanalLumenMM = d.uni(0.5, 0.58) * s
	P.AmpullaRadiusMM = d.uni(0.95, 1.1) * s
	P.LateralCanalTilt = d.uni(22, 36)
	P.CapsuleMM = d.uni(1.5, 2.5)
	P.CochlearAxisTilt = [2]float64{d.jit(8), d.jit(8)}
	P.OrientationJitter = 6

	vs := vec3(P.VestibuleMM)
	// Vestibule: an ellipsoid, long axis antero-posterior.
	L.blobs = append(L.blobs, blob{c: vec3{}, rot: ident3, r: vs, lab: LabelVestibule})

	// Oval window: on the lateral wall of the vestibule.
	owDir := unit(vec3{1, 0.25 + d.jit(0.1), -0.15 + d.jit(0.1)})
	owK := 1 / math.Sqrt(sq(owDir[0]/vs[0])+sq(owDir[1]/vs[1])+sq(owDir[2]/vs[2]))
	ow := scale(owDir, owK)
	owN := unit(vec3{ow[0] / (vs[0] * vs[0]), ow[1] / (vs[1] * vs[1]), ow[2] / (vs[2] * vs[2])})
	L.lm[1], L.owN = ow, owN

	// Round window: 2-3 mm postero-inferior to the oval window, at the start
	// of the basal turn (scala tympani), facing the middle ear.
	rw := add(ow, scale(vec3{0.35 + d.jit(0.15), -0.9 + d.jit(0.3), -2.2 + d.jit(0.3)}, s))
	L.lm[2] = rw
	rwN := unit(vec3{1, -0.35, -0.25})
	L.rwN = rwN

	// Cochlea. The modiolar axis points antero-laterally and inferiorly
	// from the base (at the fundus of the internal auditory canal).
	pitch := P.LateralCanalTilt * math.Pi / 180
	L.rot = rotAxis(vec3{1, 0, 0}, -pitch) // ear frame → labyrinth frame
	axis := L.rot.mul(unit(vec3{0.42, 0.78, -0.5}))
	axis = rotAxis(vec3{0, 0, 1}, P.CochlearAxisTilt[0]*math.Pi/180).mul(axis)
	axis = rotAxis(vec3{1, 0, 0}, P.CochlearAxisTilt[1]*math.Pi/180).mul(axis)
	L.axis = axis
	start := sub(rw, scale(rwN, P.LumenBaseMM)) // centreline start
	e0 := perp(vec3{0.25, -1, 0.2}, axis)       // from the axis towards the start
	base := sub(start, scale(e0, P.BasalRadiusMM))
	base = sub(base, scale(axis, dot(sub(start, base), axis)))
	L.base = base
	e1 := cross(axis, e0)
	// Turn so that the basal turn runs forward, away from the vestibule.
	if dot(add(base, scale(e1, P.BasalRadiusMM)), vec3{0, 1, 0}) < dot(add(base, scale(e1, -P.BasalRadiusMM)), vec3{0, 1, 0}) {
		e1 = scale(e1, -1)
	}
	T := P.CochlearTurns * 2 * math.Pi
	at := func(th float64) (vec3, float64) {
		f := th / T
		r := P.BasalRadiusMM * math.Pow(P.ApicalRadiusMM/P.BasalRadiusMM, math.Pow(f, 1.3))
		h := P.CochlearHeightMM * math.Pow(f, 0.9)
		c := add(base, add(scale(axis, h), add(scale(e0, r*math.Cos(th)), scale(e1, r*math.Sin(th)))))
		rho := P.LumenBaseMM + (P.LumenApexMM-P.LumenBaseMM)*math.Pow(f, 0.7)
		return c, rho
	}
	prev, prho := at(0)
	length := 0.0
	const step = 0.35
	for th := 0.0; th < T; {
		r := P.BasalRadiusMM
		dth := step / math.Max(r*0.3, 0.35)
		c0, _ := at(th)
		c1, _ := at(math.Min(th+dth, T))
		if l := norm(sub(c1, c0)); l > 0 {
			dth *= step / l
		}
		th = math.Min(th+dth, T)
		c, rho := at(th)
		L.tubes = append(L.tubes, tube{a: prev, b: c, ra: prho, rb: rho, lab: LabelCochlea})
		length += norm(sub(c, prev))
		prev, prho = c, rho
	}
	L.nCoch = len(L.tubes)
	P.CochlearLengthMM = length
	cT, rhoT := at(T)
	_ = rhoT
	L.lm[0] = cT // helicotrema: the apical end of the canal's centreline
	cPi, rhoPi := at(math.Pi)
	c0, rho0 := at(0)
	P.BasalDiameterAMM = norm(sub(cPi, c0)) + rho0 + rhoPi
	// The basal turn opens into the vestibule (the labyrinth is one space).
	hook, _ := at(0.35)
	L.tubes = append(L.tubes, tube{a: hook, b: scale(vs, 0) /*centre*/, ra: 0.75 * s, rb: 0.9 * s, lab: LabelVestibule})
	L.tubes[len(L.tubes)-1].b = vec3{0.35 * vs[0], 0.25 * vs[1], -0.55 * vs[2]}

	// Semicircular canals, each an arc through three points; the superior
	// and posterior canals meet in the common crus.
	lum := P.CanalLumenMM
	cc := add(scale(vec3{-1.0, -2.2, 3.0}, s), d.jit3(0.15))
	ccBase := vec3{-0.35 * vs[0], -0.55 * vs[1], 0.5 * vs[2]}
	L.tubes = append(L.tubes, tube{a: cc, b: ccBase, ra: lum * 1.15, rb: lum * 1.3, lab: LabelCanals})

	aS := add(scale(vec3{1.6, 0.6, 1.3}, s), d.jit3(0.1))
	aP := add(scale(vec3{-0.4, -3.0, -1.6}, s), d.jit3(0.1))
	aL := add(scale(vec3{1.9, 0.9, 0.45}, s), d.jit3(0.1))
	// The lateral canal is built in the labyrinth's horizontal plane; the
	// whole labyrinth is then pitched by the canal's tilt (anterior end up),
	// which keeps the three canal planes near-orthogonal.
	tilt := d.jit(4) * math.Pi / 180
	bLv := -2.6 * s
	bL := vec3{0.8 * s, bLv, aL[2] + math.Tan(tilt)*(bLv-aL[1])}
	nS := unit(vec3{-1, 1, 0})
	nP := unit(vec3{1, 1, 0})
	nL := vec3{0, -math.Sin(tilt), math.Cos(tilt)}
	var planes [3]vec3
	planes[0] = L.arc(aS, cc, nS, vec3{0, 0, 1}, P.CanalRadiusMM[0], lum)
	planes[1] = L.arc(cc, aP, nP, unit(vec3{1, -1, -0.3}), P.CanalRadiusMM[1], lum)
	planes[2] = L.arc(aL, bL, nL, unit(vec3{0.8, -1, 0}), P.CanalRadiusMM[2], lum)
	ang := func(a, b vec3) float64 { return math.Acos(math.Abs(dot(a, b))) * 180 / math.Pi }
	P.CanalPlaneAngles = [3]float64{ang(planes[0], planes[1]), ang(planes[0], planes[2]), ang(planes[1], planes[2])}
	// Ampullae and their short ducts into the vestibule.
	inside := func(f vec3) vec3 { return vec3{f[0] * vs[0], f[1] * vs[1], f[2] * vs[2]} }
	for _, a := range []struct{ at, to vec3 }{
		{aS, inside(vec3{0.4, 0.3, 0.55})},
		{aL, inside(vec3{0.55, 0.25, 0.2})},
		{aP, inside(vec3{-0.1, -0.65, -0.5})},
	} {
		ar := P.AmpullaRadiusMM
		L.tubes = append(L.tubes, tube{a: a.at, b: a.at, ra: ar, rb: ar, lab: LabelCanals})
		L.tubes = append(L.tubes, tube{a: a.at, b: a.to, ra: 0.7 * ar, rb: 0.8 * ar, lab: LabelCanals})
	}
	L.tubes = append(L.tubes, tube{a: bL, b: inside(vec3{0.3, -0.7, -0.3}), ra: lum, rb: lum * 1.2, lab: LabelCanals})

	// Internal auditory canal fundus: medial to the cochlear base.
	L.fundus = add(base, scale(axis, -1.6))
	L.all = newAccel(L.tubes)
	// Everything the rest of the package reads is kept in the ear frame.
	back := L.rot.t()
	for i := range L.lm {
		L.lm[i] = back.mul(L.lm[i])
	}
	L.owN, L.rwN = back.mul(L.owN), back.mul(L.rwN)
	L.axis, L.base, L.fundus = back.mul(L.axis), back.mul(L.base), back.mul(L.fundus)
	return L
}

func sq(x float64) float64 { return x * x }

// arc appends a canal: the major arc of the circle of radius R from a to b
// bulging towards dir, in the plane through a and b closest to normal n. It
// returns the plane's actual normal.
func (L *labyrinth) arc(a, b, n, dir vec3, R, lum float64) vec3 {
	chord := sub(b, a)
	c := norm(chord)
	if c > 1.9*R {
		R = c / 1.9
	}
	ch := scale(chord, 1/c)
	bul := cross(n, ch)
	if dot(bul, dir) < 0 {
		bul = scale(bul, -1)
	}
	bul = perp(bul, ch)
	m := scale(add(a, b), 0.5)
	dd := R + math.Sqrt(R*R-c*c/4)
	centre := add(m, scale(bul, dd-R))
	x := unit(sub(a, centre))
	y := perp(bul, x)
	// Angle of b measured from a towards the bulge, going the long way.
	xb := unit(sub(b, centre))
	phiB := math.Atan2(dot(xb, y), dot(xb, x))
	if phiB < 0 {
		phiB += 2 * math.Pi
	}
	nseg := int(math.Ceil(phiB * R / 0.4))
	prev := a
	for i := 1; i <= nseg; i++ {
		phi := phiB * float64(i) / float64(nseg)
		p := add(centre, add(scale(x, R*math.Cos(phi)), scale(y, R*math.Sin(phi))))
		L.tubes = append(L.tubes, tube{a: prev, b: p, ra: lum, rb: lum, lab: LabelCanals})
		prev = p
	}
	return unit(cross(x, y))
}

// sdf is the signed distance (mm, negative inside) to the fluid space and
// the label of the nearest structure. Beyond reach it is only a lower bound.
func (L *labyrinth) sdf(p vec3) (float64, uint8) {
	p = L.rot.mul(p)
	d, lab := L.all.dist(p)
	for i := range L.blobs {
		b := &L.blobs[i]
		// An ellipsoid is no nearer than its centre minus its longest axis.
		if norm(sub(p, b.c))-math.Max(b.r[0], math.Max(b.r[1], b.r[2])) >= d {
			continue
		}
		if bd := b.sdf(p); bd < d {
			d, lab = bd, b.lab
		}
	}
	return d, lab
}
