package series

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/otonode/otonode/analysis/series/ljpeg"
)

// decompress decodes one compressed frame of in into buf (grown when
// short) and returns the samples. The decoders run under recover(): they
// read untrusted bytes, and a bad frame must be refused, not crash.
func decompress(in *instance, data []byte, buf []uint16) (samples []uint16, err error) {
	defer func() {
		if r := recover(); r != nil {
			samples, err = buf, fmt.Errorf("decoder panic: %v", r)
		}
	}()
	if in.ts == tsRLE {
		// A PackBits run expands 2 bytes into at most 128: refuse frames
		// claiming more pixels than the data could hold before the
		// sample buffer grows to them.
		if in.rows*in.cols > 64*len(data) {
			return buf, fmt.Errorf("RLE frame of %d bytes cannot hold %d×%d pixels", len(data), in.cols, in.rows)
		}
		buf = grow(buf, in.rows*in.cols)
		return buf, decodeRLE(data, in.bitsAllocated/8, buf)
	}
	li, err := ljpeg.DecodeInto(data, buf)
	if err != nil {
		return buf, err
	}
	if cap(li.Pix) > cap(buf) {
		buf = li.Pix // keep the larger array for the next frame
	}
	if li.Width != in.cols || li.Height != in.rows {
		return buf, fmt.Errorf("decoded %d×%d, header says %d×%d", li.Width, li.Height, in.cols, in.rows)
	}
	if li.Precision > in.bitsAllocated {
		return buf, fmt.Errorf("JPEG precision %d exceeds Bits Allocated %d", li.Precision, in.bitsAllocated)
	}
	return li.Pix, nil
}

var errRLE = errors.New("RLE")

// decodeRLE decodes one RLE Lossless frame (PS3.5 Annex G) of
// single-sample pixels, bytesPerSample (1 or 2) bytes each, into dst (one
// sample per pixel). The frame is a 64-byte header (segment count, then
// 15 segment offsets) and one PackBits segment per byte plane, the most
// significant plane first.
func decodeRLE(data []byte, bytesPerSample int, dst []uint16) error {
	if len(data) < 64 {
		return fmt.Errorf("%w: %d-byte frame has no header", errRLE, len(data))
	}
	nseg := int(binary.LittleEndian.Uint32(data))
	if nseg != bytesPerSample {
		return fmt.Errorf("%w: %d segments for %d-byte samples", errRLE, nseg, bytesPerSample)
	}
	var offs [16]int
	for i := range nseg {
		offs[i] = int(binary.LittleEndian.Uint32(data[4+4*i:]))
	}
	offs[nseg] = len(data)
	for i := range nseg {
		if offs[i] < 64 || offs[i] > offs[i+1] {
			return fmt.Errorf("%w: segment %d at offset %d", errRLE, i+1, offs[i])
		}
	}
	clear(dst)
	for i := range nseg {
		shift := uint(8 * (nseg - 1 - i))
		if err := unpackBits(data[offs[i]:offs[i+1]], dst, shift); err != nil {
			return fmt.Errorf("%w: segment %d: %w", errRLE, i+1, err)
		}
	}
	return nil
}

// unpackBits decodes a PackBits byte stream (PS3.5 G.3.1) and ORs byte i,
// shifted left by shift, into dst[i]. It must fill dst; what a segment
// holds beyond that (an encoder's padding to even length) is ignored.
func unpackBits(src []byte, dst []uint16, shift uint) error {
	n := 0
	for p := 0; p < len(src) && n < len(dst); {
		h := int8(src[p])
		p++
		switch {
		case h >= 0: // h+1 literal bytes
			k := int(h) + 1
			if p+k > len(src) {
				return fmt.Errorf("literal run of %d at byte %d overruns the segment", k, p-1)
			}
			for _, b := range src[p : p+min(k, len(dst)-n)] {
				dst[n] |= uint16(b) << shift
				n++
			}
			p += k
		case h != -128: // the next byte 1-h times
			if p >= len(src) {
				return fmt.Errorf("replicate run at byte %d has no value", p-1)
			}
			k := min(1-int(h), len(dst)-n)
			v := uint16(src[p]) << shift
			for j := n; j < n+k; j++ {
				dst[j] |= v
			}
			n += k
			p++
		}
	}
	if n != len(dst) {
		return fmt.Errorf("%d of %d bytes", n, len(dst))
	}
	return nil
}
