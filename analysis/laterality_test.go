package analysis

import (
	"math"
	"testing"
)

// A right labyrinth in LPS (x: patient left, y: posterior, z: superior),
// from the anatomy: vestibule at the origin, oval window on its lateral
// wall, round window posteroinferior to it, the cochlea anteromedial with
// its apex turned anterolaterally.
var (
	rightHelicotrema = [3]float64{-1, -7, -2}
	rightOval        = [3]float64{-2, 0, 0}
	rightRound       = [3]float64{-2.5, 1.5, -2}
	rightCentre      = [3]float64{0, 0, 0}
)

func mirror(p [3]float64) [3]float64 { return [3]float64{-p[0], p[1], p[2]} }

// rotate turns p by angle about an arbitrary unit axis (Rodrigues).
func rotate(p, axis [3]float64, angle float64) [3]float64 {
	c, s := math.Cos(angle), math.Sin(angle)
	d := axis[0]*p[0] + axis[1]*p[1] + axis[2]*p[2]
	cr := [3]float64{axis[1]*p[2] - axis[2]*p[1], axis[2]*p[0] - axis[0]*p[2], axis[0]*p[1] - axis[1]*p[0]}
	var out [3]float64
	for a := range 3 {
		out[a] = p[a]*c + cr[a]*s + axis[a]*d*(1-c)
	}
	return out
}

func TestSideFromShape(t *testing.T) {
	axis := [3]float64{0.48, -0.6, 0.64}
	for _, angle := range []float64{0, 0.7, 2.1, 3.9} {
		r := func(p [3]float64) [3]float64 { return rotate(p, axis, angle) }
		if got := sideFromShape(r(rightHelicotrema), r(rightOval), r(rightRound), r(rightCentre)); got != Right {
			t.Errorf("right ear turned by %.1f rad: %q", angle, got)
		}
		m := func(p [3]float64) [3]float64 { return r(mirror(p)) }
		if got := sideFromShape(m(rightHelicotrema), m(rightOval), m(rightRound), m(rightCentre)); got != Left {
			t.Errorf("left ear turned by %.1f rad: %q", angle, got)
		}
	}
	// Collapsed landmarks decide nothing.
	if got := sideFromShape(rightRound, rightRound, rightRound, rightCentre); got != "" {
		t.Errorf("coincident landmarks gave %q", got)
	}
}

func TestEarSide(t *testing.T) {
	tests := []struct {
		name         string
		roi          Laterality
		fromPosition bool
		shape        Laterality
		want         Laterality
	}{
		{"bilateral: position beats a contrary shape", Right, true, Left, Right},
		{"bilateral: position and shape agree", Left, true, Left, Left},
		{"bilateral: no shape", Right, true, "", Right},
		{"single ear: shape beats the air guess", Right, false, Left, Left},
		{"single ear: air guess when the shape is unsure", Left, false, "", Left},
		{"single ear: shape when the air tells nothing", "", false, Right, Right},
		{"nothing known", "", false, "", ""},
	}
	for _, tt := range tests {
		if got := earSide(tt.roi, tt.fromPosition, tt.shape); got != tt.want {
			t.Errorf("%s: earSide(%q, %v, %q) = %q, want %q", tt.name, tt.roi, tt.fromPosition, tt.shape, got, tt.want)
		}
	}
}
