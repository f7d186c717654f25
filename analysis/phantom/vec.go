package phantom

import "math"

// vec3 is a point or direction in millimetres.
type vec3 = [3]float64

func add(a, b vec3) vec3           { return vec3{a[0] + b[0], a[1] + b[1], a[2] + b[2]} }
func sub(a, b vec3) vec3           { return vec3{a[0] - b[0], a[1] - b[1], a[2] - b[2]} }
func scale(a vec3, s float64) vec3 { return vec3{a[0] * s, a[1] * s, a[2] * s} }
func dot(a, b vec3) float64        { return a[0]*b[0] + a[1]*b[1] + a[2]*b[2] }
func norm(a vec3) float64          { return math.Sqrt(dot(a, a)) }
func cross(a, b vec3) vec3 {
	return vec3{a[1]*b[2] - a[2]*b[1], a[2]*b[0] - a[0]*b[2], a[0]*b[1] - a[1]*b[0]}
}
func unit(a vec3) vec3 {
	n := norm(a)
	if n == 0 {
		return a
	}
	return scale(a, 1/n)
}

// perp returns the part of d perpendicular to the unit vector a, normalised.
func perp(d, a vec3) vec3 { return unit(sub(d, scale(a, dot(d, a)))) }

// mat3 is a 3×3 matrix, row major.
type mat3 [3][3]float64

var ident3 = mat3{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}

func (m mat3) mul(v vec3) vec3 {
	return vec3{
		m[0][0]*v[0] + m[0][1]*v[1] + m[0][2]*v[2],
		m[1][0]*v[0] + m[1][1]*v[1] + m[1][2]*v[2],
		m[2][0]*v[0] + m[2][1]*v[1] + m[2][2]*v[2],
	}
}

func (m mat3) mulM(n mat3) mat3 {
	var r mat3
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			for k := 0; k < 3; k++ {
				r[i][j] += m[i][k] * n[k][j]
			}
		}
	}
	return r
}

func (m mat3) t() mat3 {
	var r mat3
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			r[i][j] = m[j][i]
		}
	}
	return r
}

// rotAxis is the rotation by angle (radians) about the unit axis u.
func rotAxis(u vec3, angle float64) mat3 {
	c, s := math.Cos(angle), math.Sin(angle)
	x, y, z := u[0], u[1], u[2]
	return mat3{
		{c + x*x*(1-c), x*y*(1-c) - z*s, x*z*(1-c) + y*s},
		{y*x*(1-c) + z*s, c + y*y*(1-c), y*z*(1-c) - x*s},
		{z*x*(1-c) - y*s, z*y*(1-c) + x*s, c + z*z*(1-c)},
	}
}

// segDist is the distance from p to the segment ab and the parameter
// t in [0,1] of the nearest point.
func segDist(p, a, b vec3) (float64, float64) {
	ab := sub(b, a)
	ap := sub(p, a)
	l2 := dot(ab, ab)
	t := 0.0
	if l2 > 0 {
		t = dot(ap, ab) / l2
		if t < 0 {
			t = 0
		} else if t > 1 {
			t = 1
		}
	}
	d := sub(ap, scale(ab, t))
	return norm(d), t
}

// ellipsoidSDF is a signed distance estimate to an axis-aligned ellipsoid
// with semi-axes r centred at the origin: Quilez's k0·(k0−1)/k1, accurate
// near the surface, clamped so that it never exceeds 1.5 times the true
// distance (which is at least |k0−1|·min(r)); the renderer's culling relies
// on that bound.
func ellipsoidSDF(q, r vec3) float64 {
	x, y, z := q[0]/r[0], q[1]/r[1], q[2]/r[2]
	k0 := math.Sqrt(x*x + y*y + z*z)
	rmin := math.Min(r[0], math.Min(r[1], r[2]))
	if k0 < 1e-9 {
		return -rmin
	}
	x, y, z = x/r[0], y/r[1], z/r[2]
	k1 := math.Sqrt(x*x + y*y + z*z)
	d := k0 * (k0 - 1) / k1
	lim := 1.5 * math.Abs(k0-1) * rmin
	if d > lim {
		return lim
	}
	if d < -lim {
		return -lim
	}
	return d
}

// discSDF is the distance to a flat elliptical plate: half thickness th
// along the first axis of the local frame q, semi-axes a, b across.
func discSDF(q vec3, th, a, b float64) float64 {
	e := (math.Hypot(q[1]/a, q[2]/b) - 1) * math.Min(a, b)
	return math.Max(math.Abs(q[0])-th, e)
}

func clamp(x, lo, hi float64) float64 {
	if x < lo {
		return lo
	}
	if x > hi {
		return hi
	}
	return x
}
