package series

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"math"

	"github.com/jpfielding/jpegs/pkg/compress/rle"
	"github.com/otonode/otonode/analysis/series/ljpeg"
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
func Decode[T float32 | int16](ctx context.Context, l *Layout) (*volume.Volume[T], error) {
	v := volume.New[T](l.Grid)
	plane := l.Grid.Size[0] * l.Grid.Size[1]
	// Which slab each (file, frame) goes to.
	type target struct{ frame, k int }
	byPath := make(map[string][]target)
	var paths []string
	for k, s := range l.Slices {
		if _, ok := byPath[s.Path]; !ok {
			paths = append(paths, s.Path)
		}
		byPath[s.Path] = append(byPath[s.Path], target{s.Frame, k})
	}
	workers := l.workers
	if workers <= 0 {
		workers = 1
	}
	err := forEach(ctx, len(paths), workers, func(i int) error {
		in := l.instances[paths[i]]
		frames, err := readFrames(in)
		if err != nil {
			return err
		}
		for _, t := range byPath[in.path] {
			s := l.Slices[t.k]
			dst := v.Data[t.k*plane : (t.k+1)*plane]
			if err := decodeFrame(in, frames, t.frame, s.RescaleSlope, s.RescaleInter, dst); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

// pixelFrames holds the pixel data of one file: either native bytes or one
// compressed byte string per frame.
type pixelFrames struct {
	native     []byte
	compressed [][]byte
}

func readFrames(in *instance) (*pixelFrames, error) {
	ds, err := parseSafely(in.path, dicom.SkipProcessingPixelDataValue(), dicom.AllowMissingMetaElementGroupLength(), dicom.AllowUnknownSpecificCharacterSet())
	if err != nil {
		return nil, &Error{Reason: ReasonUnreadable, Path: in.path, Err: err}
	}
	e := elems(ds.Elements).find(tag.PixelData)
	if e == nil {
		return nil, refuse(ReasonCorruptPixelData, in.path, "no Pixel Data")
	}
	info, ok := e.Value.GetValue().(dicom.PixelDataInfo)
	if !ok {
		return nil, refuse(ReasonCorruptPixelData, in.path, "Pixel Data of unexpected type %T", e.Value.GetValue())
	}
	encapsulated := in.ts == tsJPEGLL57 || in.ts == tsJPEGLL70 || in.ts == tsRLE
	if !encapsulated {
		if info.IsEncapsulated || !info.IntentionallyUnprocessed {
			return nil, refuse(ReasonCorruptPixelData, in.path, "encapsulated Pixel Data in native transfer syntax %s", in.ts)
		}
		need := in.numberOfFrames * in.rows * in.cols * in.bitsAllocated / 8
		if len(info.UnprocessedValueData) < need {
			return nil, refuse(ReasonCorruptPixelData, in.path, "Pixel Data has %d bytes, %d needed", len(info.UnprocessedValueData), need)
		}
		return &pixelFrames{native: info.UnprocessedValueData}, nil
	}
	if !info.IsEncapsulated {
		return nil, refuse(ReasonCorruptPixelData, in.path, "native Pixel Data in compressed transfer syntax %s", in.ts)
	}
	// The library returns each fragment as a "frame"; regroup them.
	frags := make([][]byte, 0, len(info.Frames))
	for _, f := range info.Frames {
		frags = append(frags, f.EncapsulatedData.Data)
	}
	frames, err := groupFragments(frags, in.numberOfFrames, in.ts == tsRLE)
	if err != nil {
		return nil, &Error{Reason: ReasonCorruptPixelData, Path: in.path, Err: err}
	}
	return &pixelFrames{compressed: frames}, nil
}

// groupFragments turns the fragments of encapsulated Pixel Data into one
// byte string per frame (PS3.5 A.4): a single frame may span any number of
// fragments; RLE has exactly one fragment per frame; a JPEG frame starts
// with the SOI marker, which is how frames are found without a Basic
// Offset Table (the library discards it).
func groupFragments(frags [][]byte, nFrames int, isRLE bool) ([][]byte, error) {
	switch {
	case len(frags) == 0:
		return nil, fmt.Errorf("no fragments")
	case nFrames == 1:
		return [][]byte{bytes.Join(frags, nil)}, nil
	case len(frags) == nFrames:
		return frags, nil
	case isRLE:
		return nil, fmt.Errorf("RLE: %d fragments for %d frames (one per frame required)", len(frags), nFrames)
	}
	var frames [][]byte
	for i, f := range frags {
		if len(f) >= 2 && f[0] == 0xFF && f[1] == 0xD8 {
			frames = append(frames, bytes.Clone(f))
			continue
		}
		if i == 0 {
			return nil, fmt.Errorf("first fragment does not start a JPEG image")
		}
		frames[len(frames)-1] = append(frames[len(frames)-1], f...)
	}
	if len(frames) != nFrames {
		return nil, fmt.Errorf("found %d JPEG images in %d fragments for %d frames", len(frames), len(frags), nFrames)
	}
	return frames, nil
}

// decodeFrame writes frame f of in, rescaled, into dst (rows×cols).
func decodeFrame[T float32 | int16](in *instance, pf *pixelFrames, f int, slope, inter float64, dst []T) error {
	n := in.rows * in.cols
	shift := uint(in.highBit + 1 - in.bitsStored)
	var samples []uint16 // stored values, before masking
	if pf.native != nil {
		bpp := in.bitsAllocated / 8
		b := pf.native[f*n*bpp : (f+1)*n*bpp]
		samples = make([]uint16, n)
		switch {
		case bpp == 1:
			for i, x := range b {
				samples[i] = uint16(x)
			}
		case in.ts == tsExplicitBE:
			for i := range samples {
				samples[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
			}
		default:
			for i := range samples {
				samples[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
			}
		}
	} else {
		if f >= len(pf.compressed) {
			return refuse(ReasonCorruptPixelData, in.path, "frame %d of %d missing", f+1, len(pf.compressed))
		}
		var err error
		if samples, err = decompress(in, pf.compressed[f]); err != nil {
			return &Error{Reason: ReasonCorruptPixelData, Path: in.path, Detail: fmt.Sprintf("frame %d", f+1), Err: err}
		}
		if in.ts != tsRLE {
			shift = 0 // JPEG codes the stored bits right-aligned
		}
	}
	return rescale(in, samples, shift, slope, inter, dst)
}

// rescale masks the stored bits, extends the sign and applies the rescale
// slope and intercept.
func rescale[T float32 | int16](in *instance, samples []uint16, shift uint, slope, inter float64, dst []T) error {
	mask := uint32(1)<<uint(in.bitsStored) - 1
	signBit := uint32(1) << uint(in.bitsStored-1)
	signed := in.pixelRepresentation == 1
	if isIntType[T]() {
		for i, s := range samples {
			u := (uint32(s) >> shift) & mask
			x := int32(u)
			if signed && u&signBit != 0 {
				x -= int32(mask) + 1
			}
			hu := float64(x)*slope + inter
			if hu != math.Trunc(hu) || hu < math.MinInt16 || hu > math.MaxInt16 {
				return refuse(ReasonValueOutOfRange, in.path, "rescaled value %v does not fit int16 HU", hu)
			}
			dst[i] = T(hu)
		}
		return nil
	}
	for i, s := range samples {
		u := (uint32(s) >> shift) & mask
		x := int32(u)
		if signed && u&signBit != 0 {
			x -= int32(mask) + 1
		}
		dst[i] = T(float64(x)*slope + inter)
	}
	return nil
}

func isIntType[T float32 | int16]() bool {
	var z T
	_, ok := any(z).(int16)
	return ok
}

// decompress runs the codec under recover() (third-party decoders on
// untrusted data) and checks the image shape against the header.
func decompress(in *instance, data []byte) (samples []uint16, err error) {
	defer func() {
		if r := recover(); r != nil {
			samples, err = nil, fmt.Errorf("decoder panic: %v", r)
		}
	}()
	if in.ts != tsRLE {
		li, err := ljpeg.Decode(data)
		if err != nil {
			return nil, err
		}
		if li.Width != in.cols || li.Height != in.rows {
			return nil, fmt.Errorf("decoded %d×%d, header says %d×%d", li.Width, li.Height, in.cols, in.rows)
		}
		if li.Precision > in.bitsAllocated {
			return nil, fmt.Errorf("JPEG precision %d exceeds Bits Allocated %d", li.Precision, in.bitsAllocated)
		}
		return li.Pix, nil
	}
	// A PackBits run expands 2 bytes into at most 128: refuse frames
	// claiming more pixels than the data could hold before the codec
	// allocates them.
	if in.rows*in.cols > 64*len(data) {
		return nil, fmt.Errorf("RLE frame of %d bytes cannot hold %d×%d pixels", len(data), in.cols, in.rows)
	}
	img, err := rle.Decode(data, in.cols, in.rows)
	if err != nil {
		return nil, err
	}
	if b := img.Bounds(); b.Dx() != in.cols || b.Dy() != in.rows || b.Min != (image.Point{}) {
		return nil, fmt.Errorf("decoded %v, header says %d×%d", b, in.cols, in.rows)
	}
	switch im := img.(type) {
	case *image.Gray16:
		if in.bitsAllocated != 16 {
			return nil, fmt.Errorf("16-bit RLE for Bits Allocated %d", in.bitsAllocated)
		}
		samples = make([]uint16, in.rows*in.cols)
		for i := range samples {
			samples[i] = uint16(im.Pix[2*i])<<8 | uint16(im.Pix[2*i+1])
		}
	case *image.Gray:
		if in.bitsAllocated != 8 {
			return nil, fmt.Errorf("8-bit RLE for Bits Allocated %d", in.bitsAllocated)
		}
		samples = make([]uint16, len(im.Pix))
		for i, x := range im.Pix {
			samples[i] = uint16(x)
		}
	default:
		return nil, fmt.Errorf("decoded image of type %T, want grey", img)
	}
	return samples, nil
}
