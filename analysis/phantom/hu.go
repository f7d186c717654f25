package phantom

// huTable maps tissues to CT numbers.
type huTable [nTissue]float32

// clinicalHU are plausible values for a calibrated scanner and living
// patient (see the anatomy reference): the defaults for tests and demos.
func clinicalHU() huTable {
	var h huTable
	h[TAir] = -1000
	h[TFat] = -100
	h[TSoft] = 45
	h[TBrain] = 35
	h[TCSF] = 12
	h[TNerve] = 35
	h[TBlood] = 45
	h[TFluid] = 15
	h[TMarrow] = 250
	h[TSeptum] = 1000
	h[TPetrous] = 1600
	h[TCortical] = 1700
	h[TCapsule] = 1950
	h[TOssicle] = 1600
	h[TLesion] = 1200
	h[TWater] = 5
	return h
}

// randomHU draws a table from wide ranges (domain randomisation), keeping
// only the orderings that define the anatomy: air darkest, the capsule the
// densest bone, the labyrinth fluid darker than bone.
func randomHU(d *draws) huTable {
	var h huTable
	h[TAir] = float32(d.uni(-1024, -850))
	h[TFat] = float32(d.uni(-150, -40))
	h[TSoft] = float32(d.uni(-20, 120))
	h[TBrain] = float32(d.uni(-20, 100))
	h[TCSF] = float32(d.uni(-40, 80))
	h[TNerve] = float32(d.uni(-20, 120))
	h[TBlood] = float32(d.uni(-10, 140))
	h[TFluid] = float32(d.uni(-80, 200))
	capsule := d.uni(900, 3000)
	h[TCapsule] = float32(capsule)
	h[TPetrous] = float32(capsule * d.uni(0.45, 0.9))
	h[TCortical] = float32(capsule * d.uni(0.6, 1.0))
	h[TOssicle] = float32(capsule * d.uni(0.55, 0.95))
	h[TSeptum] = float32(capsule * d.uni(0.25, 0.7))
	h[TMarrow] = float32(d.uni(50, 500))
	h[TWater] = float32(d.uni(-30, 60))
	return h
}

// applyContrast alters a table for preserved specimens: formalin raises
// the fluid and soft tissue; dry specimens have air where fluid and soft
// tissue were.
func applyContrast(h *huTable, contrast string, d *draws) {
	switch contrast {
	case "formalin":
		f := float32(d.uni(60, 160))
		h[TFluid] = f
		for _, t := range []Tissue{TSoft, TNerve, TCSF, TBlood} {
			h[t] += float32(d.uni(20, 60))
		}
		for _, t := range []Tissue{TCapsule, TPetrous, TCortical, TOssicle, TSeptum} {
			h[t] *= float32(d.uni(0.9, 1.0))
		}
	case "dry":
		for _, t := range []Tissue{TFluid, TSoft, TNerve, TCSF, TBlood, TBrain, TFat} {
			h[t] = h[TAir]
		}
		h[TMarrow] *= 0.5
	}
}
