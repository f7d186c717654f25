package series

import (
	"context"
	"fmt"
	"math"
	"os"

	"github.com/otonode/otonode/analysis/volume"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// Load scans the headers, checks the geometry and decodes the pixels into
// Hounsfield units (float32).
func Load(ctx context.Context, paths []string, opts Options) (*volume.Volume[float32], *Layout, error) {
	l, err := Scan(ctx, paths, opts)
	if err != nil {
		return nil, nil, err
	}
	v, err := Decode[float32](ctx, l)
	return v, l, err
}

// Decode reads the pixel data of every slice of l and rescales it to HU.
// With T = int16 (half the memory of float32) every rescaled value must be
// an integer in range, as it is for the usual slope 1 / integer intercept;
// otherwise the refusal is ReasonValueOutOfRange.
//
// Memory: the volume is the only large allocation. Pixels are read from
// the file straight into a per-worker frame buffer (the header scan noted
// where they are) and rescaled into their slab, so decoding leaves no
// garbage behind per slice; a heap that grew by one slice's garbage per
// slice would let the collector wait until it doubled the volume.
func Decode[T float32 | int16](ctx context.Context, l *Layout) (*volume.Volume[T], error) {
	v := volume.New[T](l.Grid)
	plane := l.Grid.Size[0] * l.Grid.Size[1]
	// Which slab each (file, frame) goes to.
	byPath := make(map[string][]frameTarget[T])
	var paths []string
	for k, s := range l.Slices {
		if _, ok := byPath[s.Path]; !ok {
			paths = append(paths, s.Path)
		}
		byPath[s.Path] = append(byPath[s.Path], frameTarget[T]{
			frame: s.Frame, slope: s.RescaleSlope, inter: s.RescaleInter,
			dst: v.Data[k*plane : (k+1)*plane],
		})
	}
	workers := max(1, l.workers)
	decs := make([]frameDecoder[T], workers)
	err := forEachWorker(ctx, len(paths), workers, func(w, i int) error {
		return decs[w].instance(l.instances[paths[i]], byPath[paths[i]])
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

// frameTarget says where frame (0-based) of an instance goes, and with
// which rescale.
type frameTarget[T float32 | int16] struct {
	frame        int
	slope, inter float64
	dst          []T // rows×cols
}

// frameDecoder holds the buffers one worker reuses from frame to frame.
type frameDecoder[T float32 | int16] struct {
	raw     []byte   // a frame's bytes as stored (native or compressed)
	samples []uint16 // a compressed frame, decoded
	key     lutKey   // of lut and bad
	lut     []T
	bad     []bool
}

func grow[E any](s []E, n int) []E {
	if cap(s) < n {
		return make([]E, n)
	}
	return s[:n]
}

// instance decodes the listed frames of one file into their slabs.
func (d *frameDecoder[T]) instance(in *instance, targets []frameTarget[T]) error {
	if in.ts == tsDeflate {
		// The data set is one deflate stream: there are no pixel offsets
		// to read from, so the library inflates and parses the file.
		return d.deflated(in, targets)
	}
	if !in.pixel.found {
		return refuse(ReasonCorruptPixelData, in.path, "no Pixel Data")
	}
	compressed := in.ts == tsJPEGLL57 || in.ts == tsJPEGLL70 || in.ts == tsRLE
	switch {
	case !compressed && in.pixel.encapsulated:
		return refuse(ReasonCorruptPixelData, in.path, "encapsulated Pixel Data in native transfer syntax %s", in.ts)
	case compressed && !in.pixel.encapsulated:
		return refuse(ReasonCorruptPixelData, in.path, "native Pixel Data in compressed transfer syntax %s", in.ts)
	}
	n := in.rows * in.cols
	f, err := os.Open(in.path)
	if err != nil {
		return &Error{Reason: ReasonUnreadable, Path: in.path, Err: err}
	}
	defer f.Close()
	if !compressed {
		bpp := in.bitsAllocated / 8
		frameBytes := int64(n * bpp)
		if need := int64(in.numberOfFrames) * frameBytes; in.pixel.value.n < need {
			return refuse(ReasonCorruptPixelData, in.path, "Pixel Data has %d bytes, %d needed", in.pixel.value.n, need)
		}
		d.raw = grow(d.raw, int(frameBytes))
		for _, t := range targets {
			if _, err := f.ReadAt(d.raw, in.pixel.value.off+int64(t.frame)*frameBytes); err != nil {
				return &Error{Reason: ReasonCorruptPixelData, Path: in.path, Detail: fmt.Sprintf("frame %d", t.frame+1), Err: err}
			}
			if err := d.rescaleNative(in, d.raw, t.slope, t.inter, t.dst); err != nil {
				return err
			}
		}
		return nil
	}
	frames, err := groupFragments(f, in.pixel.fragments, in.numberOfFrames, in.ts == tsRLE)
	if err != nil {
		return &Error{Reason: ReasonCorruptPixelData, Path: in.path, Err: err}
	}
	for _, t := range targets {
		if t.frame >= len(frames) {
			return refuse(ReasonCorruptPixelData, in.path, "frame %d of %d missing", t.frame+1, len(frames))
		}
		if d.raw, err = readSpans(f, frames[t.frame], d.raw); err != nil {
			return &Error{Reason: ReasonCorruptPixelData, Path: in.path, Detail: fmt.Sprintf("frame %d", t.frame+1), Err: err}
		}
		if err := d.compressed(in, d.raw, t.slope, t.inter, t.dst); err != nil {
			return err
		}
	}
	return nil
}

// compressed decodes one compressed frame into dst.
func (d *frameDecoder[T]) compressed(in *instance, data []byte, slope, inter float64, dst []T) error {
	var err error
	if d.samples, err = decompress(in, data, d.samples); err != nil {
		return &Error{Reason: ReasonCorruptPixelData, Path: in.path, Err: err}
	}
	shift := uint(in.highBit + 1 - in.bitsStored)
	if in.ts != tsRLE {
		shift = 0 // JPEG codes the stored bits right-aligned
	}
	return d.rescale(in, d.samples, shift, slope, inter, dst)
}

// readSpans reads the given runs of f, one after another, into buf.
func readSpans(f *os.File, spans []span, buf []byte) ([]byte, error) {
	var total int64
	for _, s := range spans {
		total += s.n
	}
	if total > math.MaxInt32 {
		return nil, fmt.Errorf("compressed frame of %d bytes", total)
	}
	buf = grow(buf, int(total))
	at := 0
	for _, s := range spans {
		if _, err := f.ReadAt(buf[at:at+int(s.n)], s.off); err != nil {
			return buf, err
		}
		at += int(s.n)
	}
	return buf, nil
}

// groupFragments groups the fragments of encapsulated Pixel Data into
// frames (PS3.5 A.4): a single frame may span any number of fragments;
// RLE has exactly one fragment per frame; a JPEG frame starts with the SOI
// marker, which is how frames are found without trusting a Basic Offset
// Table. Only the first two bytes of each fragment are read here.
func groupFragments(f *os.File, frags []span, nFrames int, isRLE bool) ([][]span, error) {
	switch {
	case len(frags) == 0:
		return nil, fmt.Errorf("no fragments")
	case nFrames == 1:
		return [][]span{frags}, nil
	case len(frags) == nFrames:
		out := make([][]span, len(frags))
		for i := range frags {
			out[i] = frags[i : i+1]
		}
		return out, nil
	case isRLE:
		return nil, fmt.Errorf("RLE: %d fragments for %d frames (one per frame required)", len(frags), nFrames)
	}
	var frames [][]span
	var soi [2]byte
	for i, s := range frags {
		starts := false
		if s.n >= 2 {
			if _, err := f.ReadAt(soi[:], s.off); err != nil {
				return nil, err
			}
			starts = soi == [2]byte{0xFF, 0xD8}
		}
		switch {
		case starts:
			frames = append(frames, frags[i:i+1])
		case i == 0:
			return nil, fmt.Errorf("first fragment does not start a JPEG image")
		default:
			last := frames[len(frames)-1]
			frames[len(frames)-1] = last[:len(last)+1] // the next fragment in frags
		}
	}
	if len(frames) != nFrames {
		return nil, fmt.Errorf("found %d JPEG images in %d fragments for %d frames", len(frames), len(frags), nFrames)
	}
	return frames, nil
}

// pixelFormat is how stored values become signed integers: shift, mask
// (Bits Stored at High Bit) and sign extension.
type pixelFormat struct {
	shift   uint
	mask    uint32
	signBit uint32
	signed  bool
}

func formatOf(in *instance, shift uint) pixelFormat {
	return pixelFormat{
		shift:   shift,
		mask:    uint32(1)<<uint(in.bitsStored) - 1,
		signBit: uint32(1) << uint(in.bitsStored-1),
		signed:  in.pixelRepresentation == 1,
	}
}

func (p pixelFormat) value(s uint32) int32 {
	u := (s >> p.shift) & p.mask
	x := int32(u)
	if p.signed && u&p.signBit != 0 {
		x -= int32(p.mask) + 1
	}
	return x
}

// lutKey identifies a rescale table.
type lutKey struct {
	pf           pixelFormat
	bits         int
	slope, inter float64
}

// table returns the value in T of every stored value (2^Bits Allocated of
// them), so that converting a pixel is one lookup instead of mask, sign
// and rescale arithmetic. bad (nil when all fit) marks the stored values
// whose HU does not fit T (int16: not an integer, or out of range). The
// table is kept while the format and rescale stay the same, as they do
// across a series.
func (d *frameDecoder[T]) table(in *instance, pf pixelFormat, slope, inter float64) (lut []T, bad []bool) {
	key := lutKey{pf, in.bitsAllocated, slope, inter}
	if d.lut != nil && d.key == key {
		return d.lut, d.bad
	}
	size := 1 << uint(in.bitsAllocated)
	d.key, d.lut, d.bad = key, grow(d.lut, size), nil
	intOut := isIntType[T]()
	for s := range size {
		hu := float64(pf.value(uint32(s)))*slope + inter
		if intOut && (hu != math.Trunc(hu) || hu < math.MinInt16 || hu > math.MaxInt16) {
			if d.bad == nil {
				d.bad = make([]bool, size)
			}
			d.bad[s] = true
			d.lut[s] = 0
			continue
		}
		d.lut[s] = T(hu)
	}
	return d.lut, d.bad
}

// outOfRange is the refusal for a stored value whose HU does not fit int16.
func outOfRange(in *instance, pf pixelFormat, s uint32, slope, inter float64) error {
	hu := float64(pf.value(s))*slope + inter
	return refuse(ReasonValueOutOfRange, in.path, "rescaled value %v does not fit int16 HU", hu)
}

// rescaleNative converts one native frame (bytes as stored) into dst.
func (d *frameDecoder[T]) rescaleNative(in *instance, b []byte, slope, inter float64, dst []T) error {
	pf := formatOf(in, uint(in.highBit+1-in.bitsStored))
	lut, bad := d.table(in, pf, slope, inter)
	switch {
	case in.bitsAllocated == 8:
		b = b[:len(dst)]
		for i, x := range b {
			dst[i] = lut[x]
		}
		if bad != nil {
			for _, x := range b {
				if bad[x] {
					return outOfRange(in, pf, uint32(x), slope, inter)
				}
			}
		}
		return nil
	case in.ts == tsExplicitBE:
		b = b[:2*len(dst)]
		for i := range dst {
			dst[i] = lut[uint16(b[2*i])<<8|uint16(b[2*i+1])]
		}
		if bad != nil {
			for i := range dst {
				if s := uint16(b[2*i])<<8 | uint16(b[2*i+1]); bad[s] {
					return outOfRange(in, pf, uint32(s), slope, inter)
				}
			}
		}
		return nil
	default:
		b = b[:2*len(dst)]
		for i := range dst {
			dst[i] = lut[uint16(b[2*i])|uint16(b[2*i+1])<<8]
		}
		if bad != nil {
			for i := range dst {
				if s := uint16(b[2*i]) | uint16(b[2*i+1])<<8; bad[s] {
					return outOfRange(in, pf, uint32(s), slope, inter)
				}
			}
		}
		return nil
	}
}

// rescale converts decoded samples into dst.
func (d *frameDecoder[T]) rescale(in *instance, samples []uint16, shift uint, slope, inter float64, dst []T) error {
	pf := formatOf(in, shift)
	lut, bad := d.table(in, pf, slope, inter)
	samples = samples[:len(dst)]
	for i, s := range samples {
		dst[i] = lut[s]
	}
	if bad != nil {
		for _, s := range samples {
			if bad[s] {
				return outOfRange(in, pf, uint32(s), slope, inter)
			}
		}
	}
	return nil
}

func isIntType[T float32 | int16]() bool {
	var z T
	_, ok := any(z).(int16)
	return ok
}

// deflated decodes the frames of a deflated file through the DICOM
// library, which inflates it.
func (d *frameDecoder[T]) deflated(in *instance, targets []frameTarget[T]) error {
	ds, err := parseSafely(in.path, 0, dicom.SkipProcessingPixelDataValue(), dicom.AllowMissingMetaElementGroupLength(), dicom.AllowUnknownSpecificCharacterSet())
	if err != nil {
		return &Error{Reason: ReasonUnreadable, Path: in.path, Err: err}
	}
	e := elems(ds.Elements).find(tag.PixelData)
	if e == nil {
		return refuse(ReasonCorruptPixelData, in.path, "no Pixel Data")
	}
	info, ok := e.Value.GetValue().(dicom.PixelDataInfo)
	if !ok {
		return refuse(ReasonCorruptPixelData, in.path, "Pixel Data of unexpected type %T", e.Value.GetValue())
	}
	if info.IsEncapsulated || !info.IntentionallyUnprocessed {
		return refuse(ReasonCorruptPixelData, in.path, "encapsulated Pixel Data in native transfer syntax %s", in.ts)
	}
	frameBytes := in.rows * in.cols * in.bitsAllocated / 8
	if need := in.numberOfFrames * frameBytes; len(info.UnprocessedValueData) < need {
		return refuse(ReasonCorruptPixelData, in.path, "Pixel Data has %d bytes, %d needed", len(info.UnprocessedValueData), need)
	}
	for _, t := range targets {
		b := info.UnprocessedValueData[t.frame*frameBytes : (t.frame+1)*frameBytes]
		if err := d.rescaleNative(in, b, t.slope, t.inter, t.dst); err != nil {
			return err
		}
	}
	return nil
}
