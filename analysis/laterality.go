package analysis

// Which ear a labyrinth is can be read from its shape alone, whatever the
// scan's orientation: a left labyrinth is the mirror image of a right one,
// and a mirror flips the sign of a triple product. Three robust anatomical
// facts fix the sign: the oval window lies superior to the round window,
// the helicotrema anterior to it, and the labyrinth's centre medial to it.
// With u = oval − round, v = helicotrema − round and w = centre − round,
// (u × v) · w is positive for a right ear and negative for a left one (in
// any right-handed patient frame; DICOM's LPS is one). Specimens scanned in
// arbitrary orientations (the paper's open datasets) have no other clue.

// chiralityMinMM3 is the least |(u × v) · w| (mm³) trusted: below it the
// landmarks are nearly coplanar with the centre, or misplaced.
const chiralityMinMM3 = 5.0

// sideFromShape returns Right, Left or "" from the patient coordinates of
// the helicotrema, the oval and round windows and the labyrinth's centroid.
func sideFromShape(helicotrema, oval, round, centre [3]float64) Laterality {
	u := sub(oval, round)
	v := sub(helicotrema, round)
	w := sub(centre, round)
	c := [3]float64{u[1]*v[2] - u[2]*v[1], u[2]*v[0] - u[0]*v[2], u[0]*v[1] - u[1]*v[0]}
	t := c[0]*w[0] + c[1]*w[1] + c[2]*w[2]
	switch {
	case t > chiralityMinMM3:
		return Right
	case t < -chiralityMinMM3:
		return Left
	}
	return ""
}

// earSide combines the clues to one ear's side: roi is the region finder's
// guess, fromPosition tells that it comes from the half of the head the ear
// lies in (the finder saw two ears), shape is sideFromShape's answer.
//
// Two ears of one head lie on opposite sides, and in patient coordinates
// the one at smaller x is the right: that is stronger evidence than the
// shape, which rests on three landmarks and a centroid from the model, so a
// model that misplaces one landmark (e.g. in the internal auditory canal)
// turns a right ear into a left one as easily as not. Otherwise the shape
// decides, and the finder's guess from the middle-ear air is the fallback.
func earSide(roi Laterality, fromPosition bool, shape Laterality) Laterality {
	if (fromPosition && roi != "") || shape == "" {
		return roi
	}
	return shape
}

func sub(a, b [3]float64) [3]float64 { return [3]float64{a[0] - b[0], a[1] - b[1], a[2] - b[2]} }
