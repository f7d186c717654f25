package volume

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

// refValue decodes one stored value the slow, obvious way.
func refValue(b []byte, s Stored) float64 {
	o := s.Order
	var x float64
	switch s.Kind {
	case reflect.Int8:
		x = float64(int8(b[0]))
	case reflect.Uint8:
		x = float64(b[0])
	case reflect.Int16:
		x = float64(int16(o.Uint16(b)))
	case reflect.Uint16:
		x = float64(o.Uint16(b))
	case reflect.Int32:
		x = float64(int32(o.Uint32(b)))
	case reflect.Uint32:
		x = float64(o.Uint32(b))
	case reflect.Float32:
		x = float64(math.Float32frombits(o.Uint32(b)))
	case reflect.Float64:
		x = math.Float64frombits(o.Uint64(b))
	}
	return x*s.Slope + s.Inter
}

func checkDecode[T Scalar](t *testing.T, s Stored, src []byte) {
	t.Helper()
	n := len(src) / s.Size()
	d, err := NewSampleDecoder[T](s)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]T, n)
	err = d.Decode(got, src)
	lo, hi, isInt := RangeOfKind(reflect.TypeFor[T]().Kind())
	for i := range n {
		x := refValue(src[i*s.Size():], s)
		if isInt && (x != math.Trunc(x) || x < lo || x > hi) {
			var ve *ValueError
			if !errors.As(err, &ve) || ve.Index != i || ve.Value != x {
				t.Fatalf("%v→%T: value %d (%v) does not fit, got error %v", s.Kind, got[0], i, x, err)
			}
			return
		}
		if got[i] != T(x) {
			t.Fatalf("%v %v→%T: value %d = %v, want %v", s.Kind, s.Order, got[0], i, got[i], T(x))
		}
	}
	if err != nil {
		t.Fatalf("%v→%T: %v", s.Kind, got[0], err)
	}
}

func TestSampleDecoder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	kinds := []reflect.Kind{reflect.Int8, reflect.Uint8, reflect.Int16, reflect.Uint16,
		reflect.Int32, reflect.Uint32, reflect.Float32, reflect.Float64}
	for _, k := range kinds {
		for _, o := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
			for _, sc := range [][2]float64{{1, 0}, {1, -1024}, {0.5, 3}} {
				s := Stored{Kind: k, Order: o, Slope: sc[0], Inter: sc[1]}
				// Small integers (which fit every voxel type once
				// rescaled by 1, 0) and random bits.
				small := make([]byte, 64*s.Size())
				for i := range 64 {
					v := i - 20
					if k == reflect.Uint8 || k == reflect.Uint16 || k == reflect.Uint32 {
						v = i
					}
					b := small[i*s.Size():]
					switch k {
					case reflect.Int8, reflect.Uint8:
						b[0] = byte(v)
					case reflect.Int16, reflect.Uint16:
						o.PutUint16(b, uint16(v))
					case reflect.Int32, reflect.Uint32:
						o.PutUint32(b, uint32(v))
					case reflect.Float32:
						o.PutUint32(b, math.Float32bits(float32(v)))
					case reflect.Float64:
						o.PutUint64(b, math.Float64bits(float64(v)))
					}
				}
				noise := make([]byte, 500*s.Size())
				for i := range noise {
					noise[i] = byte(rng.Uint32())
				}
				if k == reflect.Float32 || k == reflect.Float64 {
					// Random bits make NaNs, which compare unequal.
					noise = small
				}
				for _, src := range [][]byte{small, noise} {
					checkDecode[float32](t, s, src)
					checkDecode[float64](t, s, src)
					checkDecode[int16](t, s, src)
					checkDecode[uint8](t, s, src)
					checkDecode[int32](t, s, src)
				}
			}
		}
	}
}

func TestSampleDecoderRefusesUnknownKind(t *testing.T) {
	if _, err := NewSampleDecoder[float32](Stored{Kind: reflect.Complex64}); err == nil {
		t.Fatal("complex64 accepted")
	}
}
