package qr

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"io"

	"github.com/jpfielding/jpegs/pkg/compress/rle"
	"github.com/otonode/otonode/analysis/series/ljpeg"
	"github.com/otonode/otonode/dimse"
)

// ErrDecompress is wrapped by every error of Decompress.
var ErrDecompress = errors.New("qr: cannot decompress")

// maxDataSet bounds a data set Decompress holds in memory.
const maxDataSet = 1 << 30

// Decompress turns a data set in one of the syntaxes otonode stores —
// deflated explicit VR little endian, JPEG lossless (process 14, .57 and
// .70) or RLE lossless — into explicit VR little endian, for a C-MOVE or
// C-GET peer that does not accept the stored syntax. Only Pixel Data
// changes (encapsulated fragments become native OB/OW); every other
// element is copied as it is.
func Decompress(r io.Reader, transferSyntax string) (io.Reader, error) {
	switch transferSyntax {
	case dimse.ExplicitVRLittleEndian:
		return r, nil
	case dimse.DeflatedExplicitVRLittleEndian:
		return flate.NewReader(r), nil
	case dimse.JPEGLossless, dimse.JPEGLosslessSV1, dimse.RLELossless:
	default:
		return nil, fmt.Errorf("%w: transfer syntax %s", ErrDecompress, transferSyntax)
	}
	b, err := io.ReadAll(io.LimitReader(r, maxDataSet+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxDataSet {
		return nil, fmt.Errorf("%w: data set over %d bytes", ErrDecompress, maxDataSet)
	}
	out, err := decompressSet(b, transferSyntax == dimse.RLELossless)
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(out), nil
}

// pixelInfo is what decoding needs from the image pixel module.
type pixelInfo struct {
	rows, cols, bitsAllocated, samples, frames int
}

func decompressSet(b []byte, isRLE bool) ([]byte, error) {
	var out []byte
	pi := pixelInfo{samples: 1, frames: 1}
	for len(b) > 0 {
		if len(b) < 8 {
			return nil, fmt.Errorf("%w: truncated element", ErrDecompress)
		}
		tag := uint32(binary.LittleEndian.Uint16(b))<<16 | uint32(binary.LittleEndian.Uint16(b[2:]))
		vr := string(b[4:6])
		hdr, length := 8, uint64(binary.LittleEndian.Uint16(b[6:]))
		if longVR(vr) {
			if len(b) < 12 {
				return nil, fmt.Errorf("%w: truncated element", ErrDecompress)
			}
			hdr, length = 12, uint64(binary.LittleEndian.Uint32(b[8:]))
		}
		if tag == 0x7FE00010 && length == 0xFFFFFFFF {
			frames, rest, err := fragments(b[hdr:])
			if err != nil {
				return nil, err
			}
			pix, err := decodeFrames(frames, pi, isRLE)
			if err != nil {
				return nil, err
			}
			vr := "OW"
			if pi.bitsAllocated <= 8 {
				vr = "OB"
			}
			if len(pix)%2 == 1 {
				pix = append(pix, 0)
			}
			out = binary.LittleEndian.AppendUint32(out, tag<<16|tag>>16)
			out = append(out, vr...)
			out = append(out, 0, 0)
			out = binary.LittleEndian.AppendUint32(out, uint32(len(pix)))
			out = append(out, pix...)
			b = rest
			continue
		}
		n := uint64(hdr) + length
		if length == 0xFFFFFFFF {
			// A sequence of undefined length: copy it whole.
			k, err := undefinedLength(b[hdr:], 0)
			if err != nil {
				return nil, err
			}
			n = uint64(hdr + k)
		}
		if n > uint64(len(b)) {
			return nil, fmt.Errorf("%w: element (%04X,%04X) beyond the data", ErrDecompress, tag>>16, tag&0xFFFF)
		}
		v := b[hdr:n]
		switch tag {
		case 0x00280002:
			pi.samples = us(v)
		case 0x00280010:
			pi.rows = us(v)
		case 0x00280011:
			pi.cols = us(v)
		case 0x00280100:
			pi.bitsAllocated = us(v)
		case 0x00280008:
			fmt.Sscan(string(bytes.Trim(v, " \x00")), &pi.frames)
		}
		out = append(out, b[:n]...)
		b = b[n:]
	}
	return out, nil
}

func us(v []byte) int {
	if len(v) < 2 {
		return 0
	}
	return int(binary.LittleEndian.Uint16(v))
}

func longVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

// undefinedLength returns the length of an undefined-length value up to and
// including its sequence delimitation item.
func undefinedLength(b []byte, depth int) (int, error) {
	if depth > 16 {
		return 0, fmt.Errorf("%w: sequences nested too deep", ErrDecompress)
	}
	n := 0
	for {
		if len(b) < n+8 {
			return 0, fmt.Errorf("%w: unterminated sequence", ErrDecompress)
		}
		tag := uint32(binary.LittleEndian.Uint16(b[n:]))<<16 | uint32(binary.LittleEndian.Uint16(b[n+2:]))
		switch tag {
		case 0xFFFEE0DD, 0xFFFEE00D:
			return n + 8, nil
		case 0xFFFEE000:
			l := binary.LittleEndian.Uint32(b[n+4:])
			n += 8
			if l == 0xFFFFFFFF {
				k, err := undefinedLength(b[n:], depth+1)
				if err != nil {
					return 0, err
				}
				n += k
			} else {
				n += int(l)
			}
			continue
		}
		// An element inside an item of undefined length.
		vr := string(b[n+4 : n+6])
		hdr, l := 8, uint64(binary.LittleEndian.Uint16(b[n+6:]))
		if longVR(vr) {
			if len(b) < n+12 {
				return 0, fmt.Errorf("%w: truncated element", ErrDecompress)
			}
			hdr, l = 12, uint64(binary.LittleEndian.Uint32(b[n+8:]))
		}
		n += hdr
		if l == 0xFFFFFFFF {
			k, err := undefinedLength(b[n:], depth+1)
			if err != nil {
				return 0, err
			}
			n += k
		} else {
			n += int(l)
		}
		if n > len(b) {
			return 0, fmt.Errorf("%w: element beyond the data", ErrDecompress)
		}
	}
}

// fragments splits encapsulated pixel data (PS3.5 A.4) into the basic
// offset table's frames and returns what follows the delimiter.
func fragments(b []byte) (frames [][]byte, rest []byte, err error) {
	var items [][]byte
	for {
		if len(b) < 8 {
			return nil, nil, fmt.Errorf("%w: truncated pixel data", ErrDecompress)
		}
		tag := uint32(binary.LittleEndian.Uint16(b))<<16 | uint32(binary.LittleEndian.Uint16(b[2:]))
		l := uint64(binary.LittleEndian.Uint32(b[4:]))
		if tag == 0xFFFEE0DD {
			rest = b[8:]
			break
		}
		if tag != 0xFFFEE000 || 8+l > uint64(len(b)) {
			return nil, nil, fmt.Errorf("%w: bad pixel data item", ErrDecompress)
		}
		items = append(items, b[8:8+l])
		b = b[8+l:]
	}
	if len(items) < 2 {
		return nil, nil, fmt.Errorf("%w: no pixel data fragment", ErrDecompress)
	}
	bot, frags := items[0], items[1:]
	if len(bot) == 0 {
		return frags, rest, nil // grouped by the caller
	}
	// Frame k starts at the fragment whose offset the table gives.
	var offsets []int
	for i := 0; i+4 <= len(bot); i += 4 {
		offsets = append(offsets, int(binary.LittleEndian.Uint32(bot[i:])))
	}
	pos := 0
	frameOf := make([]int, len(frags))
	k := -1
	for i, f := range frags {
		for k+1 < len(offsets) && offsets[k+1] == pos {
			k++
		}
		if k < 0 {
			return nil, nil, fmt.Errorf("%w: offset table does not start at the first fragment", ErrDecompress)
		}
		frameOf[i] = k
		pos += 8 + len(f)
	}
	frames = make([][]byte, len(offsets))
	for i, f := range frags {
		frames[frameOf[i]] = append(frames[frameOf[i]], f...)
	}
	return frames, rest, nil
}

// decodeFrames decodes each frame to native little endian samples.
func decodeFrames(frames [][]byte, pi pixelInfo, isRLE bool) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("%w: decoder panic: %v", ErrDecompress, r)
		}
	}()
	if pi.samples != 1 || pi.rows == 0 || pi.cols == 0 || (pi.bitsAllocated != 8 && pi.bitsAllocated != 16) {
		return nil, fmt.Errorf("%w: only single-sample 8- or 16-bit images (have %d samples, %d bits)", ErrDecompress, pi.samples, pi.bitsAllocated)
	}
	if len(frames) != pi.frames && !isRLE && pi.frames > 1 {
		frames = byEOI(frames)
	}
	if len(frames) != pi.frames {
		if pi.frames != 1 {
			return nil, fmt.Errorf("%w: %d fragments for %d frames", ErrDecompress, len(frames), pi.frames)
		}
		frames = [][]byte{bytes.Join(frames, nil)}
	}
	n := pi.rows * pi.cols
	for _, f := range frames {
		var samples []uint16
		if isRLE {
			if n > 64*len(f) {
				return nil, fmt.Errorf("%w: RLE frame too short", ErrDecompress)
			}
			img, err := rle.Decode(f, pi.cols, pi.rows)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrDecompress, err)
			}
			switch im := img.(type) {
			case *image.Gray16:
				samples = make([]uint16, n)
				for i := range samples {
					samples[i] = uint16(im.Pix[2*i])<<8 | uint16(im.Pix[2*i+1])
				}
			case *image.Gray:
				samples = make([]uint16, n)
				for i := range samples {
					samples[i] = uint16(im.Pix[i])
				}
			default:
				return nil, fmt.Errorf("%w: RLE image of type %T", ErrDecompress, img)
			}
		} else {
			// Lossless JPEG spends at least one bit per sample, so a
			// frame claiming more pixels than that is refused before
			// the decoder allocates them.
			if n > 8*len(f) {
				return nil, fmt.Errorf("%w: JPEG frame of %d bytes cannot hold %d×%d pixels", ErrDecompress, len(f), pi.cols, pi.rows)
			}
			li, err := ljpeg.Decode(f)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrDecompress, err)
			}
			if li.Width != pi.cols || li.Height != pi.rows {
				return nil, fmt.Errorf("%w: decoded %d×%d, header says %d×%d", ErrDecompress, li.Width, li.Height, pi.cols, pi.rows)
			}
			samples = li.Pix
		}
		if len(samples) < n {
			return nil, fmt.Errorf("%w: short frame", ErrDecompress)
		}
		for _, s := range samples[:n] {
			if pi.bitsAllocated == 8 {
				out = append(out, byte(s))
			} else {
				out = binary.LittleEndian.AppendUint16(out, s)
			}
		}
	}
	return out, nil
}

// byEOI groups JPEG fragments without an offset table into frames: a
// frame's last fragment ends with the EOI marker, perhaps padded.
func byEOI(frags [][]byte) [][]byte {
	var out [][]byte
	var cur []byte
	for _, f := range frags {
		cur = append(cur, f...)
		t := bytes.TrimRight(f, "\x00")
		if len(t) >= 2 && t[len(t)-2] == 0xFF && t[len(t)-1] == 0xD9 {
			out = append(out, cur)
			cur = nil
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}
