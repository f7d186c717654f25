package results

import (
	"fmt"
	"sort"

	"github.com/otonode/otonode/analysis"
)

// minEarGap is the smallest gap in mm, along the patient's left-right axis,
// between the two ears' voxels when they share one label volume.
const minEarGap = 5.0

// earSides returns, per ear of res, which voxels of its label belong to it.
// Normally an ear's label holds that ear only. When two ears share one label
// volume (a bilateral label, as the phantom generator makes), the voxels are
// split at the widest gap along the patient's x axis (LPS: right ear at
// smaller x); ears closer than minEarGap cannot be told apart.
func earSides(res *analysis.Result) ([]func(int) bool, error) {
	sides := make([]func(int) bool, len(res.Ears)) // nil: the whole label
	for a := range res.Ears {
		for b := a + 1; b < len(res.Ears); b++ {
			ea, eb := &res.Ears[a], &res.Ears[b]
			if ea.Label == nil || ea.Label != eb.Label {
				continue
			}
			if ea.Laterality == eb.Laterality {
				return nil, fmt.Errorf("%w: two %s ears", ErrResult, ea.Laterality)
			}
			split, err := splitX(ea)
			if err != nil {
				return nil, err
			}
			aff := ea.Label.Affine
			nx, ny := ea.Label.Size[0], ea.Label.Size[1]
			x := func(idx int) float64 {
				i, j, k := idx%nx, (idx/nx)%ny, idx/(nx*ny)
				return aff[0][0]*float64(i) + aff[0][1]*float64(j) + aff[0][2]*float64(k) + aff[0][3]
			}
			right := func(idx int) bool { return x(idx) < split }
			left := func(idx int) bool { return x(idx) >= split }
			if ea.Laterality == analysis.Right {
				sides[a], sides[b] = right, left
			} else {
				sides[a], sides[b] = left, right
			}
		}
	}
	return sides, nil
}

// splitX finds the widest gap between labelled voxels along patient x.
func splitX(ear *analysis.Ear) (float64, error) {
	aff := ear.Label.Affine
	nx, ny := ear.Label.Size[0], ear.Label.Size[1]
	var xs []float64
	for idx, v := range ear.Label.Data {
		if v == 0 {
			continue
		}
		i, j, k := idx%nx, (idx/nx)%ny, idx/(nx*ny)
		xs = append(xs, aff[0][0]*float64(i)+aff[0][1]*float64(j)+aff[0][2]*float64(k)+aff[0][3])
	}
	sort.Float64s(xs)
	best, at := 0.0, 0.0
	for i := 1; i < len(xs); i++ {
		if g := xs[i] - xs[i-1]; g > best {
			best, at = g, (xs[i]+xs[i-1])/2
		}
	}
	if best < minEarGap {
		return 0, fmt.Errorf("%w: both ears share one label volume and their voxels are not %.0f mm apart", ErrResult, minEarGap)
	}
	return at, nil
}
