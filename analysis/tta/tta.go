// Package tta holds the test-time augmentations of the paper: the
// identity and rotations by 90°, 180° and 270° about each of the three
// index axes (10 transforms). Each is an exact permutation of voxels (a
// signed permutation of the axes), works on any shape (a quarter turn
// swaps two extents), and has an exact inverse, so a prediction made on a
// rotated volume can be rotated back voxel for voxel.
//
// Axes are volume index axes: i (fastest, the model's W), j (H) and k (D).
// A quarter turn about axis a turns the plane of the two other axes
// (u, w), taken in cyclic order (i→j→k→i): out(u, w) = in(w, n_u-1-u) in
// the manner of numpy.rot90 over axes (u, w).
package tta

import (
	"fmt"
	"strings"

	"github.com/otonode/otonode/analysis/volume"
)

// Transform is a signed permutation of the three index axes: output axis d
// reads input axis Src[d], reversed when Flip[d].
type Transform struct {
	Name string
	Src  [3]int
	Flip [3]bool
}

// Identity leaves a volume unchanged.
var Identity = Transform{Name: "identity", Src: [3]int{0, 1, 2}}

// Rotation returns the rotation by quarter×90° about index axis a (0=i,
// 1=j, 2=k); quarter is taken modulo 4.
func Rotation(a, quarter int) Transform {
	quarter = ((quarter % 4) + 4) % 4
	t := Transform{Src: [3]int{0, 1, 2}}
	u, w := (a+1)%3, (a+2)%3
	switch quarter {
	case 0:
		return Identity
	case 1:
		t.Src[u], t.Flip[u] = w, true
		t.Src[w] = u
	case 2:
		t.Flip[u], t.Flip[w] = true, true
	case 3:
		t.Src[u] = w
		t.Src[w], t.Flip[w] = u, true
	}
	t.Name = fmt.Sprintf("%c%d", "ijk"[a], 90*quarter)
	return t
}

// All returns the paper's 10 transforms: identity, then 90°, 180°, 270°
// about i, j and k.
func All() []Transform {
	out := []Transform{Identity}
	for a := 0; a < 3; a++ {
		for q := 1; q <= 3; q++ {
			out = append(out, Rotation(a, q))
		}
	}
	return out
}

// ByName selects transforms by name ("identity", "i90", "j180", "k270",
// …), for a configurable subset.
func ByName(names []string) ([]Transform, error) {
	idx := map[string]Transform{}
	for _, t := range All() {
		idx[t.Name] = t
	}
	var out []Transform
	for _, n := range names {
		t, ok := idx[strings.TrimSpace(n)]
		if !ok {
			return nil, fmt.Errorf("tta: unknown transform %q (known: identity, i90…k270)", n)
		}
		out = append(out, t)
	}
	return out, nil
}

// Shape returns the extents of the output for an input of extents n.
func (t Transform) Shape(n [3]int) [3]int {
	return [3]int{n[t.Src[0]], n[t.Src[1]], n[t.Src[2]]}
}

// Inverse returns the transform that undoes t.
func (t Transform) Inverse() Transform {
	inv := Transform{Name: t.Name + "⁻¹"}
	if t.Name == "identity" {
		inv.Name = "identity"
	}
	for d := 0; d < 3; d++ {
		inv.Src[t.Src[d]] = d
		inv.Flip[t.Src[d]] = t.Flip[d]
	}
	return inv
}

// Then returns the transform "t, then u".
func (t Transform) Then(u Transform) Transform {
	var c Transform
	c.Name = t.Name + "," + u.Name
	for d := 0; d < 3; d++ {
		// out axis d reads u's input axis u.Src[d], which is t's output
		// axis; that in turn reads t's input axis t.Src[u.Src[d]].
		c.Src[d] = t.Src[u.Src[d]]
		c.Flip[d] = u.Flip[d] != t.Flip[u.Src[d]]
	}
	return c
}

// Into writes t(src) into dst. src has extents n; dst must have
// t.Shape(n) extents (same length). It returns the output extents.
func Into[T any](t Transform, dst, src []T, n [3]int) [3]int {
	out := t.Shape(n)
	if len(src) != n[0]*n[1]*n[2] || len(dst) != len(src) {
		panic(fmt.Sprintf("tta: %d and %d values for extents %v", len(dst), len(src), n))
	}
	inStride := [3]int{1, n[0], n[0] * n[1]}
	var stride [3]int
	base := 0
	for d := 0; d < 3; d++ {
		s := inStride[t.Src[d]]
		if t.Flip[d] {
			base += (n[t.Src[d]] - 1) * s
			s = -s
		}
		stride[d] = s
	}
	o := 0
	for z := 0; z < out[2]; z++ {
		for y := 0; y < out[1]; y++ {
			p := base + z*stride[2] + y*stride[1]
			row := dst[o : o+out[0]]
			if stride[0] == 1 {
				copy(row, src[p:p+out[0]])
			} else {
				for x := range row {
					row[x] = src[p]
					p += stride[0]
				}
			}
			o += out[0]
		}
	}
	return out
}

// Apply returns t(v) as a new volume whose affine keeps every voxel at
// its patient position: the rotated volume is the same image, indexed
// differently.
func Apply[T volume.Scalar](t Transform, v *volume.Volume[T]) *volume.Volume[T] {
	g := volume.Grid{Size: t.Shape(v.Size)}
	for d := 0; d < 3; d++ {
		s := t.Src[d]
		for r := 0; r < 3; r++ {
			g.Affine[r][d] = v.Affine[r][s]
		}
	}
	for r := 0; r < 3; r++ {
		g.Affine[r][3] = v.Affine[r][3]
	}
	for d := 0; d < 3; d++ {
		if !t.Flip[d] {
			continue
		}
		s := t.Src[d]
		for r := 0; r < 3; r++ {
			g.Affine[r][3] += v.Affine[r][s] * float64(v.Size[s]-1)
			g.Affine[r][d] = -v.Affine[r][s]
		}
	}
	out := volume.New[T](g)
	Into(t, out.Data, v.Data, v.Size)
	return out
}
