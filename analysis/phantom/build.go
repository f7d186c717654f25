package phantom

import "math"

// earPlacement is where an ear sits in the head frame (LPS-aligned, origin
// midway between the vestibules) and how it is mirrored.
type earPlacement struct {
	side string // "R" or "L"
	o    vec3   // vestibule centre, head frame
	m    mat3   // head frame → ear frame (u lateral, v anterior, w superior)
}

func placeEar(side string, half float64, jitter mat3) earPlacement {
	// Right ear: lateral is patient right (−x); left ear: +x.
	sx := -1.0
	if side == "L" {
		sx = 1
	}
	base := mat3{{sx, 0, 0}, {0, -1, 0}, {0, 0, 1}}
	return earPlacement{side: side, o: vec3{sx * half, 0, 0}, m: jitter.mulM(base)}
}

// lesionSpec describes the otosclerotic foci of an ear.
type lesionSpec struct {
	fenestral, cochlear bool
	radius              float64 // fenestral focus radius, mm
	ringWidth           float64 // pericochlear band width, mm
	ringOffset          float64 // distance of the band's inner edge from the cochlear lumen
}

// surroundings holds the drawn sizes of the temporal bone around the
// labyrinth, recorded in case.json.
type Surroundings struct {
	Pneumatisation   float64 `json:"mastoid_pneumatisation"`
	AirCellMM        float64 `json:"air_cell_size_mm"`
	SeptumMM         float64 `json:"air_cell_septum_mm"`
	TympanicCavityMM float64 `json:"tympanic_cavity_width_mm"`
	IACRadiusMM      float64 `json:"iac_radius_mm"`
	EACRadiusMM      float64 `json:"eac_radius_mm"`
}

// earLayers returns the layers of one ear in priority order, the fluid
// layer first. frame is the scene frame index of this ear.
func earLayers(L *labyrinth, S *Surroundings, les lesionSpec, frame, ear int, cellSeed uint64, d *draws) []layer {
	s := L.P.Scale
	ow, rw := L.lm[1], L.lm[2]
	tcap := L.P.CapsuleMM
	var ls []layer
	add1 := func(t Tissue, name string, f func(vec3) float64) {
		ls = append(ls, layer{t: t, frame: frame, f: f, ear: ear, name: name})
	}
	dlab := func(c *pt) float64 { d, _ := c.lab(ear); return d }
	addL := func(t Tissue, name string, f func(q vec3, c *pt) float64) {
		ls = append(ls, layer{t: t, frame: frame, fl: f, ear: ear, name: name})
	}
	ls = append(ls, layer{t: TFluid, frame: frame, fluid: L, ear: ear, name: "labyrinth"})

	// Ossicles and the stapes footplate in the oval window.
	owN := L.owN
	tm := S.TympanicCavityMM
	o := func(du, dv, dw float64) vec3 { return add(ow, vec3{du, dv, dw}) }
	stapesHead := add(ow, scale(owN, 0.55*tm+0.3))
	add1(TOssicle, "stapes", unionF(
		discF(add(ow, scale(owN, 0.12)), rotRows(owN, vec3{0, 1, 0}), 0.11, 1.25*s, 0.6*s),
		tubeF(add(ow, scale(owN, 0.2)), stapesHead, 0.22, 0.18),
	))
	add1(TOssicle, "incus_malleus", unionF(
		ellF(o(0.5*tm+0.5, -1.3, 4.2), vec3{0.9, 1.3, 1.1}, ident3),
		tubeF(o(0.5*tm+0.5, -1.5, 3.3), stapesHead, 0.3, 0.25),
		ellF(o(0.5*tm+1.1, 0.9, 4.4), vec3{0.9, 1.1, 1.4}, ident3),
		tubeF(o(0.5*tm+1.4, 1.2, 3.2), o(tm+0.6, 1.5, -1.8), 0.32, 0.25),
	))
	// Windows: the niches lead from each window to the tympanic cavity.
	add1(TSoft, "tympanic_membrane", discF(o(tm+0.95, 1, -1), rotRows(vec3{1, 0, 0.25}, vec3{0, 1, 0}), 0.07, 4.2, 4.2))
	add1(TAir, "window_niches", unionF(
		tubeF(add(ow, scale(owN, 0.02)), add(ow, scale(owN, 2.5)), 0.8*s, 0.9*s),
		tubeF(add(rw, scale(L.rwN, 0.02)), add(rw, scale(L.rwN, 2.5)), 0.65*s, 0.8*s),
	))
	// Cochlear nerve from the IAC fundus into the modiolus; the IAC.
	iacDir := unit(vec3{-1, 0.12, 0.05})
	add1(TNerve, "cochlear_nerve", tubeF(add(L.fundus, scale(iacDir, 1.0)), add(L.base, scale(L.axis, 1.2)), 0.75, 0.3))
	add1(TCSF, "internal_auditory_canal", tubeF(L.fundus, add(L.fundus, scale(iacDir, 14)), S.IACRadiusMM, S.IACRadiusMM+0.3))

	// Otosclerosis (inside the capsule only).
	if les.fenestral {
		c := add(add(ow, scale(vec3{0, 1, 0}, 1.0+0.6*les.radius)), scale(owN, 0.3))
		addL(TLesion, "fenestral_focus", func(q vec3, cp *pt) float64 {
			dl := dlab(cp)
			return math.Max(norm(sub(q, c))-les.radius, math.Max(dl-tcap, -dl))
		})
	}
	if les.cochlear {
		mid := les.ringOffset + les.ringWidth/2
		coch := newAccel(L.tubes[:L.nCoch])
		addL(TLesion, "pericochlear_ring", func(q vec3, cp *pt) float64 {
			dl := dlab(cp)
			if e := math.Max(dl-tcap, -dl); e > 0 {
				return e
			}
			dc, _ := coch.dist(L.rot.mul(q))
			return math.Max(math.Abs(dc-mid)-les.ringWidth/2, math.Max(dl-tcap, -dl))
		})
	}
	addL(TCapsule, "otic_capsule", func(q vec3, cp *pt) float64 { return dlab(cp) - tcap })

	// Middle ear, EAC, antrum.
	add1(TAir, "middle_ear", unionF(
		ellF(o(0.5*tm+1.3, 0.8, -0.5), vec3{0.5*tm + 0.35, 5.5 * s, 6.0 * s}, ident3),
		ellF(o(0.5*tm+1.2, -0.4, 4.3), vec3{0.5*tm + 0.6, 3.6 * s, 2.3 * s}, ident3),
		tubeF(o(tm+1.0, 1, -1), o(40, 3, 1), S.EACRadiusMM, S.EACRadiusMM+0.8),
		tubeF(o(0.5*tm+1.2, -3.0, 4.5), o(0.5*tm+1.6, -8, 3.5), 1.3, 1.5),
		ellF(o(0.5*tm+2.0, -10.5, 3), vec3{3, 3, 2.6}, ident3),
	))
	// Vessels.
	add1(TBlood, "vessels", unionF(
		tubeF(vec3{-2, 8.5, -16}, vec3{-3, 9, -6}, 2.5, 2.6),
		tubeF(vec3{-3, 9, -6}, vec3{-14, 17, -5}, 2.6, 2.6),
		ellF(vec3{-3, -3.5, -11}, vec3{4, 5, 4}, ident3),
		tubeF(vec3{-6, -17, 9}, vec3{-4, -9, -9}, 3.6, 3.8),
	))
	// Mandibular condyle in front of the EAC.
	cond := o(4, 13, -9)
	add1(TCortical, "condyle_cortex", shellF(cond, vec3{5, 4.5, 7}, 0.9))
	add1(TMarrow, "condyle", ellF(cond, vec3{5, 4.5, 7}, ident3))

	// Mastoid: air cells (a Voronoi foam) inside the pneumatised region,
	// kept clear of the capsule.
	pn := S.Pneumatisation
	// The pneumatised region: mastoid process, antrum surroundings and a
	// tegmental extension, so its outline is not one ellipsoid.
	region := unionF(
		ellF(vec3{4, -11, -5}, vec3{8.5 * pn, 9 * pn, 12 * pn}, ident3),
		ellF(add(o(0.5*tm+2.0, -10.5, 3), vec3{-1, -1, 0}), vec3{6 * pn, 6 * pn, 5 * pn}, ident3),
		ellF(vec3{3, -6, 7}, vec3{5 * pn, 7 * pn, 3.5 * pn}, ident3),
	)
	cell := S.AirCellMM
	sept := S.SeptumMM
	addL(TAir, "air_cells", func(q vec3, cp *pt) float64 {
		r := region(q)
		if r > 2*cell {
			return r // far outside: skip the foam and the labyrinth
		}
		if nq := sub(q, L.base); dot(nq, nq) < sq(reach+12) {
			r = math.Max(r, tcap+0.8-dlab(cp))
		}
		// Cells grow larger away from the capsule (towards the tip).
		f1, f2 := voronoi(q, cell, cellSeed)
		return math.Max(r, (sept-(f2-f1))/2)
	})
	add1(TSeptum, "mastoid", region)
	// Petrous pyramid and the body of the temporal bone.
	add1(TPetrous, "petrous", unionF(
		tubeF(vec3{-1, -1, 0}, vec3{-28, 19, -2}, 12, 6),
		ellF(vec3{5, -6, -1}, vec3{22, 21, 15}, ident3),
		ellF(vec3{12, -2, 8}, vec3{9, 20, 14}, ident3),
	))
	_ = d
	return ls
}

// voronoi returns the distances to the nearest and second-nearest feature
// points of a jittered grid of cell size h (Worley's cellular noise).
func voronoi(q vec3, h float64, seed uint64) (float64, float64) {
	fx, fy, fz := q[0]/h, q[1]/h, q[2]/h
	ix, iy, iz := int64(math.Floor(fx)), int64(math.Floor(fy)), int64(math.Floor(fz))
	f1, f2 := math.Inf(1), math.Inf(1)
	for dz := int64(-1); dz <= 1; dz++ {
		for dy := int64(-1); dy <= 1; dy++ {
			for dx := int64(-1); dx <= 1; dx++ {
				cx, cy, cz := ix+dx, iy+dy, iz+dz
				k := hash64(seed ^ uint64(cx)*0x8da6b343 ^ uint64(cy)*0xd8163841 ^ uint64(cz)*0xcb1ab31f)
				px := float64(cx) + 0.1 + 0.8*float64(k&0xffff)/65535
				py := float64(cy) + 0.1 + 0.8*float64((k>>16)&0xffff)/65535
				pz := float64(cz) + 0.1 + 0.8*float64((k>>32)&0xffff)/65535
				ddx, ddy, ddz := px-fx, py-fy, pz-fz
				d2 := ddx*ddx + ddy*ddy + ddz*ddz
				if d2 < f1 {
					f2, f1 = f1, d2
				} else if d2 < f2 {
					f2 = d2
				}
			}
		}
	}
	return math.Sqrt(f1) * h, math.Sqrt(f2) * h
}

// headLayers are the layers of the head in the head frame: air outside,
// scalp, skull, brain above the skull base; soft tissue elsewhere.
func headLayers(ears []earPlacement) []layer {
	c := vec3{0, 5, 25}
	skin := vec3{75, 95, 100}
	skull := vec3{69, 89, 94}
	var ls []layer
	ls = append(ls, layer{t: TAir, name: "outside", f: func(q vec3) float64 {
		d := -ellipsoidSDF(sub(q, c), skin)
		// The auricles stand off the head beside each ear.
		for _, e := range ears {
			a := e.m.mul(sub(q, e.o))
			d = math.Max(d, -ellipsoidSDF(sub(a, vec3{37, -6, 4}), vec3{4, 13, 27}))
		}
		return d
	}})
	ls = append(ls, layer{t: TCortical, name: "skull", f: func(q vec3) float64 {
		d := sub(q, c)
		return math.Max(ellipsoidSDF(d, skull), -ellipsoidSDF(d, sub(skull, vec3{6, 6, 6})))
	}})
	ls = append(ls, layer{t: TBrain, name: "brain", f: func(q vec3) float64 {
		return math.Max(ellipsoidSDF(sub(q, c), sub(skull, vec3{6, 6, 6})), -12-q[2])
	}})
	return ls
}
