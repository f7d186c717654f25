package nifti

import (
	"math"

	"github.com/otonode/otonode/analysis/volume"
)

// quatern is the qform rotation: unit quaternion (a, b, c, d) with a ≥ 0
// and the handedness factor qfac (±1) applied to the third axis.
type quatern struct{ a, b, c, d, qfac float64 }

// toQuatern extracts the rotation of a RAS affine with column norms sp.
// Columns that are not quite orthogonal are orthonormalised first
// (Gram–Schmidt); the qform cannot express shear, the sform can.
func toQuatern(ras volume.Affine, sp [3]float64) quatern {
	var col [3][3]float64 // col[c] = unit direction of axis c
	for c := 0; c < 3; c++ {
		for r := 0; r < 3; r++ {
			col[c][r] = ras[r][c] / sp[c]
		}
	}
	col[0] = unit(col[0])
	col[1] = unit(sub(col[1], scale(col[0], dot(col[0], col[1]))))
	z := cross(col[0], col[1])
	q := quatern{qfac: 1}
	if dot(z, col[2]) < 0 {
		q.qfac = -1
	}
	col[2] = z // proper rotation; qfac carries the reflection
	// R[r][c] = col[c][r]
	r00, r11, r22 := col[0][0], col[1][1], col[2][2]
	r01, r02 := col[1][0], col[2][0]
	r10, r12 := col[0][1], col[2][1]
	r20, r21 := col[0][2], col[1][2]
	if t := 1 + r00 + r11 + r22; t > 0.5 {
		q.a = 0.5 * math.Sqrt(t)
		q.b = 0.25 * (r21 - r12) / q.a
		q.c = 0.25 * (r02 - r20) / q.a
		q.d = 0.25 * (r10 - r01) / q.a
	} else if r00 >= r11 && r00 >= r22 {
		q.b = 0.5 * math.Sqrt(1+r00-r11-r22)
		q.c = 0.25 * (r01 + r10) / q.b
		q.d = 0.25 * (r02 + r20) / q.b
		q.a = 0.25 * (r21 - r12) / q.b
	} else if r11 >= r22 {
		q.c = 0.5 * math.Sqrt(1+r11-r00-r22)
		q.b = 0.25 * (r01 + r10) / q.c
		q.d = 0.25 * (r12 + r21) / q.c
		q.a = 0.25 * (r02 - r20) / q.c
	} else {
		q.d = 0.5 * math.Sqrt(1+r22-r00-r11)
		q.b = 0.25 * (r02 + r20) / q.d
		q.c = 0.25 * (r12 + r21) / q.d
		q.a = 0.25 * (r10 - r01) / q.d
	}
	if q.a < 0 {
		q.a, q.b, q.c, q.d = -q.a, -q.b, -q.c, -q.d
	}
	return q
}

// fromQuatern builds the RAS affine of the qform (NIfTI-1 "method 2").
func fromQuatern(h *rawHeader) volume.Affine {
	b, c, d := float64(h.QuaternB), float64(h.QuaternC), float64(h.QuaternD)
	a := 1 - (b*b + c*c + d*d)
	if a < 1e-7 { // 180° rotation: renormalise (b, c, d)
		n := math.Sqrt(b*b + c*c + d*d)
		b, c, d, a = b/n, c/n, d/n, 0
	} else {
		a = math.Sqrt(a)
	}
	rot := [3][3]float64{
		{a*a + b*b - c*c - d*d, 2 * (b*c - a*d), 2 * (b*d + a*c)},
		{2 * (b*c + a*d), a*a + c*c - b*b - d*d, 2 * (c*d - a*b)},
		{2 * (b*d - a*c), 2 * (c*d + a*b), a*a + d*d - c*c - b*b},
	}
	sp := [3]float64{}
	for k := 0; k < 3; k++ {
		sp[k] = float64(h.Pixdim[k+1])
		if sp[k] <= 0 {
			sp[k] = 1
		}
	}
	if h.Pixdim[0] < 0 {
		sp[2] = -sp[2]
	}
	var m volume.Affine
	for r := 0; r < 3; r++ {
		for k := 0; k < 3; k++ {
			m[r][k] = rot[r][k] * sp[k]
		}
	}
	m[0][3], m[1][3], m[2][3] = float64(h.QoffsetX), float64(h.QoffsetY), float64(h.QoffsetZ)
	return m
}

func dot(a, b [3]float64) float64 { return a[0]*b[0] + a[1]*b[1] + a[2]*b[2] }
func scale(a [3]float64, s float64) [3]float64 {
	return [3]float64{a[0] * s, a[1] * s, a[2] * s}
}
func sub(a, b [3]float64) [3]float64 { return [3]float64{a[0] - b[0], a[1] - b[1], a[2] - b[2]} }
func unit(a [3]float64) [3]float64   { return scale(a, 1/math.Sqrt(dot(a, a))) }
func cross(a, b [3]float64) [3]float64 {
	return [3]float64{a[1]*b[2] - a[2]*b[1], a[2]*b[0] - a[0]*b[2], a[0]*b[1] - a[1]*b[0]}
}
