// Package metrics computes the paper's evaluation metrics: Dice, IoU
// (Jaccard), volumetric similarity, Hausdorff and average Hausdorff
// distance between surfaces (in mm, through an exact anisotropic
// Euclidean distance transform), and landmark distances in voxels and mm.
//
// Masks are label volumes where any non-zero voxel is foreground; the two
// compared volumes must share their grid. Distances use the voxel
// spacing of that grid along i, j and k (the grid's axes are taken as
// orthogonal, as they are after resampling to the model's grid).
//
// Conventions for empty masks: two empty masks agree perfectly (Dice, IoU
// and volumetric similarity 1, distances 0); when exactly one is empty the
// overlap scores are 0 and the distances +Inf.
package metrics

import (
	"fmt"
	"math"

	"github.com/otonode/otonode/analysis/volume"
)

// Overlap holds the voxel-counting metrics.
type Overlap struct {
	TP, FP, FN           int // voxels: in both, only in prediction, only in truth
	Dice                 float64
	IoU                  float64
	VolumetricSimilarity float64 // 1 − |P−T| / (P+T)
}

func sameGrid[T, U volume.Scalar](a *volume.Volume[T], b *volume.Volume[U]) error {
	if a.Size != b.Size || len(a.Data) != a.Len() || len(b.Data) != b.Len() {
		return fmt.Errorf("metrics: grids differ: %v and %v", a.Size, b.Size)
	}
	for r := 0; r < 3; r++ {
		for c := 0; c < 4; c++ {
			if math.Abs(a.Affine[r][c]-b.Affine[r][c]) > 1e-6*math.Max(1, math.Abs(a.Affine[r][c])) {
				return fmt.Errorf("metrics: the two volumes are placed differently in space")
			}
		}
	}
	return nil
}

// Compare computes Dice, IoU and volumetric similarity.
func Compare[T, U volume.Scalar](pred *volume.Volume[T], truth *volume.Volume[U]) (Overlap, error) {
	var o Overlap
	if err := sameGrid(pred, truth); err != nil {
		return o, err
	}
	for i, p := range pred.Data {
		switch t := truth.Data[i] != 0; {
		case p != 0 && t:
			o.TP++
		case p != 0:
			o.FP++
		case t:
			o.FN++
		}
	}
	np, nt := o.TP+o.FP, o.TP+o.FN
	if np+nt == 0 {
		o.Dice, o.IoU, o.VolumetricSimilarity = 1, 1, 1
		return o, nil
	}
	o.Dice = 2 * float64(o.TP) / float64(np+nt)
	o.IoU = float64(o.TP) / float64(o.TP+o.FP+o.FN)
	o.VolumetricSimilarity = 1 - math.Abs(float64(np-nt))/float64(np+nt)
	return o, nil
}

// Distance holds the surface distances in mm.
type Distance struct {
	// Hausdorff is the largest distance from a surface voxel of either
	// mask to the other mask's surface.
	Hausdorff float64
	// MeanPredToTruth and MeanTruthToPred are the directed average
	// distances from one surface to the other.
	MeanPredToTruth, MeanTruthToPred float64
	// AverageHausdorff is the larger of the two directed averages
	// (Taha & Hanbury, BMC Med Imaging 2015), computed on surfaces.
	AverageHausdorff float64
}

// Surface returns the surface voxels of a mask: foreground voxels with a
// background (or off-grid) face neighbour.
func Surface[T volume.Scalar](m *volume.Volume[T]) []bool {
	nx, ny, nz := m.Size[0], m.Size[1], m.Size[2]
	s := make([]bool, len(m.Data))
	for k := 0; k < nz; k++ {
		for j := 0; j < ny; j++ {
			for i := 0; i < nx; i++ {
				idx := i + nx*(j+ny*k)
				if m.Data[idx] == 0 {
					continue
				}
				s[idx] = i == 0 || j == 0 || k == 0 || i == nx-1 || j == ny-1 || k == nz-1 ||
					m.Data[idx-1] == 0 || m.Data[idx+1] == 0 ||
					m.Data[idx-nx] == 0 || m.Data[idx+nx] == 0 ||
					m.Data[idx-nx*ny] == 0 || m.Data[idx+nx*ny] == 0
			}
		}
	}
	return s
}

// Distances computes the Hausdorff and average Hausdorff distances between
// the surfaces of pred and truth.
func Distances[T, U volume.Scalar](pred *volume.Volume[T], truth *volume.Volume[U]) (Distance, error) {
	var d Distance
	if err := sameGrid(pred, truth); err != nil {
		return d, err
	}
	sp := pred.Affine.Spacing()
	sa, sb := Surface(pred), Surface(truth)
	na, nb := count(sa), count(sb)
	switch {
	case na == 0 && nb == 0:
		return d, nil
	case na == 0 || nb == 0:
		inf := math.Inf(1)
		return Distance{inf, inf, inf, inf}, nil
	}
	da := SquaredEDT(sa, pred.Size, sp) // distance to pred's surface
	db := SquaredEDT(sb, pred.Size, sp) // distance to truth's surface
	var sumAB, sumBA, maxSq float64
	for i := range sa {
		if sa[i] {
			sumAB += math.Sqrt(db[i])
			maxSq = math.Max(maxSq, db[i])
		}
		if sb[i] {
			sumBA += math.Sqrt(da[i])
			maxSq = math.Max(maxSq, da[i])
		}
	}
	d.Hausdorff = math.Sqrt(maxSq)
	d.MeanPredToTruth = sumAB / float64(na)
	d.MeanTruthToPred = sumBA / float64(nb)
	d.AverageHausdorff = math.Max(d.MeanPredToTruth, d.MeanTruthToPred)
	return d, nil
}

func count(b []bool) int {
	n := 0
	for _, x := range b {
		if x {
			n++
		}
	}
	return n
}

// LandmarkDistance returns the distance between two landmark positions
// given in voxel index coordinates of grid affine a: in voxel units
// (Euclidean in index space, the paper's "voxels") and in mm.
func LandmarkDistance(p, q [3]float64, a volume.Affine) (voxels, mm float64) {
	var dv, dm float64
	pp, pq := a.Apply(p), a.Apply(q)
	for c := 0; c < 3; c++ {
		dv += (p[c] - q[c]) * (p[c] - q[c])
		dm += (pp[c] - pq[c]) * (pp[c] - pq[c])
	}
	return math.Sqrt(dv), math.Sqrt(dm)
}
