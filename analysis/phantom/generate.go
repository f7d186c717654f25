package phantom

import (
	"context"
	"fmt"
	"math"

	"github.com/otonode/otonode/analysis/volume"
)

// Generator names this generator and its model version in case.json.
const Generator = "otonode-phantom/1"

// Options tune how a case is made without changing what it shows.
type Options struct {
	Workers       int  // 0: all cores
	NoSupersample bool // skip partial-volume supersampling (faster, blockier)

	onScene func(*scene, volume.Grid) // tests: see the scene before rendering
	fullRes bool                      // tests: no half-resolution far field
}

// Case is one generated CT with its ground truth.
type Case struct {
	CT    *volume.Volume[int16] // HU, rounded, within the 12-bit stored range
	Label *volume.Volume[uint8] // 0 background, 1 cochlea, 2 vestibule, 3 canals
	Info  Info
}

// Info is everything case.json records.
type Info struct {
	Format    string        `json:"format"`
	Generator string        `json:"generator"`
	Seed      uint64        `json:"seed"`
	Variant   Variant       `json:"variant"`
	Tokens    string        `json:"variant_tokens"`
	Negative  string        `json:"negative_reason,omitempty"`
	Specimen  bool          `json:"specimen"`
	Grid      GridInfo      `json:"grid"`
	Imaging   Imaging       `json:"imaging"`
	Ears      []EarInfo     `json:"ears"`
	Lesion    *LesionInfo   `json:"lesion,omitempty"`
	Tissues   []TissueInfo  `json:"tissues"`
	HeadPose  [3][4]float64 `json:"patient_to_head"`
	Identity  Identity      `json:"identity"`
	// FineRegion lists the index boxes rendered at full resolution when the
	// far field was rendered at half resolution (large grids); tissue voxel
	// counts then cover these boxes only.
	FineRegion []volume.Box `json:"fine_region,omitempty"`
}

// GridInfo is the geometry of the CT and label volumes.
type GridInfo struct {
	Size      [3]int        `json:"size"`
	SpacingMM [3]float64    `json:"spacing_mm"`
	Affine    volume.Affine `json:"affine_lps"` // voxel index → patient mm (LPS), rows x,y,z
}

// Landmark is one ground-truth point.
type Landmark struct {
	PatientMM [3]float64 `json:"patient_mm"`
	Voxel     [3]float64 `json:"voxel"` // continuous index (i, j, k); voxel centres are integers
	InFOV     bool       `json:"in_fov"`
	// Normal is the unit direction from the window into the middle ear
	// (windows only).
	Normal *[3]float64 `json:"outward_normal,omitempty"`
}

// EarInfo is the ground truth of one labelled ear.
type EarInfo struct {
	Laterality        string              `json:"laterality"`
	Landmarks         map[string]Landmark `json:"landmarks"`
	VolumeMM3         float64             `json:"volume_mm3"` // labelled voxels × voxel volume
	LabelVoxels       int64               `json:"label_voxels"`
	StructureMM3      map[string]float64  `json:"structure_volume_mm3"`
	ModelVolumeMM3    float64             `json:"model_volume_mm3"` // of the continuous model
	ModiolarAxis      [3]float64          `json:"modiolar_axis_patient"`
	CochlearBaseMM    [3]float64          `json:"cochlear_base_patient_mm"`
	VestibuleMM       [3]float64          `json:"vestibule_centre_patient_mm"`
	Anatomy           LabyrinthParams     `json:"anatomy"`
	Surroundings      Surroundings        `json:"surroundings"`
	LabyrinthCutByFOV bool                `json:"labyrinth_cut_by_fov"`
}

// LesionInfo records the otosclerosis-like lesions and their severity.
type LesionInfo struct {
	Kind          string  `json:"kind"` // fenestral, cochlear, both
	Level         string  `json:"level"`
	Severity      float64 `json:"severity"` // 0..1, the number to plot results against
	HUDrop        float64 `json:"hu_drop"`
	CapsuleHU     float64 `json:"capsule_hu"`
	LesionHU      float64 `json:"lesion_hu"`
	FocusRadiusMM float64 `json:"fenestral_radius_mm,omitempty"`
	RingWidthMM   float64 `json:"pericochlear_ring_width_mm,omitempty"`
	VolumeMM3     float64 `json:"volume_mm3"`
}

// TissueInfo lists the HU used and how much of each tissue the grid holds.
type TissueInfo struct {
	Name   string  `json:"name"`
	HU     float64 `json:"hu"`
	Voxels int64   `json:"voxels"`
}

// Identity is the synthetic patient and the DICOM UIDs, all derived from
// the seed and variant.
type Identity struct {
	PatientName      string `json:"patient_name"`
	PatientID        string `json:"patient_id"`
	PatientBirthDate string `json:"patient_birth_date"`
	PatientSex       string `json:"patient_sex"`
	StudyDate        string `json:"study_date"`
	StudyTime        string `json:"study_time"`
	AccessionNumber  string `json:"accession_number"`
	StudyInstanceUID string `json:"study_instance_uid"`
	SeriesUID        string `json:"series_instance_uid"`
	FrameOfRefUID    string `json:"frame_of_reference_uid"`
}

// severityTable gives the numbers behind the named levels.
var severityTable = map[string]struct{ sev, drop, radius, ring float64 }{
	"mild":     {0.25, 450, 0.8, 0.35},
	"moderate": {0.55, 850, 1.25, 0.55},
	"severe":   {0.9, 1250, 1.75, 0.8},
}

// Generate makes the case of a seed and variant. The result depends only
// on (seed, variant): the number of workers does not change a byte.
func Generate(ctx context.Context, seed uint64, v Variant, opt Options) (*Case, error) {
	if err := v.normalise(); err != nil {
		return nil, err
	}
	switch v.Negative {
	case "body":
		return generateBody(ctx, seed, v, opt)
	case "localizer":
		return generateLocalizer(ctx, seed, v, opt)
	case "", "thickslice", "ossified":
	default:
		return nil, fmt.Errorf("%w: negative %q", ErrVariant, v.Negative)
	}
	img := newDraws(seed, 3)
	pd := newDraws(seed, 4)
	sides := []string{"R", "L"}
	main := v.Side
	if main == "" {
		main = sides[pd.intn(2)]
	}
	specimen := v.Negative == "" && !v.Bilateral && (v.Rotation == "arbitrary" || v.Contrast != "fluid" || v.Scanner == MicroCT)

	// Anatomy: the right ear from stream 1, the left from stream 2, so an
	// ear's shape depends only on the seed.
	half := newDraws(seed, 9).uni(38, 44)
	var ears []earPlacement
	var labs []*labyrinth
	var surr []Surroundings
	mainIdx := 0
	if main == "L" {
		mainIdx = 1
	}
	both := v.Bilateral || v.Negative == "thickslice"
	for e, side := range sides {
		ad := newDraws(seed, uint64(1+e))
		var L *labyrinth
		if e == mainIdx || both {
			L = newLabyrinth(ad)
		} else {
			// The far ear lies outside a one-ear field of view: only its
			// placement is needed (the auricle of the head outline).
			L = &labyrinth{P: LabyrinthParams{OrientationJitter: 6}}
		}
		S := Surroundings{
			Pneumatisation:   ad.uni(0.65, 1.2),
			AirCellMM:        ad.uni(1.8, 3.4),
			SeptumMM:         ad.uni(0.18, 0.34),
			TympanicCavityMM: ad.uni(2.4, 3.4),
			IACRadiusMM:      ad.uni(1.9, 2.4),
			EACRadiusMM:      ad.uni(3.2, 4.2),
		}
		j := L.P.OrientationJitter * math.Pi / 180
		jit := rotAxis(ad.unitVec(), ad.jit(j))
		ears = append(ears, placeEar(side, half, jit))
		labs = append(labs, L)
		surr = append(surr, S)
	}

	// Lesions on the main ear (both ears for a bilateral case).
	var les lesionSpec
	var lesInfo *LesionInfo
	if v.Lesion != "" {
		st, ok := severityTable[v.Severity]
		if !ok {
			return nil, fmt.Errorf("%w: severity %q", ErrVariant, v.Severity)
		}
		ld := newDraws(seed, 5)
		f := ld.uni(0.9, 1.1)
		les = lesionSpec{
			fenestral:  v.Lesion == "fenestral" || v.Lesion == "both",
			cochlear:   v.Lesion == "cochlear" || v.Lesion == "both",
			radius:     st.radius * f,
			ringWidth:  st.ring * f,
			ringOffset: ld.uni(0.25, 0.45),
		}
		lesInfo = &LesionInfo{Kind: v.Lesion, Level: v.Severity, Severity: st.sev, HUDrop: math.Round(st.drop * ld.uni(0.9, 1.1))}
		if les.fenestral {
			lesInfo.FocusRadiusMM = les.radius
		}
		if les.cochlear {
			lesInfo.RingWidthMM = les.ringWidth
		}
	}

	sc := &scene{bg: TSoft, safety: 1.5}
	for e := range ears {
		sc.ears = append(sc.ears, pose{m: ears[e].m, o: ears[e].o})
	}
	sc.labs = labs
	if specimen {
		sd := newDraws(seed, 6)
		box := roundBoxF(vec3{2, -3, 0}, vec3{sd.uni(14, 18), sd.uni(16, 20), sd.uni(12, 16)}, ident3, 3)
		surround := TAir
		if v.Contrast == "formalin" {
			surround = TWater
		}
		sc.layers = append(sc.layers, layer{t: surround, frame: 1 + mainIdx, name: "specimen_surround", f: func(q vec3) float64 { return -box(q) }})
	}
	for e := range ears {
		if e != mainIdx && !both {
			continue
		}
		var l lesionSpec
		if e == mainIdx || v.Bilateral {
			l = les
		}
		sc.layers = append(sc.layers, earLayers(labs[e], &surr[e], l, 1+e, e, hash64(seed^uint64(77+e)), img)...)
	}
	sc.layers = append(sc.layers, headLayers(ears)...)

	// Head pose in the scanner.
	var R mat3
	if v.Rotation == "arbitrary" {
		R = pd.rotation()
	} else {
		R = rotAxis(vec3{1, 0, 0}, pd.jit(5*math.Pi/180)).mulM(rotAxis(vec3{0, 0, 1}, pd.jit(4*math.Pi/180))).mulM(rotAxis(vec3{0, 1, 0}, pd.jit(3*math.Pi/180)))
	}
	headOrigin := vec3{pd.jit(5), 20 + pd.jit(5), -60 + pd.jit(10)}
	sc.toHead = pose{m: R, o: headOrigin}
	toPatient := func(h vec3) vec3 { return add(R.t().mul(h), headOrigin) }
	earToPatient := func(e int, q vec3) vec3 { return toPatient(add(ears[e].m.t().mul(q), ears[e].o)) }

	// Grid.
	sp, size, thick := scannerGrid(v, img)
	var centre vec3
	switch {
	case v.Bilateral || v.Negative == "thickslice":
		centre = add(toPatient(vec3{0, 0, 0}), vec3{img.jit(4), img.jit(4), img.jit(3)})
	default:
		L := labs[mainIdx]
		mid := scale(add(add(L.lm[0], L.lm[1]), scale(L.lm[2], 0)), 0.5)
		centre = add(earToPatient(mainIdx, mid), vec3{img.jit(2), img.jit(2), img.jit(2)})
	}
	if v.FOVCut {
		ax := img.intn(3)
		sgn := float64(1 - 2*img.intn(2))
		centre[ax] += sgn * (float64(size[ax])*sp[ax]/2 - img.uni(-1.5, 1.5))
	}
	origin := vec3{}
	for c := 0; c < 3; c++ {
		origin[c] = centre[c] - float64(size[c]-1)/2*sp[c]
	}
	g := volume.Grid{Size: size, Affine: volume.NewAffine([3]float64{1, 0, 0}, [3]float64{0, 1, 0}, [3]float64{0, 0, 1}, sp, origin)}

	// Tissue table.
	hu := clinicalHU()
	if v.DomainRandomisation {
		hu = randomHU(img)
	}
	applyContrast(&hu, v.Contrast, img)
	if specimen {
		hu[TBrain] = hu[TAir]
	}
	if v.Negative == "ossified" {
		// Labyrinthitis ossificans (or a labyrinth that never formed): new
		// bone, a little less dense than the capsule, where the fluid was.
		// A stream of its own, so no other variant's bytes change.
		hu[TFluid] = hu[TCapsule] - float32(newDraws(seed, 7).uni(150, 450))
	}
	if lesInfo != nil {
		hu[TLesion] = hu[TCapsule] - float32(lesInfo.HUDrop)
		lesInfo.CapsuleHU = float64(hu[TCapsule])
		lesInfo.LesionHU = float64(hu[TLesion])
	}
	imaging := drawImaging(v, img, sp, thick)

	if opt.onScene != nil {
		opt.onScene(sc, g)
	}
	var near []volume.Box
	for e := range ears {
		if e != mainIdx && !both {
			continue
		}
		if b, ok := nearBox(labs[e], func(q vec3) vec3 { return earToPatient(e, q) }, g); ok {
			near = append(near, b)
		}
	}
	if len(near) == 2 && overlap(near[0], near[1]) {
		near = []volume.Box{union(near[0], near[1])}
	}
	if opt.fullRes {
		near = nil
	}
	r, coarse, err := renderAdaptive(ctx, sc, g, hu, !opt.NoSupersample, opt.Workers, near)
	if err != nil {
		return nil, err
	}
	ct, err := applyPhysics(ctx, r.hu, g, imaging, seed, opt.Workers)
	if err != nil {
		return nil, err
	}
	c := &Case{CT: ct, Label: &volume.Volume[uint8]{Grid: g, Data: r.lab}}
	vox := sp[0] * sp[1] * sp[2]
	inv, err := g.Affine.Inverse()
	if err != nil {
		return nil, err
	}
	info := Info{
		Format: "otonode-case/1", Generator: Generator, Seed: seed, Variant: v, Tokens: v.String(),
		Specimen: specimen,
		Grid:     GridInfo{Size: size, SpacingMM: sp, Affine: g.Affine},
		Imaging:  imaging,
		Lesion:   lesInfo,
		Ears:     []EarInfo{},
		HeadPose: [3][4]float64{{R[0][0], R[0][1], R[0][2], 0}, {R[1][0], R[1][1], R[1][2], 0}, {R[2][0], R[2][1], R[2][2], 0}},
		Identity: identity(seed, v),
	}
	for rr := 0; rr < 3; rr++ {
		info.HeadPose[rr][3] = -dot(R[rr], headOrigin)
	}
	for t := Tissue(0); t < nTissue; t++ {
		info.Tissues = append(info.Tissues, TissueInfo{Name: t.String(), HU: float64(hu[t]), Voxels: r.tissue[t]})
	}
	if coarse {
		info.FineRegion = near
	}
	if lesInfo != nil {
		lesInfo.VolumeMM3 = float64(r.tissue[TLesion]) * vox
	}
	if v.Negative != "" {
		info.Negative = "thick-slice head CT: the inner ear is not resolvable at this slice thickness"
		if v.Negative == "ossified" {
			info.Negative = "ossified labyrinth: the fluid space is filled with bone, so there is no inner-ear fluid space to segment"
		}
		for i := range c.Label.Data {
			c.Label.Data[i] = 0
		}
		c.Info = info
		return c, nil
	}
	earIdx := []int{mainIdx}
	if v.Bilateral {
		earIdx = []int{0, 1}
	}
	for _, e := range earIdx {
		L := labs[e]
		ei := EarInfo{
			Laterality: ears[e].side, Landmarks: map[string]Landmark{},
			StructureMM3: map[string]float64{
				"cochlea":             float64(r.earVoxel[e][LabelCochlea]) * vox,
				"vestibule":           float64(r.earVoxel[e][LabelVestibule]) * vox,
				"semicircular_canals": float64(r.earVoxel[e][LabelCanals]) * vox,
			},
			ModelVolumeMM3: L.volume(), Anatomy: L.P, Surroundings: surr[e],
			CochlearBaseMM: earToPatient(e, L.base), VestibuleMM: earToPatient(e, vec3{}),
		}
		ax := sub(earToPatient(e, L.axis), earToPatient(e, vec3{}))
		ei.ModiolarAxis = unit(ax)
		for l := 1; l < 4; l++ {
			ei.LabelVoxels += r.earVoxel[e][l]
		}
		ei.VolumeMM3 = float64(ei.LabelVoxels) * vox
		for li, name := range LandmarkNames {
			p := earToPatient(e, L.lm[li])
			ijk := inv.Apply(p)
			in := true
			for cc := 0; cc < 3; cc++ {
				in = in && ijk[cc] >= -0.5 && ijk[cc] <= float64(size[cc])-0.5
			}
			lm := Landmark{PatientMM: p, Voxel: ijk, InFOV: in}
			if li > 0 {
				nrm := [2]vec3{L.owN, L.rwN}[li-1]
				n := unit(sub(earToPatient(e, nrm), earToPatient(e, vec3{})))
				lm.Normal = &n
			}
			ei.Landmarks[name] = lm
		}
		ei.LabyrinthCutByFOV = ei.VolumeMM3 < 0.97*ei.ModelVolumeMM3
		info.Ears = append(info.Ears, ei)
	}
	c.Info = info
	return c, nil
}

// scannerGrid draws the voxel size, grid size and slice thickness.
func scannerGrid(v Variant, d *draws) ([3]float64, [3]int, float64) {
	var sp [3]float64
	var fov [3]float64
	switch {
	case v.Negative == "thickslice":
		s := d.uni(0.4, 0.5)
		sp = [3]float64{s, s, 5}
		fov = [3]float64{512 * s, 512 * s, 120}
	case v.Bilateral:
		s := d.uni(0.35, 0.45)
		sp = [3]float64{s, s, d.uni(0.4, 0.6)}
		fov = [3]float64{512 * s, 512 * s, 60}
	case v.Scanner == FlatPanel:
		sp = [3]float64{0.099, 0.099, 0.099}
		fov = [3]float64{512 * 0.099, 512 * 0.099, 400 * 0.099}
	case v.Scanner == ConeBeam:
		s := d.uni(0.125, 0.3)
		sp = [3]float64{s, s, s}
		fov = [3]float64{60, 60, 50}
	case v.Scanner == MultiSlice:
		s := d.uni(0.15, 0.4)
		sp = [3]float64{s, s, d.uni(0.2, 0.6)}
		fov = [3]float64{80, 80, 40}
	case v.Scanner == MicroCT:
		s := d.uni(0.02, 0.035)
		sp = [3]float64{s, s, s}
		fov = [3]float64{480 * s, 480 * s, 480 * s}
	}
	for c := 0; c < 3; c++ {
		if v.SpacingMM[c] > 0 {
			sp[c] = v.SpacingMM[c]
		}
	}
	var size [3]int
	for c := 0; c < 3; c++ {
		size[c] = v.Size[c]
		if size[c] == 0 {
			size[c] = min(512, int(math.Round(fov[c]/sp[c])))
		}
	}
	thick := sp[2]
	if v.Scanner == MultiSlice || v.Bilateral {
		thick = sp[2] * d.uni(1, 1.5)
	}
	return sp, size, thick
}

// volume estimates the model's fluid volume by sampling a fine lattice.
func (L *labyrinth) volume() float64 {
	lo := vec3{math.Inf(1), math.Inf(1), math.Inf(1)}
	hi := scale(lo, -1)
	grow := func(p vec3, r float64) {
		for c := 0; c < 3; c++ {
			lo[c] = math.Min(lo[c], p[c]-r)
			hi[c] = math.Max(hi[c], p[c]+r)
		}
	}
	for _, t := range L.tubes {
		grow(t.a, t.ra)
		grow(t.b, t.rb)
	}
	for _, b := range L.blobs {
		grow(b.c, math.Max(b.r[0], math.Max(b.r[1], b.r[2])))
	}
	// Coarse cells decide inside/outside where they can; only cells near
	// the surface are sampled on the fine lattice.
	back := L.rot.t()
	in := func(p vec3) float64 { d, _ := L.sdf(back.mul(p)); return d }
	const h, m = 0.16, 3
	const H = h * m
	vol := 0.0
	hd := H * math.Sqrt(3) / 2 * 1.5
	for z := lo[2]; z <= hi[2]; z += H {
		for y := lo[1]; y <= hi[1]; y += H {
			for x := lo[0]; x <= hi[0]; x += H {
				d := in(vec3{x + H/2, y + H/2, z + H/2})
				switch {
				case d > hd:
				case d < -hd:
					vol += H * H * H
				default:
					for k := 0; k < m; k++ {
						for j := 0; j < m; j++ {
							for i := 0; i < m; i++ {
								p := vec3{x + (float64(i)+0.5)*h, y + (float64(j)+0.5)*h, z + (float64(k)+0.5)*h}
								// A box filter across the locally flat surface.
								vol += clamp(0.5-in(p)/h, 0, 1) * h * h * h
							}
						}
					}
				}
			}
		}
	}
	return vol
}

func overlap(a, b volume.Box) bool { return !a.Intersect(b).Empty() }

func union(a, b volume.Box) volume.Box {
	var u volume.Box
	for c := 0; c < 3; c++ {
		u.Min[c], u.Max[c] = min(a.Min[c], b.Min[c]), max(a.Max[c], b.Max[c])
	}
	return u
}
