package volume

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
)

// Stored is how voxel values are encoded in a file (NIfTI, NRRD): the
// kind of each value, its byte order, and the linear map to the value
// meant (value = stored·Slope + Inter).
type Stored struct {
	// Kind is one of Int8, Uint8, Int16, Uint16, Int32, Uint32,
	// Float32, Float64.
	Kind         reflect.Kind
	Order        binary.ByteOrder
	Slope, Inter float64
}

// Size is the number of bytes of one stored value (0 for an unknown kind).
func (s Stored) Size() int {
	switch s.Kind {
	case reflect.Int8, reflect.Uint8:
		return 1
	case reflect.Int16, reflect.Uint16:
		return 2
	case reflect.Int32, reflect.Uint32, reflect.Float32:
		return 4
	case reflect.Float64:
		return 8
	}
	return 0
}

// ValueError reports a value that does not fit the voxel type: an integer
// type needs an integral value within its range.
type ValueError struct {
	Index int // of the value in dst (a reader may add its offset in the volume)
	Value float64
	Kind  reflect.Kind // of the voxel type
}

func (e *ValueError) Error() string {
	return fmt.Sprintf("value %v does not fit %v", e.Value, e.Kind)
}

// SampleDecoder converts stored values to voxels of type T. Values of at
// most 16 bits go through a table of every possible stored value (one
// lookup per voxel, and the fit check is made once per table entry);
// wider ones are converted one by one with the loop chosen once per call,
// not per voxel.
type SampleDecoder[T Scalar] struct {
	s      Stored
	little bool
	isInt  bool
	lo, hi float64
	kind   reflect.Kind
	lut    []T
	bad    []bool // nil when every table entry fits T
}

// NewSampleDecoder prepares the conversion of s to T.
func NewSampleDecoder[T Scalar](s Stored) (*SampleDecoder[T], error) {
	if s.Size() == 0 {
		return nil, fmt.Errorf("volume: stored kind %v is not supported", s.Kind)
	}
	if s.Order == nil {
		s.Order = binary.LittleEndian
	}
	d := &SampleDecoder[T]{s: s, little: s.Order.Uint16([]byte{1, 0}) == 1, kind: reflect.TypeFor[T]().Kind()}
	d.lo, d.hi, d.isInt = RangeOfKind(d.kind)
	if n := s.Size(); n <= 2 {
		size := 1 << (8 * n)
		d.lut = make([]T, size)
		for u := range size {
			x := d.scale(d.raw(uint64(u)))
			if !d.fits(x) {
				if d.bad == nil {
					d.bad = make([]bool, size)
				}
				d.bad[u] = true
				continue
			}
			d.lut[u] = T(x)
		}
	}
	return d, nil
}

// raw interprets the bits u (as read in native order) as the stored kind.
func (d *SampleDecoder[T]) raw(u uint64) float64 {
	switch d.s.Kind {
	case reflect.Int8:
		return float64(int8(u))
	case reflect.Int16:
		return float64(int16(u))
	case reflect.Int32:
		return float64(int32(u))
	case reflect.Float32:
		return float64(math.Float32frombits(uint32(u)))
	case reflect.Float64:
		return math.Float64frombits(u)
	}
	return float64(u) // unsigned kinds
}

func (d *SampleDecoder[T]) scale(x float64) float64 { return x*d.s.Slope + d.s.Inter }

func (d *SampleDecoder[T]) fits(x float64) bool {
	if d.isInt {
		return x == math.Trunc(x) && x >= d.lo && x <= d.hi
	}
	return true
}

// Decode converts len(dst) stored values from src, which must hold at
// least len(dst)·Size bytes. A value that does not fit T stops it with a
// *ValueError.
func (d *SampleDecoder[T]) Decode(dst []T, src []byte) error {
	n := d.s.Size()
	src = src[:len(dst)*n]
	switch {
	case n == 1:
		for i, b := range src {
			dst[i] = d.lut[b]
		}
	case n == 2 && d.little:
		for i := range dst {
			dst[i] = d.lut[uint16(src[2*i])|uint16(src[2*i+1])<<8]
		}
	case n == 2:
		for i := range dst {
			dst[i] = d.lut[uint16(src[2*i])<<8|uint16(src[2*i+1])]
		}
	default:
		return d.decodeWide(dst, src)
	}
	if d.bad != nil {
		for i := range dst {
			var u int
			switch {
			case n == 1:
				u = int(src[i])
			case d.little:
				u = int(src[2*i]) | int(src[2*i+1])<<8
			default:
				u = int(src[2*i])<<8 | int(src[2*i+1])
			}
			if d.bad[u] {
				return &ValueError{Index: i, Value: d.scale(d.raw(uint64(u))), Kind: d.kind}
			}
		}
	}
	return nil
}

// decodeWide converts 32- and 64-bit stored values.
func (d *SampleDecoder[T]) decodeWide(dst []T, src []byte) error {
	n := d.s.Size()
	o := d.s.Order
	slope, inter := d.s.Slope, d.s.Inter
	for i := range dst {
		b := src[n*i:]
		var x float64
		switch d.s.Kind {
		case reflect.Float32:
			x = float64(math.Float32frombits(o.Uint32(b)))
		case reflect.Int32:
			x = float64(int32(o.Uint32(b)))
		case reflect.Uint32:
			x = float64(o.Uint32(b))
		default:
			x = math.Float64frombits(o.Uint64(b))
		}
		x = x*slope + inter
		if d.isInt && !(x == math.Trunc(x) && x >= d.lo && x <= d.hi) {
			return &ValueError{Index: i, Value: x, Kind: d.kind}
		}
		dst[i] = T(x)
	}
	return nil
}

// RangeOfKind is the range of values an integer voxel kind holds (isInt false for
// floating point).
func RangeOfKind(k reflect.Kind) (lo, hi float64, isInt bool) {
	switch k {
	case reflect.Uint8:
		return 0, math.MaxUint8, true
	case reflect.Int16:
		return math.MinInt16, math.MaxInt16, true
	case reflect.Uint16:
		return 0, math.MaxUint16, true
	case reflect.Int32:
		return math.MinInt32, math.MaxInt32, true
	}
	return math.Inf(-1), math.Inf(1), false
}
