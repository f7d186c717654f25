package series

import (
	"context"
	"testing"
)

// Decode[int16] refuses values that are not integral HU in range, but only
// when such a value is present; every slice keeps its own rescale even
// when the workers' tables are reused from slice to slice.
func TestDecodeInt16(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mod    func(k int, s *ctSpec)
		refuse bool
	}{
		{"per-slice intercepts", func(k int, s *ctSpec) { s.Intercept = float64(-1024 + 100*k) }, false},
		{"half slope, even values", func(k int, s *ctSpec) {
			s.Slope = 0.5
			for i := range s.Pixels {
				s.Pixels[i] &^= 1
			}
		}, false},
		{"half slope, an odd value", func(k int, s *ctSpec) {
			s.Slope = 0.5
			for i := range s.Pixels {
				s.Pixels[i] &^= 1
			}
			if k == 3 {
				s.Pixels[5] |= 1
			}
		}, true},
		{"unsigned above int16", func(k int, s *ctSpec) {
			s.PixelRepresentation, s.Intercept = 0, 0
			for i := range s.Pixels {
				s.Pixels[i] = uint16(i)
			}
			if k == 2 {
				s.Pixels[0] = 40000
			}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			paths := writeStack(t, 5, tc.mod)
			l, err := Scan(context.Background(), paths, Options{Workers: 2})
			if err != nil {
				t.Fatal(err)
			}
			f32, err := Decode[float32](context.Background(), l)
			if err != nil {
				t.Fatal(err)
			}
			i16, err := Decode[int16](context.Background(), l)
			if tc.refuse {
				if ReasonOf(err) != ReasonValueOutOfRange {
					t.Fatalf("got %v, want %s", err, ReasonValueOutOfRange)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k := range 5 {
				s := baseSpec(k)
				tc.mod(k, &s)
				for i, p := range s.Pixels {
					want := huOf(s, p)
					idx := k*s.Rows*s.Cols + i
					if f32.Data[idx] != want || float32(i16.Data[idx]) != want {
						t.Fatalf("slice %d pixel %d: float32 %v, int16 %d, want %v", k, i, f32.Data[idx], i16.Data[idx], want)
					}
				}
			}
		})
	}
}
