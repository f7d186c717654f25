package tta

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/otonode/otonode/analysis/volume"
)

var shapes = [][3]int{{1, 1, 1}, {3, 4, 5}, {2, 7, 3}, {6, 1, 4}, {4, 4, 4}}

func random(n [3]int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	v := make([]float32, n[0]*n[1]*n[2])
	for i := range v {
		v[i] = float32(rng.IntN(1000)) // integers: sums are exact in any order
	}
	return v
}

func apply(t Transform, src []float32, n [3]int) ([]float32, [3]int) {
	dst := make([]float32, len(src))
	return dst, Into(t, dst, src, n)
}

func TestAllTen(t *testing.T) {
	all := All()
	if len(all) != 10 {
		t.Fatalf("%d transforms", len(all))
	}
	names := map[string]bool{}
	for _, tr := range all {
		names[tr.Name] = true
	}
	if len(names) != 10 {
		t.Fatalf("duplicate names: %v", names)
	}
	// The ten are distinct permutations: on a generic cube (where every
	// shape agrees) no two give the same result.
	n := [3]int{3, 3, 3}
	x := random(n, 1)
	seen := map[string]string{}
	for _, tr := range all {
		y, _ := apply(tr, x, n)
		key := fmtFloats(y)
		if other, ok := seen[key]; ok {
			t.Fatalf("%s and %s give the same result", tr.Name, other)
		}
		seen[key] = tr.Name
	}
}

func fmtFloats(v []float32) string {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		u := math.Float32bits(x)
		b = append(b, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
	}
	return string(b)
}

func TestInverseRestores(t *testing.T) {
	for _, n := range shapes {
		x := random(n, 2)
		for _, tr := range All() {
			y, m := apply(tr, x, n)
			if m != tr.Shape(n) {
				t.Fatalf("%s: shape %v, want %v", tr.Name, m, tr.Shape(n))
			}
			z, back := apply(tr.Inverse(), y, m)
			if back != n || !slices.Equal(z, x) {
				t.Fatalf("%s on %v: inverse does not restore", tr.Name, n)
			}
		}
	}
}

func TestGroupLaws(t *testing.T) {
	n := [3]int{2, 3, 4}
	x := random(n, 3)
	for a := 0; a < 3; a++ {
		r90 := Rotation(a, 1)
		four := r90.Then(r90).Then(r90).Then(r90)
		y, m := apply(four, x, n)
		if m != n || !slices.Equal(y, x) {
			t.Fatalf("four quarter turns about %d are not the identity", a)
		}
		two, _ := apply(r90.Then(r90), x, n)
		half, _ := apply(Rotation(a, 2), x, n)
		if !slices.Equal(two, half) {
			t.Fatalf("two quarter turns about %d differ from 180°", a)
		}
		step1, m1 := apply(r90, x, n)
		step2, _ := apply(r90, step1, m1)
		if !slices.Equal(step2, half) {
			t.Fatalf("Then does not compose like applying twice")
		}
		if r := Rotation(a, 3); !slices.Equal(mustApply(r, x, n), mustApply(r90.Inverse(), x, n)) {
			t.Fatalf("270° about %d is not the inverse of 90°", a)
		}
	}
}

func mustApply(t Transform, x []float32, n [3]int) []float32 { y, _ := apply(t, x, n); return y }

// A hand-checked quarter turn about k on a 3×2 plane: out(i, j) = in(j, 2-i)
// with in laid out i fastest.
func TestKnownQuarterTurn(t *testing.T) {
	// in(i, j) for i in 0..2, j in 0..1:  j=0: a b c, j=1: d e f
	in := []float32{1, 2, 3, 4, 5, 6}
	out, m := apply(Rotation(2, 1), in, [3]int{3, 2, 1})
	if m != [3]int{2, 3, 1} {
		t.Fatalf("shape %v", m)
	}
	// out(u=i', w=j') = in(i=j', j=1-i'):
	// j'=0: in(0,1)=4, in(0,0)=1; j'=1: in(1,1)=5, in(1,0)=2; j'=2: 6, 3.
	want := []float32{4, 1, 5, 2, 6, 3}
	if !slices.Equal(out, want) {
		t.Fatalf("got %v, want %v", out, want)
	}
}

// neighbourSum is rotation-equivariant (the six face neighbours are
// permuted by every quarter turn); gradI is not.
func neighbourSum(x []float32, n [3]int) []float32 {
	out := make([]float32, len(x))
	at := func(i, j, k int) float32 {
		if i < 0 || j < 0 || k < 0 || i >= n[0] || j >= n[1] || k >= n[2] {
			return 0
		}
		return x[i+n[0]*(j+n[1]*k)]
	}
	for k := 0; k < n[2]; k++ {
		for j := 0; j < n[1]; j++ {
			for i := 0; i < n[0]; i++ {
				// Weighted so that a wrong rotation (e.g. a mirror) is not
				// hidden by symmetry of the weights: centre 3, faces 1.
				out[i+n[0]*(j+n[1]*k)] = 3*at(i, j, k) + at(i-1, j, k) + at(i+1, j, k) + at(i, j-1, k) + at(i, j+1, k) + at(i, j, k-1) + at(i, j, k+1)
			}
		}
	}
	return out
}

func gradI(x []float32, n [3]int) []float32 {
	out := make([]float32, len(x))
	for i := 1; i < len(x); i++ {
		if i%n[0] != 0 {
			out[i] = x[i] - x[i-1]
		}
	}
	return out
}

// The TTA identity: for an equivariant model M, t⁻¹(M(t(x))) = M(x) for
// every transform; a rotated input gives the rotated output.
func TestRotatedInputGivesRotatedOutput(t *testing.T) {
	for _, n := range shapes {
		x := random(n, 4)
		want := neighbourSum(x, n)
		for _, tr := range All() {
			y, m := apply(tr, x, n)
			out := neighbourSum(y, m)
			if !slices.Equal(mustApply(tr, want, n), out) {
				t.Fatalf("%s on %v: M(t(x)) != t(M(x))", tr.Name, n)
			}
			back, _ := apply(tr.Inverse(), out, m)
			if !slices.Equal(back, want) {
				t.Fatalf("%s on %v: t⁻¹(M(t(x))) != M(x)", tr.Name, n)
			}
		}
	}
	// The check has teeth: a direction-dependent model breaks it.
	n := [3]int{3, 4, 5}
	x := random(n, 5)
	want := gradI(x, n)
	broken := 0
	for _, tr := range All()[1:] {
		y, m := apply(tr, x, n)
		back, _ := apply(tr.Inverse(), gradI(y, m), m)
		if !slices.Equal(back, want) {
			broken++
		}
	}
	if broken == 0 {
		t.Fatal("a non-equivariant model passed for every rotation")
	}
}

func TestApplyKeepsPatientPositions(t *testing.T) {
	g := volume.Grid{Size: [3]int{3, 4, 5}, Affine: volume.Affine{{0.5, 0.1, 0, -3}, {0, 0.6, 0.2, 7}, {0.05, 0, 1.5, 11}}}
	v := volume.New[int16](g)
	for i := range v.Data {
		v.Data[i] = int16(i)
	}
	for _, tr := range All() {
		r := Apply(tr, v)
		for k := 0; k < r.Size[2]; k++ {
			for j := 0; j < r.Size[1]; j++ {
				for i := 0; i < r.Size[0]; i++ {
					p := r.Affine.Apply([3]float64{float64(i), float64(j), float64(k)})
					inv, _ := v.Affine.Inverse()
					q := inv.Apply(p)
					a, b, c := int(math.Round(q[0])), int(math.Round(q[1])), int(math.Round(q[2]))
					if r.At(i, j, k) != v.At(a, b, c) {
						t.Fatalf("%s: voxel (%d,%d,%d) moved in patient space", tr.Name, i, j, k)
					}
				}
			}
		}
	}
}

func TestByName(t *testing.T) {
	ts, err := ByName([]string{"identity", "k90", "i270"})
	if err != nil || len(ts) != 3 || ts[1].Name != "k90" {
		t.Fatalf("%v %v", ts, err)
	}
	if _, err := ByName([]string{"x90"}); err == nil {
		t.Fatal("unknown name accepted")
	}
}
