// Package ljpeg decodes lossless JPEG (ITU-T T.81 process 14, Annex H) with
// one component, as DICOM transfer syntaxes 1.2.840.10008.1.2.4.57 and
// .70 carry CT slices. It exists because the pure-Go decoder we tried
// mishandles the 16-bit difference category (SSSS = 16), which every
// unsigned 16-bit image with a dark first pixel hits.
//
// Decode returns the samples as stored (precision P bits, point transform
// applied), in raster order; the caller interprets sign and rescale.
package ljpeg

import (
	"errors"
	"fmt"
)

// ErrFormat is wrapped by every decoding error.
var ErrFormat = errors.New("ljpeg: invalid or unsupported stream")

// Image is a decoded single-component lossless JPEG.
type Image struct {
	Width, Height int
	Precision     int // bits per sample, 2..16
	Pix           []uint16
}

// MaxPixels bounds the image a header may ask for.
const MaxPixels = 1 << 28

type huffTable struct {
	maxcode [18]int32 // maxcode[l] = largest code of length l, -1 if none
	valptr  [17]int32
	mincode [17]int32
	vals    []byte
	ok      bool
}

func (h *huffTable) build(counts [16]byte, vals []byte) error {
	code, k := int32(0), int32(0)
	for l := 1; l <= 16; l++ {
		n := int32(counts[l-1])
		h.valptr[l] = k
		h.mincode[l] = code
		code += n
		k += n
		if n > 0 {
			h.maxcode[l] = code - 1
		} else {
			h.maxcode[l] = -1
		}
		if code > 1<<l {
			return fmt.Errorf("%w: Huffman table over-subscribed", ErrFormat)
		}
		code <<= 1
	}
	h.maxcode[17] = 1<<31 - 1 // sentinel
	h.vals = vals
	h.ok = true
	return nil
}

// bitReader reads entropy-coded bits, removing stuffed zero bytes and
// stopping at markers.
type bitReader struct {
	data   []byte
	pos    int
	acc    uint32
	nbits  uint
	marker bool // a marker was reached; further bits read as zeros
	zeros  int  // zero bits supplied past a marker
}

func (b *bitReader) fill() {
	for b.nbits <= 24 {
		var c byte
		if b.marker || b.pos >= len(b.data) {
			b.zeros += 8
			c = 0
		} else {
			c = b.data[b.pos]
			if c == 0xFF {
				if b.pos+1 < len(b.data) && b.data[b.pos+1] == 0x00 {
					b.pos += 2
				} else {
					b.marker = true
					c = 0
					b.zeros += 8
				}
			} else {
				b.pos++
			}
		}
		b.acc |= uint32(c) << (24 - b.nbits)
		b.nbits += 8
	}
}

func (b *bitReader) bits(n uint) int32 {
	if n == 0 {
		return 0
	}
	if b.nbits < n {
		b.fill()
	}
	v := int32(b.acc >> (32 - n))
	b.acc <<= n
	b.nbits -= n
	return v
}

func (b *bitReader) decode(h *huffTable) (int, error) {
	if b.nbits < 16 {
		b.fill()
	}
	code := int32(0)
	for l := 1; l <= 16; l++ {
		code = code<<1 | int32(b.acc>>31)
		b.acc <<= 1
		b.nbits--
		if code <= h.maxcode[l] {
			i := h.valptr[l] + code - h.mincode[l]
			if int(i) >= len(h.vals) {
				break
			}
			return int(h.vals[i]), nil
		}
	}
	return 0, fmt.Errorf("%w: bad Huffman code", ErrFormat)
}

// overrun reports whether more bits were consumed than the data held.
func (b *bitReader) overrun() bool { return b.zeros > 0 && int(b.nbits) < b.zeros }

// restart aligns to a byte and consumes an RSTn marker.
func (b *bitReader) restart() error {
	// Unread whole bytes still in the accumulator.
	b.acc, b.nbits = 0, 0
	// Find the marker: skip fill bits already consumed by aligning.
	if !b.marker {
		// The accumulator may have pre-fetched bytes; back up to the
		// marker by scanning forward from the last known position.
		for b.pos+1 < len(b.data) && !(b.data[b.pos] == 0xFF && b.data[b.pos+1] != 0x00) {
			b.pos++
		}
	}
	if b.pos+1 >= len(b.data) || b.data[b.pos] != 0xFF || b.data[b.pos+1]&0xF8 != 0xD0 {
		return fmt.Errorf("%w: missing restart marker", ErrFormat)
	}
	b.pos += 2
	b.marker, b.zeros = false, 0
	return nil
}

// Decode decodes a complete lossless JPEG byte stream (SOI … EOI).
func Decode(data []byte) (*Image, error) { return DecodeInto(data, nil) }

// DecodeInto is Decode that stores the samples in pix when it has the
// capacity (the returned Image's Pix then shares pix's array), so a caller
// decoding many frames of one size allocates the sample buffer once.
func DecodeInto(data []byte, pix []uint16) (*Image, error) {
	if len(data) < 4 || data[0] != 0xFF || data[1] != 0xD8 {
		return nil, fmt.Errorf("%w: no SOI marker", ErrFormat)
	}
	var (
		img     *Image
		tables  [4]huffTable
		restart int
		comp    int = -1
	)
	pos := 2
	for {
		// Markers may be preceded by fill bytes 0xFF.
		for pos < len(data) && data[pos] == 0xFF && pos+1 < len(data) && data[pos+1] == 0xFF {
			pos++
		}
		if pos+4 > len(data) || data[pos] != 0xFF {
			return nil, fmt.Errorf("%w: marker expected at offset %d", ErrFormat, pos)
		}
		m := data[pos+1]
		if m == 0xD9 {
			return nil, fmt.Errorf("%w: EOI before scan", ErrFormat)
		}
		n := int(data[pos+2])<<8 | int(data[pos+3])
		if n < 2 || pos+2+n > len(data) {
			return nil, fmt.Errorf("%w: segment length %d at offset %d", ErrFormat, n, pos)
		}
		seg := data[pos+4 : pos+2+n]
		pos += 2 + n
		switch {
		case m == 0xC3: // SOF3, lossless Huffman
			if len(seg) < 6 {
				return nil, fmt.Errorf("%w: short SOF3", ErrFormat)
			}
			p := int(seg[0])
			h := int(seg[1])<<8 | int(seg[2])
			w := int(seg[3])<<8 | int(seg[4])
			nf := int(seg[5])
			if nf != 1 || len(seg) < 9 {
				return nil, fmt.Errorf("%w: %d components (one supported)", ErrFormat, nf)
			}
			if p < 2 || p > 16 || w == 0 || h == 0 || w*h > MaxPixels {
				return nil, fmt.Errorf("%w: precision %d, %d×%d", ErrFormat, p, w, h)
			}
			comp = int(seg[6])
			img = &Image{Width: w, Height: h, Precision: p}
		case m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC:
			return nil, fmt.Errorf("%w: SOF%d is not lossless Huffman (SOF3)", ErrFormat, m-0xC0)
		case m == 0xC4: // DHT
			for len(seg) > 0 {
				if len(seg) < 17 {
					return nil, fmt.Errorf("%w: short DHT", ErrFormat)
				}
				tc, th := seg[0]>>4, seg[0]&15
				var counts [16]byte
				copy(counts[:], seg[1:17])
				total := 0
				for _, c := range counts {
					total += int(c)
				}
				if tc != 0 || th > 3 || len(seg) < 17+total || total > 256 {
					return nil, fmt.Errorf("%w: DHT class %d id %d", ErrFormat, tc, th)
				}
				tables[th] = huffTable{}
				if err := tables[th].build(counts, append([]byte(nil), seg[17:17+total]...)); err != nil {
					return nil, err
				}
				seg = seg[17+total:]
			}
		case m == 0xDD: // DRI
			if len(seg) < 2 {
				return nil, fmt.Errorf("%w: short DRI", ErrFormat)
			}
			restart = int(seg[0])<<8 | int(seg[1])
		case m == 0xDA: // SOS
			if img == nil {
				return nil, fmt.Errorf("%w: SOS before SOF3", ErrFormat)
			}
			if len(seg) < 6 || seg[0] != 1 || int(seg[1]) != comp {
				return nil, fmt.Errorf("%w: scan must hold the one component", ErrFormat)
			}
			td := seg[2] >> 4
			pred := int(seg[3])
			pt := int(seg[5] & 15)
			if td > 3 || !tables[td].ok {
				return nil, fmt.Errorf("%w: scan uses undefined Huffman table %d", ErrFormat, td)
			}
			if pred < 1 || pred > 7 || pt >= img.Precision {
				return nil, fmt.Errorf("%w: predictor %d, point transform %d", ErrFormat, pred, pt)
			}
			// Every sample costs at least one bit: refuse headers that
			// claim more samples than the data can hold before allocating.
			if img.Width*img.Height > 8*(len(data)-pos)+64 {
				return nil, fmt.Errorf("%w: %d×%d samples cannot fit in %d bytes", ErrFormat, img.Width, img.Height, len(data)-pos)
			}
			if n := img.Width * img.Height; cap(pix) >= n {
				img.Pix = pix[:n]
			} else {
				img.Pix = make([]uint16, n)
			}
			if err := img.scan(data[pos:], &tables[td], pred, pt, restart); err != nil {
				return nil, err
			}
			return img, nil
		case m == 0xD8 || (m >= 0xD0 && m <= 0xD7) || m == 0x01:
			return nil, fmt.Errorf("%w: unexpected marker FF%02X", ErrFormat, m)
		default: // APPn, COM, DQT, DNL and others: skip
		}
	}
}

// scan decodes the entropy-coded segment (T.81 H.1.2).
func (img *Image) scan(data []byte, h *huffTable, pred, pt, restart int) error {
	w, ht := img.Width, img.Height
	br := &bitReader{data: data}
	initial := int32(1) << uint(img.Precision-pt-1)
	mask := int32(1)<<uint(img.Precision-pt) - 1
	cur := make([]int32, w)
	prev := make([]int32, w)
	n := 0
	firstRow := true // first line of the image or of a restart interval
	for y := 0; y < ht; y++ {
		for x := 0; x < w; x++ {
			reset := false
			if restart > 0 && n > 0 && n%restart == 0 {
				if err := br.restart(); err != nil {
					return err
				}
				reset = true
				firstRow = true
			}
			s, err := br.decode(h)
			if err != nil {
				return err
			}
			var diff int32
			switch {
			case s == 16:
				diff = 32768
			case s > 16:
				return fmt.Errorf("%w: difference category %d", ErrFormat, s)
			case s > 0:
				v := br.bits(uint(s))
				if v < 1<<uint(s-1) {
					v -= 1<<uint(s) - 1
				}
				diff = v
			}
			var p int32
			switch {
			case reset || (y == 0 && x == 0):
				p = initial
			case firstRow: // x > 0 here
				p = cur[x-1]
			case x == 0:
				p = prev[0]
			default:
				ra, rb, rc := cur[x-1], prev[x], prev[x-1]
				switch pred {
				case 1:
					p = ra
				case 2:
					p = rb
				case 3:
					p = rc
				case 4:
					p = ra + rb - rc
				case 5:
					p = ra + (rb-rc)>>1
				case 6:
					p = rb + (ra-rc)>>1
				case 7:
					p = (ra + rb) >> 1
				}
			}
			v := (p + diff) & 0xFFFF & mask
			cur[x] = v
			img.Pix[y*w+x] = uint16(v << uint(pt))
			n++
		}
		if br.overrun() {
			return fmt.Errorf("%w: entropy-coded data ends at line %d of %d", ErrFormat, y+1, ht)
		}
		prev, cur = cur, prev
		firstRow = false
	}
	return nil
}
