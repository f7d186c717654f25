// Package scene paints simple synthetic CT scenes (ellipsoids of given HU in
// patient space) for the analysis packages' tests.
package scene

import "github.com/otonode/otonode/analysis/volume"

// Ellipsoid is a solid of one value; Radii are its semi-axes in mm.
type Ellipsoid struct {
	Centre, Radii [3]float64
	HU            float32
}

// Paint returns an axis-aligned volume of size voxels of spacing mm whose
// first voxel is at origin, filled with bg and then with each ellipsoid in
// turn (later ones win).
func Paint(size [3]int, spacing float64, origin [3]float64, bg float32, shapes []Ellipsoid) *volume.Volume[float32] {
	g := volume.Grid{Size: size, Affine: volume.NewAffine([3]float64{1, 0, 0}, [3]float64{0, 1, 0}, [3]float64{0, 0, 1},
		[3]float64{spacing, spacing, spacing}, origin)}
	v := volume.New[float32](g)
	for k := range size[2] {
		for j := range size[1] {
			for i := range size[0] {
				p := g.Affine.Apply([3]float64{float64(i), float64(j), float64(k)})
				val := bg
				for _, s := range shapes {
					d := 0.0
					for a := range 3 {
						d += (p[a] - s.Centre[a]) * (p[a] - s.Centre[a]) / (s.Radii[a] * s.Radii[a])
					}
					if d <= 1 {
						val = s.HU
					}
				}
				v.Set(i, j, k, val)
			}
		}
	}
	return v
}
