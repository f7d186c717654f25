package nifti

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/otonode/otonode/analysis/volume"
)

// obliqueAffine is a rotation about a skew axis, anisotropic spacing and an
// offset: nothing in it is axis-aligned.
func obliqueAffine(flip bool) volume.Affine {
	ax := [3]float64{0.3, -0.5, 0.81}
	n := math.Sqrt(dot(ax, ax))
	ax = scale(ax, 1/n)
	th := 0.7
	c, s := math.Cos(th), math.Sin(th)
	var rot [3][3]float64
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			rot[i][j] = (1 - c) * ax[i] * ax[j]
			if i == j {
				rot[i][j] += c
			}
		}
	}
	rot[0][1] -= s * ax[2]
	rot[1][0] += s * ax[2]
	rot[0][2] += s * ax[1]
	rot[2][0] -= s * ax[1]
	rot[1][2] -= s * ax[0]
	rot[2][1] += s * ax[0]
	col := func(k int) [3]float64 { return [3]float64{rot[0][k], rot[1][k], rot[2][k]} }
	z := col(2)
	if flip {
		z = scale(z, -1)
	}
	return volume.NewAffine(col(0), col(1), z, [3]float64{0.39, 0.41, 1.25}, [3]float64{-120.5, 33.25, 871})
}

func affineClose(t *testing.T, got, want volume.Affine, tol float64) {
	t.Helper()
	for r := 0; r < 3; r++ {
		for c := 0; c < 4; c++ {
			if math.Abs(got[r][c]-want[r][c]) > tol*math.Max(1, math.Abs(want[r][c])) {
				t.Fatalf("affine[%d][%d] = %v, want %v\ngot  %v\nwant %v", r, c, got[r][c], want[r][c], got, want)
			}
		}
	}
}

func fill[T volume.Scalar](g volume.Grid, f func(i int) float64) *volume.Volume[T] {
	v := volume.New[T](g)
	for i := range v.Data {
		v.Data[i] = T(f(i))
	}
	return v
}

func roundTrip[T volume.Scalar](t *testing.T, name string, gz bool, vals func(i int) float64) {
	t.Run(name, func(t *testing.T) {
		g := volume.Grid{Size: [3]int{7, 5, 3}, Affine: obliqueAffine(gz)}
		v := fill[T](g, vals)
		ext := ".nii"
		if gz {
			ext = ".nii.gz"
		}
		path := filepath.Join(t.TempDir(), "x"+ext)
		if err := WriteFile(path, v, Options{Description: "round trip"}); err != nil {
			t.Fatal(err)
		}
		raw, _ := os.ReadFile(path)
		if isGz := len(raw) > 2 && raw[0] == 0x1f && raw[1] == 0x8b; isGz != gz {
			t.Fatalf("gzip = %v, want %v", isGz, gz)
		}
		got, h, err := ReadFileAs[T](path)
		if err != nil {
			t.Fatal(err)
		}
		wantDT, _ := datatypeOf[T]()
		if h.Datatype != wantDT || h.Source != "sform" || h.Description != "round trip" {
			t.Fatalf("header %+v", h)
		}
		if got.Size != g.Size {
			t.Fatalf("size %v, want %v", got.Size, g.Size)
		}
		affineClose(t, got.Affine, g.Affine, 1e-5)
		for i := range v.Data {
			if got.Data[i] != v.Data[i] {
				t.Fatalf("voxel %d = %v, want %v", i, got.Data[i], v.Data[i])
			}
		}
	})
}

func TestRoundTrip(t *testing.T) {
	for _, gz := range []bool{false, true} {
		sfx := map[bool]string{false: "/nii", true: "/niigz"}[gz]
		roundTrip[uint8](t, "uint8"+sfx, gz, func(i int) float64 { return float64(i % 256) })
		roundTrip[int16](t, "int16"+sfx, gz, func(i int) float64 { return float64(i*97%4000 - 1024) })
		roundTrip[uint16](t, "uint16"+sfx, gz, func(i int) float64 { return float64(i * 613 % 65536) })
		roundTrip[int32](t, "int32"+sfx, gz, func(i int) float64 { return float64(i*7919 - 100000) })
		roundTrip[float32](t, "float32"+sfx, gz, func(i int) float64 { return float64(float32(math.Sin(float64(i)) * 1e3)) })
		roundTrip[float64](t, "float64"+sfx, gz, func(i int) float64 { return math.Exp(float64(i) / 17) })
	}
}

// patch overwrites an int16 header field of a plain little-endian file.
func patch(b []byte, off int, val int16) { binary.LittleEndian.PutUint16(b[off:], uint16(val)) }

const (
	offQformCode = 252
	offSformCode = 254
)

func TestGeometryFallbacks(t *testing.T) {
	for _, flip := range []bool{false, true} {
		g := volume.Grid{Size: [3]int{4, 3, 2}, Affine: obliqueAffine(flip)}
		var buf bytes.Buffer
		if err := Write(&buf, volume.New[int16](g), Options{}); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()

		patch(b, offSformCode, 0)
		v, h, err := ReadAs[float32](bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if h.Source != "qform" {
			t.Fatalf("source %q, want qform", h.Source)
		}
		affineClose(t, v.Affine, g.Affine, 1e-5)

		patch(b, offQformCode, 0)
		v, h, err = ReadAs[float32](bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if h.Source != "pixdim" {
			t.Fatalf("source %q, want pixdim", h.Source)
		}
		sp := g.Affine.Spacing()
		// NIfTI method 1: diag(pixdim) in RAS, i.e. -x, -y in LPS.
		want := volume.Affine{{-sp[0], 0, 0, 0}, {0, -sp[1], 0, 0}, {0, 0, sp[2], 0}}
		affineClose(t, v.Affine, want, 1e-6)
	}
}

func TestScaling(t *testing.T) {
	g := volume.Grid{Size: [3]int{3, 2, 2}, Affine: volume.Identity}
	v := fill[int16](g, func(i int) float64 { return float64(i*3 - 10) })
	var buf bytes.Buffer
	if err := Write(&buf, v, Options{SclSlope: 0.5, SclInter: -1024}); err != nil {
		t.Fatal(err)
	}
	f, h, err := ReadAs[float32](bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if h.SclSlope != 0.5 || h.SclInter != -1024 {
		t.Fatalf("header slope/inter %v %v", h.SclSlope, h.SclInter)
	}
	for i, x := range f.Data {
		if want := float32(float64(v.Data[i])*0.5 - 1024); x != want {
			t.Fatalf("voxel %d = %v, want %v", i, x, want)
		}
	}
	// Half-integral values do not fit int16 labels: an error, not rounding.
	if _, _, err := ReadAs[int16](bytes.NewReader(buf.Bytes())); err == nil {
		t.Fatal("reading scaled non-integral values as int16 succeeded")
	}
	// Out of range for uint8.
	buf.Reset()
	if err := Write(&buf, v, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadAs[uint8](bytes.NewReader(buf.Bytes())); err == nil {
		t.Fatal("reading negative values as uint8 succeeded")
	}
}

func TestBigEndian(t *testing.T) {
	g := volume.Grid{Size: [3]int{2, 2, 2}, Affine: obliqueAffine(false)}
	h := headerFor[int16](g, Options{})
	var buf bytes.Buffer
	binary.Write(&buf, binary.BigEndian, &h)
	buf.Write([]byte{0, 0, 0, 0})
	want := []int16{-3, 1, 2, 300, -1000, 5, 6, 7}
	binary.Write(&buf, binary.BigEndian, want)
	v, hdr, err := ReadAs[int16](&buf)
	if err != nil {
		t.Fatal(err)
	}
	if hdr.ByteOrder != binary.BigEndian {
		t.Fatal("byte order not detected")
	}
	for i := range want {
		if v.Data[i] != want[i] {
			t.Fatalf("voxel %d = %d, want %d", i, v.Data[i], want[i])
		}
	}
	affineClose(t, v.Affine, g.Affine, 1e-5)
}

func TestBadInput(t *testing.T) {
	g := volume.Grid{Size: [3]int{4, 4, 4}, Affine: volume.Identity}
	var good bytes.Buffer
	if err := Write(&good, volume.New[float32](g), Options{}); err != nil {
		t.Fatal(err)
	}
	mut := func(f func(b []byte) []byte) []byte {
		return f(bytes.Clone(good.Bytes()))
	}
	cases := map[string][]byte{
		"empty":      nil,
		"short":      good.Bytes()[:100],
		"truncated":  good.Bytes()[:good.Len()-1],
		"not nifti":  bytes.Repeat([]byte("DICM"), 100),
		"bad magic":  mut(func(b []byte) []byte { copy(b[344:], "ni1\x00"); return b }),
		"4-D":        mut(func(b []byte) []byte { patch(b, 40, 4); patch(b, 48, 3); return b }),
		"zero dim":   mut(func(b []byte) []byte { patch(b, 44, 0); return b }),
		"datatype":   mut(func(b []byte) []byte { patch(b, 70, 1024); return b }),
		"bitpix":     mut(func(b []byte) []byte { patch(b, 72, 8); return b }),
		"huge":       mut(func(b []byte) []byte { patch(b, 42, 32767); patch(b, 44, 32767); patch(b, 46, 32767); return b }),
		"singular":   mut(func(b []byte) []byte { copy(b[280:328], make([]byte, 48)); return b }),
		"bad gzip":   {0x1f, 0x8b, 0, 0},
		"vox_offset": mut(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[108:], math.Float32bits(10)); return b }),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := ReadAs[float32](bytes.NewReader(b))
			if err == nil {
				t.Fatal("no error")
			}
			if name != "huge" && !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
		})
	}
}

func TestWriteRefusesBadVolume(t *testing.T) {
	g := volume.Grid{Size: [3]int{2, 2, 2}}
	if err := Write(&bytes.Buffer{}, volume.New[uint8](g), Options{}); err == nil {
		t.Fatal("singular affine accepted")
	}
	g = volume.Grid{Size: [3]int{40000, 1, 1}, Affine: volume.Identity}
	if err := Write(&bytes.Buffer{}, &volume.Volume[uint8]{Grid: g}, Options{}); err == nil {
		t.Fatal("mismatched data accepted")
	}
}

func FuzzRead(f *testing.F) {
	g := volume.Grid{Size: [3]int{3, 2, 2}, Affine: obliqueAffine(true)}
	v := fill[int16](g, func(i int) float64 { return float64(i) })
	for _, gz := range []bool{false, true} {
		var buf bytes.Buffer
		Write(&buf, v, Options{Gzip: gz, SclSlope: 2})
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		v, _, err := ReadAs[float32](bytes.NewReader(b))
		if err == nil && len(v.Data) != v.Len() {
			t.Fatal("inconsistent volume")
		}
	})
}

func TestRandomAffinesQform(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 200; n++ {
		// Random rotation by orthonormalising a random matrix.
		var m [3][3]float64
		for i := range m {
			for j := range m[i] {
				m[i][j] = rng.NormFloat64()
			}
		}
		c0 := unit([3]float64{m[0][0], m[1][0], m[2][0]})
		c1 := [3]float64{m[0][1], m[1][1], m[2][1]}
		c1 = unit(sub(c1, scale(c0, dot(c0, c1))))
		c2 := cross(c0, c1)
		if rng.IntN(2) == 0 {
			c2 = scale(c2, -1)
		}
		sp := [3]float64{0.1 + rng.Float64(), 0.1 + rng.Float64(), 0.1 + 3*rng.Float64()}
		a := volume.NewAffine(c0, c1, c2, sp, [3]float64{rng.NormFloat64() * 100, rng.NormFloat64() * 100, rng.NormFloat64() * 100})
		h := headerFor[uint8](volume.Grid{Size: [3]int{1, 1, 1}, Affine: a}, Options{})
		got := lpsToRAS(fromQuatern(&h))
		affineClose(t, got, a, 2e-5)
	}
}
