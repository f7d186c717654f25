// Package volume holds 3-D images on regular grids together with their
// placement in DICOM patient space. It is the currency between the phantom
// generator, the analysis engine, the file formats (DICOM, NIfTI, NRRD) and
// the results writers.
//
// Conventions, fixed here so no caller has to guess:
//   - Voxel index (i, j, k): i runs along a row (DICOM column index), j down
//     the columns (row index), k across slices. Data is stored with i
//     fastest: Data[i + j*Nx + k*Nx*Ny].
//   - Patient coordinates are DICOM's LPS in millimetres: +x towards the
//     patient's left, +y posterior, +z superior. NIfTI writers convert to RAS.
//   - Index coordinates address voxel centres: index (0,0,0) is the centre of
//     the first voxel, as DICOM's Image Position (Patient) is.
package volume

import (
	"errors"
	"fmt"
	"math"
)

// Affine maps voxel index (i, j, k) to patient coordinates (mm, LPS):
// p = M·(i, j, k) + t, with M the first three columns and t the fourth.
// Column c of M is the step in patient space of one voxel along axis c, so
// its norm is the spacing along that axis.
type Affine [3][4]float64

// Identity is the affine of a grid with 1 mm isotropic voxels at the origin.
var Identity = Affine{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}}

// NewAffine builds an affine from the DICOM description of a grid: the
// direction cosines of rows (i) and columns (j) as in Image Orientation
// (Patient), the slice direction (k, unit), the spacings along i, j, k and
// the patient position of voxel (0,0,0).
func NewAffine(rowDir, colDir, sliceDir, spacing, origin [3]float64) Affine {
	var a Affine
	for r := 0; r < 3; r++ {
		a[r][0] = rowDir[r] * spacing[0]
		a[r][1] = colDir[r] * spacing[1]
		a[r][2] = sliceDir[r] * spacing[2]
		a[r][3] = origin[r]
	}
	return a
}

// Apply maps an index-space point to patient coordinates.
func (a Affine) Apply(ijk [3]float64) [3]float64 {
	var p [3]float64
	for r := 0; r < 3; r++ {
		p[r] = a[r][0]*ijk[0] + a[r][1]*ijk[1] + a[r][2]*ijk[2] + a[r][3]
	}
	return p
}

// Spacing returns the voxel size along i, j and k in mm.
func (a Affine) Spacing() [3]float64 {
	var s [3]float64
	for c := 0; c < 3; c++ {
		s[c] = math.Sqrt(a[0][c]*a[0][c] + a[1][c]*a[1][c] + a[2][c]*a[2][c])
	}
	return s
}

// Direction returns the unit vector in patient space of index axis c.
func (a Affine) Direction(c int) [3]float64 {
	s := a.Spacing()[c]
	return [3]float64{a[0][c] / s, a[1][c] / s, a[2][c] / s}
}

// Origin returns the patient position of voxel (0,0,0).
func (a Affine) Origin() [3]float64 { return [3]float64{a[0][3], a[1][3], a[2][3]} }

// ErrSingular is returned when an affine has no inverse.
var ErrSingular = errors.New("volume: singular affine")

// Inverse returns the affine that maps patient coordinates to index space.
func (a Affine) Inverse() (Affine, error) {
	m := [3][3]float64{
		{a[0][0], a[0][1], a[0][2]},
		{a[1][0], a[1][1], a[1][2]},
		{a[2][0], a[2][1], a[2][2]},
	}
	det := m[0][0]*(m[1][1]*m[2][2]-m[1][2]*m[2][1]) -
		m[0][1]*(m[1][0]*m[2][2]-m[1][2]*m[2][0]) +
		m[0][2]*(m[1][0]*m[2][1]-m[1][1]*m[2][0])
	if math.Abs(det) < 1e-12 {
		return Affine{}, ErrSingular
	}
	var inv [3][3]float64
	inv[0][0] = (m[1][1]*m[2][2] - m[1][2]*m[2][1]) / det
	inv[0][1] = (m[0][2]*m[2][1] - m[0][1]*m[2][2]) / det
	inv[0][2] = (m[0][1]*m[1][2] - m[0][2]*m[1][1]) / det
	inv[1][0] = (m[1][2]*m[2][0] - m[1][0]*m[2][2]) / det
	inv[1][1] = (m[0][0]*m[2][2] - m[0][2]*m[2][0]) / det
	inv[1][2] = (m[0][2]*m[1][0] - m[0][0]*m[1][2]) / det
	inv[2][0] = (m[1][0]*m[2][1] - m[1][1]*m[2][0]) / det
	inv[2][1] = (m[0][1]*m[2][0] - m[0][0]*m[2][1]) / det
	inv[2][2] = (m[0][0]*m[1][1] - m[0][1]*m[1][0]) / det
	var out Affine
	for r := 0; r < 3; r++ {
		for c := 0; c < 3; c++ {
			out[r][c] = inv[r][c]
		}
		out[r][3] = -(inv[r][0]*a[0][3] + inv[r][1]*a[1][3] + inv[r][2]*a[2][3])
	}
	return out, nil
}

// Grid is the shape of a volume and its placement in patient space.
type Grid struct {
	Size   [3]int // voxels along i, j, k
	Affine Affine
}

// Len is the number of voxels.
func (g Grid) Len() int { return g.Size[0] * g.Size[1] * g.Size[2] }

// Index returns the offset into Data of voxel (i, j, k).
func (g Grid) Index(i, j, k int) int { return i + g.Size[0]*(j+g.Size[1]*k) }

// Contains reports whether (i, j, k) lies inside the grid.
func (g Grid) Contains(i, j, k int) bool {
	return i >= 0 && j >= 0 && k >= 0 && i < g.Size[0] && j < g.Size[1] && k < g.Size[2]
}

// Validate checks that the grid has a positive size and an invertible affine.
func (g Grid) Validate() error {
	for c, n := range g.Size {
		if n <= 0 {
			return fmt.Errorf("volume: size along axis %d is %d", c, n)
		}
	}
	if _, err := g.Affine.Inverse(); err != nil {
		return err
	}
	return nil
}

// Scalar is the set of voxel types a Volume may hold.
type Scalar interface {
	~uint8 | ~int16 | ~uint16 | ~int32 | ~float32 | ~float64
}

// Volume is a 3-D image: a grid and one value per voxel, i fastest.
type Volume[T Scalar] struct {
	Grid
	Data []T
}

// New allocates a zeroed volume on grid g.
func New[T Scalar](g Grid) *Volume[T] {
	return &Volume[T]{Grid: g, Data: make([]T, g.Len())}
}

// At returns the value of voxel (i, j, k); it panics outside the grid, as
// slice indexing does.
func (v *Volume[T]) At(i, j, k int) T { return v.Data[v.Index(i, j, k)] }

// Set stores x at voxel (i, j, k).
func (v *Volume[T]) Set(i, j, k int, x T) { v.Data[v.Index(i, j, k)] = x }
