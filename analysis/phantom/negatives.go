package phantom

import (
	"context"
	"math"

	"github.com/otonode/otonode/analysis/volume"
)

// generateBody makes an abdominal CT: a plausible series with no inner ear.
func generateBody(ctx context.Context, seed uint64, v Variant, opt Options) (*Case, error) {
	d := newDraws(seed, 3)
	sc := &scene{bg: TSoft, safety: 1.5, toHead: pose{m: ident3}}
	bx, by := d.uni(140, 175), d.uni(95, 120)
	body := func(q vec3) float64 { return ellipsoidSDF(vec3{q[0], q[1], 0}, vec3{bx, by, 1}) }
	inner := func(q vec3) float64 {
		return ellipsoidSDF(vec3{q[0], q[1], 0}, vec3{bx - 18, by - 16, 1})
	}
	vb := vec3{0, by - 45, 0}
	var gas []func(vec3) float64
	for i := 0; i < 6; i++ {
		c := vec3{d.jit(bx * 0.5), d.uni(-by*0.7, by*0.1), d.jit(40)}
		gas = append(gas, ellF(c, vec3{d.uni(5, 20), d.uni(5, 15), d.uni(8, 25)}, ident3))
	}
	sc.layers = []layer{
		{t: TAir, name: "outside", f: func(q vec3) float64 { return -body(q) }},
		{t: TFat, name: "subcutaneous_fat", f: func(q vec3) float64 { return -inner(q) }},
		{t: TCSF, name: "spinal_canal", f: func(q vec3) float64 { return math.Hypot(q[0], q[1]-(vb[1]+22)) - 8 }},
		{t: TCortical, name: "vertebra_cortex", f: func(q vec3) float64 { return math.Abs(math.Hypot(q[0], q[1]-vb[1])-19) - 1.5 }},
		{t: TMarrow, name: "vertebra", f: func(q vec3) float64 { return math.Hypot(q[0], q[1]-vb[1]) - 19 }},
		{t: TBlood, name: "aorta", f: func(q vec3) float64 { return math.Hypot(q[0]-12, q[1]-(vb[1]-30)) - 11 }},
		{t: TAir, name: "bowel_gas", f: unionF(gas...)},
		{t: TFat, name: "mesenteric_fat", f: func(q vec3) float64 { return math.Hypot(q[0]*0.8, q[1]+10) - 50 }},
	}
	s := d.uni(0.6, 0.8)
	sp := [3]float64{s, s, d.uni(1, 3)}
	size := [3]int{512, 512, 60}
	for c := 0; c < 3; c++ {
		if v.SpacingMM[c] > 0 {
			sp[c] = v.SpacingMM[c]
		}
		if v.Size[c] > 0 {
			size[c] = v.Size[c]
		}
	}
	return finishNegative(ctx, seed, v, opt, sc, sp, size, "another body region (abdomen): no inner ear in the field of view")
}

// generateLocalizer makes a lateral scout of the head: a single projection
// image, which is not a CT volume at all.
func generateLocalizer(ctx context.Context, seed uint64, v Variant, opt Options) (*Case, error) {
	d := newDraws(seed, 3)
	ears := []earPlacement{placeEar("R", 41, ident3), placeEar("L", 41, ident3)}
	sc := &scene{bg: TSoft, safety: 1.5, toHead: pose{m: ident3}}
	sc.layers = headLayers(ears)
	// Sample the head on a coarse volume and integrate along x (lateral
	// projection): attenuation relative to water.
	n := 256
	if v.Size[0] > 0 {
		n = v.Size[0]
	}
	s := 300.0 / float64(n)
	g := volume.Grid{Size: [3]int{24, n, n}, Affine: volume.NewAffine([3]float64{1, 0, 0}, [3]float64{0, 1, 0}, [3]float64{0, 0, 1}, [3]float64{160.0 / 24, s, s}, [3]float64{-80, -150 + s/2, -180})}
	r, err := render(ctx, sc, g, clinicalHU(), false, opt.Workers)
	if err != nil {
		return nil, err
	}
	// The image: rows run head to foot (−z), columns anterior to posterior.
	img := make([]float32, n*n)
	for k := 0; k < n; k++ {
		for j := 0; j < n; j++ {
			var sum float64
			for i := 0; i < 24; i++ {
				sum += float64(r.hu[i+24*(j+n*k)]+1000) / 1000
			}
			img[j+n*(n-1-k)] = float32(-1000 + sum*160/24*9)
		}
	}
	sp := [3]float64{s, s, 1}
	ga := volume.NewAffine([3]float64{0, 1, 0}, [3]float64{0, 0, -1}, [3]float64{-1, 0, 0}, sp, [3]float64{0, -150 + s/2, 120 - s/2})
	gg := volume.Grid{Size: [3]int{n, n, 1}, Affine: ga}
	im := drawImaging(Variant{Scanner: MultiSlice, Dose: v.Dose}, d, sp, 1)
	im.PSFSigmaMM = [3]float64{s, s, 0}
	im.Model = "localizer"
	ct, err := applyPhysics(ctx, img, gg, im, seed, opt.Workers)
	if err != nil {
		return nil, err
	}
	return &Case{CT: ct, Label: volume.New[uint8](gg), Info: negativeInfo(seed, v, gg, im, "localizer (scout projection image), not a CT volume")}, nil
}

func finishNegative(ctx context.Context, seed uint64, v Variant, opt Options, sc *scene, sp [3]float64, size [3]int, reason string) (*Case, error) {
	d := newDraws(seed, 4)
	origin := vec3{}
	centre := vec3{d.jit(10), d.jit(10), d.jit(50)}
	for c := 0; c < 3; c++ {
		origin[c] = centre[c] - float64(size[c]-1)/2*sp[c]
	}
	g := volume.Grid{Size: size, Affine: volume.NewAffine([3]float64{1, 0, 0}, [3]float64{0, 1, 0}, [3]float64{0, 0, 1}, sp, origin)}
	hu := clinicalHU()
	r, err := render(ctx, sc, g, hu, !opt.NoSupersample, opt.Workers)
	if err != nil {
		return nil, err
	}
	im := drawImaging(Variant{Scanner: MultiSlice, Dose: v.Dose, Artefacts: v.Artefacts}, d, sp, sp[2])
	ct, err := applyPhysics(ctx, r.hu, g, im, seed, opt.Workers)
	if err != nil {
		return nil, err
	}
	return &Case{CT: ct, Label: volume.New[uint8](g), Info: negativeInfo(seed, v, g, im, reason)}, nil
}

func negativeInfo(seed uint64, v Variant, g volume.Grid, im Imaging, reason string) Info {
	return Info{Format: "otonode-case/1", Generator: Generator, Seed: seed, Variant: v, Tokens: v.String(),
		Negative: reason, Grid: GridInfo{Size: g.Size, SpacingMM: g.Affine.Spacing(), Affine: g.Affine},
		Imaging: im, Ears: []EarInfo{}, Identity: identity(seed, v)}
}
