package volume

import (
	"math"
	"math/rand/v2"
	"testing"
)

func rotZ(th float64) [3][3]float64 {
	c, s := math.Cos(th), math.Sin(th)
	return [3][3]float64{{c, -s, 0}, {s, c, 0}, {0, 0, 1}}
}

func testGrid() Grid {
	r := rotZ(0.3)
	col := func(k int) [3]float64 { return [3]float64{r[0][k], r[1][k], r[2][k]} }
	return Grid{Size: [3]int{9, 7, 5}, Affine: NewAffine(col(0), col(1), col(2), [3]float64{0.4, 0.5, 1.2}, [3]float64{-3, 4, 10})}
}

func TestCrop(t *testing.T) {
	g := testGrid()
	v := New[int16](g)
	for i := range v.Data {
		v.Data[i] = int16(i)
	}
	c, err := Crop(v, Box{Min: [3]int{2, -5, 1}, Max: [3]int{6, 3, 99}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != [3]int{4, 3, 4} {
		t.Fatalf("size %v", c.Size)
	}
	for k := 0; k < c.Size[2]; k++ {
		for j := 0; j < c.Size[1]; j++ {
			for i := 0; i < c.Size[0]; i++ {
				if c.At(i, j, k) != v.At(i+2, j, k+1) {
					t.Fatalf("crop (%d,%d,%d)", i, j, k)
				}
				p, q := c.Affine.Apply([3]float64{float64(i), float64(j), float64(k)}), v.Affine.Apply([3]float64{float64(i + 2), float64(j), float64(k + 1)})
				for r := 0; r < 3; r++ {
					if math.Abs(p[r]-q[r]) > 1e-12 {
						t.Fatalf("crop voxel moved: %v vs %v", p, q)
					}
				}
			}
		}
	}
	// Resampling the full volume onto the crop's own grid gives the crop.
	r, err := ResampleNearest(v, v.Sub(Box{Min: [3]int{2, -5, 1}, Max: [3]int{6, 3, 99}}), -1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range r.Data {
		if r.Data[i] != c.Data[i] {
			t.Fatalf("resampled onto Sub grid: voxel %d = %d, crop has %d", i, r.Data[i], c.Data[i])
		}
	}
	if _, err := Crop(v, Box{Min: [3]int{20, 0, 0}, Max: [3]int{30, 1, 1}}); err == nil {
		t.Fatal("crop outside the grid succeeded")
	}
}

// Trilinear interpolation reproduces linear functions exactly, so sampling
// f(p) = a·p + b onto any grid inside the source must give f again.
func TestResampleLinearReproducesLinearFunctions(t *testing.T) {
	g := testGrid()
	a, b := [3]float64{0.7, -1.3, 2.1}, 5.0
	f := func(p [3]float64) float64 { return rsDot(a, p) + b }
	src := New[float64](g)
	for k := 0; k < g.Size[2]; k++ {
		for j := 0; j < g.Size[1]; j++ {
			for i := 0; i < g.Size[0]; i++ {
				src.Set(i, j, k, f(g.Affine.Apply([3]float64{float64(i), float64(j), float64(k)})))
			}
		}
	}
	// An oblique destination grid with small voxels, placed inside.
	r := [3][3]float64{}
	rng := rand.New(rand.NewPCG(5, 6))
	for n := 0; n < 5; n++ {
		th := rng.Float64()
		r = rotZ(th)
		col := func(k int) [3]float64 { return [3]float64{r[0][k], r[2][k], r[1][k]} } // tilt out of plane
		centre := g.Affine.Apply([3]float64{4, 3, 2})
		dst := Grid{Size: [3]int{6, 5, 4}, Affine: NewAffine(col(0), col(1), col(2), [3]float64{0.21, 0.21, 0.21}, centre)}
		out, err := ResampleLinear(src, dst, -999)
		if err != nil {
			t.Fatal(err)
		}
		for k := 0; k < 4; k++ {
			for j := 0; j < 5; j++ {
				for i := 0; i < 6; i++ {
					want := f(dst.Affine.Apply([3]float64{float64(i), float64(j), float64(k)}))
					if got := float64(out.At(i, j, k)); math.Abs(got-want) > 1e-4 {
						t.Fatalf("(%d,%d,%d) = %v, want %v", i, j, k, got, want)
					}
				}
			}
		}
	}
	// Same grid: exact copy. Far away: fill.
	same, _ := ResampleLinear(src, g, 0)
	for i := range src.Data {
		if math.Abs(float64(same.Data[i])-src.Data[i]) > 1e-4*math.Max(1, math.Abs(src.Data[i])) {
			t.Fatalf("identity resample changed voxel %d", i)
		}
	}
	far := Grid{Size: [3]int{2, 2, 2}, Affine: Affine{{1, 0, 0, 1000}, {0, 1, 0, 0}, {0, 0, 1, 0}}}
	out, _ := ResampleLinear(src, far, -7)
	for _, x := range out.Data {
		if x != -7 {
			t.Fatalf("outside value %v, want fill", x)
		}
	}
}

func TestResampleNearest(t *testing.T) {
	src := New[uint8](Grid{Size: [3]int{4, 4, 4}, Affine: Affine{{2, 0, 0, 0}, {0, 2, 0, 0}, {0, 0, 2, 0}}})
	for i := range src.Data {
		src.Data[i] = uint8(i)
	}
	// 1 mm grid shifted by 0.2 mm: voxel i maps to source index (i+0.2)/2.
	dst := Grid{Size: [3]int{8, 8, 8}, Affine: Affine{{1, 0, 0, 0.2}, {0, 1, 0, 0.2}, {0, 0, 1, 0.2}}}
	out, err := ResampleNearest(src, dst, 255)
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 8; k++ {
		for j := 0; j < 8; j++ {
			for i := 0; i < 8; i++ {
				idx := func(n int) int { return int(math.Floor((float64(n)+0.2)/2 + 0.5)) }
				x, y, z := idx(i), idx(j), idx(k)
				want := uint8(255)
				if x < 4 && y < 4 && z < 4 {
					want = src.At(x, y, z)
				}
				if got := out.At(i, j, k); got != want {
					t.Fatalf("(%d,%d,%d) = %d, want %d", i, j, k, got, want)
				}
			}
		}
	}
}

func TestIsotropicGrid(t *testing.T) {
	g := testGrid()
	iso := IsotropicGrid(g, 0.1)
	sp := iso.Affine.Spacing()
	for c := 0; c < 3; c++ {
		if math.Abs(sp[c]-0.1) > 1e-12 {
			t.Fatalf("spacing %v", sp)
		}
	}
	if iso.Size != [3]int{36, 35, 60} {
		t.Fatalf("size %v", iso.Size)
	}
	// Both grids share their physical centre.
	ca := g.Affine.Apply([3]float64{4, 3, 2})
	cb := iso.Affine.Apply([3]float64{17.5, 17, 29.5})
	for r := 0; r < 3; r++ {
		if math.Abs(ca[r]-cb[r]) > 1e-9 {
			t.Fatalf("centres %v vs %v", ca, cb)
		}
	}
	// A sheared (tilted) grid gives an orthogonal one.
	sh := g
	sh.Affine[1][2] += 0.4
	iso = IsotropicGrid(sh, 0.5)
	for a := 0; a < 3; a++ {
		for b := a + 1; b < 3; b++ {
			da, db := iso.Affine.Direction(a), iso.Affine.Direction(b)
			if math.Abs(rsDot(da, db)) > 1e-12 {
				t.Fatalf("axes %d and %d not orthogonal", a, b)
			}
		}
	}
}

func TestBoxInAndPaste(t *testing.T) {
	g := testGrid()
	src := New[uint8](g)
	for i := range src.Data {
		src.Data[i] = uint8(i%250 + 1)
	}
	for _, tc := range []struct {
		name string
		box  Box
	}{
		{"inner", Box{Min: [3]int{2, 1, 1}, Max: [3]int{6, 3, 4}}},
		{"whole", g.Bounds()},
		{"corner voxel", Box{Min: [3]int{8, 6, 4}, Max: [3]int{9, 7, 5}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Crop(src, tc.box)
			if err != nil {
				t.Fatal(err)
			}
			b, ok := c.BoxIn(g)
			if !ok || b != tc.box {
				t.Fatalf("BoxIn = %v, %v; want %v", b, ok, tc.box)
			}
			dst := New[uint8](g)
			if err := Paste(dst, c); err != nil {
				t.Fatal(err)
			}
			for k := range g.Size[2] {
				for j := range g.Size[1] {
					for i := range g.Size[0] {
						want := uint8(0)
						if i >= b.Min[0] && i < b.Max[0] && j >= b.Min[1] && j < b.Max[1] && k >= b.Min[2] && k < b.Max[2] {
							want = src.At(i, j, k)
						}
						if got := dst.At(i, j, k); got != want {
							t.Fatalf("(%d,%d,%d) = %d, want %d", i, j, k, got, want)
						}
					}
				}
			}
		})
	}
	half := g
	half.Affine = g.Affine.Shift([3]int{0, 0, 0})
	half.Affine[0][3] += 0.5 * g.Affine[0][0]
	half.Size = [3]int{2, 2, 2}
	other := g
	other.Affine[0][0] *= 2
	other.Size = [3]int{2, 2, 2}
	big := g
	big.Size[0]++
	for name, sub := range map[string]Grid{"half a voxel off": half, "other spacing": other, "larger": big} {
		if b, ok := sub.BoxIn(g); ok {
			t.Errorf("%s: BoxIn = %v, want false", name, b)
		}
		if err := Paste(New[uint8](g), New[uint8](sub)); err == nil {
			t.Errorf("%s: Paste succeeded", name)
		}
	}
}
