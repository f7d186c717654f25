package roi

import (
	"errors"
	"math"
	"testing"

	"github.com/otonode/otonode/analysis/internal/scene"
	"github.com/otonode/otonode/analysis/volume"
)

// shape is the tests' name for a painted ellipsoid.
type shape = scene.Ellipsoid

func paint(size [3]int, spacing float64, origin [3]float64, bg float32, shapes []shape) *volume.Volume[float32] {
	return scene.Paint(size, spacing, origin, bg, shapes)
}

// ear is a dense capsule enclosing a fluid vestibule and a cochlea-like
// cavity, with middle-ear air on its lateral side (+x for a left ear).
func ear(c [3]float64, lateral float64) []shape {
	return []shape{
		{Centre: [3]float64{c[0] + lateral*9, c[1], c[2]}, Radii: [3]float64{4, 6, 5}, HU: -1000}, // middle ear
		{Centre: c, Radii: [3]float64{7, 7, 6}, HU: 2000},                                         // otic capsule
		{Centre: [3]float64{c[0], c[1], c[2]}, Radii: [3]float64{2.5, 1.6, 1.6}, HU: 30},          // vestibule
		{Centre: [3]float64{c[0] - 1, c[1] - 4, c[2] - 1}, Radii: [3]float64{2, 2, 1.2}, HU: 30},  // cochlea
	}
}

func TestFindUnilateral(t *testing.T) {
	for _, tt := range []struct {
		name    string
		lateral float64
		want    Side
	}{{"left ear", +1, Left}, {"right ear", -1, Right}} {
		t.Run(tt.name, func(t *testing.T) {
			centre := [3]float64{3, -2, 1}
			v := paint([3]int{120, 110, 100}, 0.25, [3]float64{-12, -15, -11}, 40, ear(centre, tt.lateral))
			got, err := Find(v, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 {
				t.Fatalf("%d candidates, want 1: %+v", len(got), got)
			}
			c := got[0]
			if dist(c.CentreMM, centre) > 3 {
				t.Errorf("centre %v, want within 3 mm of %v", c.CentreMM, centre)
			}
			if c.Side != tt.want {
				t.Errorf("side %q, want %q", c.Side, tt.want)
			}
			// The box holds the centre voxel and is inside the grid.
			for a := range 3 {
				if c.Box[0][a] < 0 || c.Box[1][a] > v.Size[a] || float64(c.Box[0][a]) > c.CentreVoxel[a] || float64(c.Box[1][a]) < c.CentreVoxel[a] {
					t.Errorf("axis %d: box %v does not hold centre voxel %v", a, c.Box, c.CentreVoxel)
				}
			}
		})
	}
}

func TestFindBilateral(t *testing.T) {
	// A wide field of view (head CT): the first pass runs at a coarser step.
	right := [3]float64{-50, 0, 0}
	left := [3]float64{50, 0, 0}
	shapes := append(ear(right, -1), ear(left, +1)...)
	v := paint([3]int{300, 100, 80}, 0.4, [3]float64{-60, -20, -16}, 40, shapes)
	got, err := Find(v, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d candidates, want 2: %+v", len(got), got)
	}
	if got[0].Side != Right || got[1].Side != Left {
		t.Fatalf("sides %q, %q", got[0].Side, got[1].Side)
	}
	if dist(got[0].CentreMM, right) > 3 || dist(got[1].CentreMM, left) > 3 {
		t.Errorf("centres %v, %v", got[0].CentreMM, got[1].CentreMM)
	}
}

func TestFindNothing(t *testing.T) {
	t.Run("no bone", func(t *testing.T) {
		v := paint([3]int{60, 60, 60}, 0.5, [3]float64{-15, -15, -15}, 40, []shape{{Centre: [3]float64{}, Radii: [3]float64{8, 8, 8}, HU: -1000}})
		if _, err := Find(v, Options{}); !errors.Is(err, ErrNoBone) {
			t.Fatalf("err %v, want ErrNoBone", err)
		}
	})
	t.Run("solid bone", func(t *testing.T) {
		v := paint([3]int{60, 60, 60}, 0.5, [3]float64{-15, -15, -15}, 40, []shape{{Centre: [3]float64{}, Radii: [3]float64{8, 8, 8}, HU: 2000}})
		got, err := Find(v, Options{})
		if err != nil || len(got) != 0 {
			t.Fatalf("got %+v, %v; want nothing", got, err)
		}
	})
	t.Run("skull around brain", func(t *testing.T) {
		// A wide cavity in a bone shell is not a labyrinth.
		v := paint([3]int{100, 100, 100}, 0.5, [3]float64{-25, -25, -25}, -1000, []shape{
			{Centre: [3]float64{}, Radii: [3]float64{22, 22, 22}, HU: 1800},
			{Centre: [3]float64{}, Radii: [3]float64{20, 20, 20}, HU: 35},
		})
		got, err := Find(v, Options{})
		if err != nil || len(got) != 0 {
			t.Fatalf("got %+v, %v; want nothing", got, err)
		}
	})
}

func TestBoxClipped(t *testing.T) {
	g := volume.Grid{Size: [3]int{100, 100, 100}, Affine: volume.NewAffine([3]float64{1, 0, 0}, [3]float64{0, 1, 0}, [3]float64{0, 0, 1}, [3]float64{0.2, 0.2, 0.2}, [3]float64{})}
	b, clipped := boxAroundClipped(g, [3]float64{10, 10, 10}, 5)
	if clipped || b != [2][3]int{{25, 25, 25}, {76, 76, 76}} {
		t.Fatalf("box %v clipped %v", b, clipped)
	}
	b, clipped = boxAroundClipped(g, [3]float64{1, 10, 19}, 5)
	if !clipped || b[0][0] != 0 || b[1][2] != 100 {
		t.Fatalf("box %v clipped %v", b, clipped)
	}
	if math.IsNaN(float64(b[0][0])) {
		t.Fatal("nan")
	}
}
