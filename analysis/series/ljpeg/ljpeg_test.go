package ljpeg

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// encoder is a minimal lossless JPEG writer for tests: one component, a
// flat Huffman table (every category coded in 5 bits), any predictor,
// point transform and restart interval.
type encoder struct {
	out   []byte
	acc   uint32
	nbits uint
}

func (e *encoder) put(v uint32, n uint) {
	for i := int(n) - 1; i >= 0; i-- {
		e.acc = e.acc<<1 | (v>>uint(i))&1
		e.nbits++
		if e.nbits == 8 {
			b := byte(e.acc)
			e.out = append(e.out, b)
			if b == 0xFF {
				e.out = append(e.out, 0)
			}
			e.acc, e.nbits = 0, 0
		}
	}
}

func (e *encoder) flush() {
	for e.nbits != 0 {
		e.put(1, 1)
	}
}

func encode(pix []uint16, w, h, p, pred, pt, restart int) []byte {
	e := &encoder{out: []byte{0xFF, 0xD8}}
	e.out = append(e.out, 0xFF, 0xC3, 0, 11, byte(p), byte(h>>8), byte(h), byte(w>>8), byte(w), 1, 1, 0x11, 0)
	dht := []byte{0xFF, 0xC4, 0, 2 + 17 + 17, 0x00, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	for s := 0; s <= 16; s++ {
		dht = append(dht, byte(s))
	}
	e.out = append(e.out, dht...)
	if restart > 0 {
		e.out = append(e.out, 0xFF, 0xDD, 0, 4, byte(restart>>8), byte(restart))
	}
	e.out = append(e.out, 0xFF, 0xDA, 0, 8, 1, 1, 0x00, byte(pred), 0, byte(pt))
	vals := make([]int32, len(pix))
	for i, v := range pix {
		vals[i] = int32(v) >> uint(pt)
	}
	first := true
	rst := 0
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			n := y*w + x
			reset := false
			if restart > 0 && n > 0 && n%restart == 0 {
				e.flush()
				e.out = append(e.out, 0xFF, byte(0xD0+rst%8))
				rst++
				reset, first = true, true
			}
			var pr int32
			cur := func(i int) int32 { return vals[y*w+i] }
			up := func(i int) int32 { return vals[(y-1)*w+i] }
			switch {
			case reset || n == 0:
				pr = 1 << uint(p-pt-1)
			case first:
				pr = cur(x - 1)
			case x == 0:
				pr = up(0)
			default:
				ra, rb, rc := cur(x-1), up(x), up(x-1)
				pr = [...]int32{0, ra, rb, rc, ra + rb - rc, ra + (rb-rc)>>1, rb + (ra-rc)>>1, (ra + rb) >> 1}[pred]
			}
			d := (vals[n] - pr) & 0xFFFF
			if d >= 32768 {
				d -= 65536
			}
			var s uint
			for m := abs(d); m > 0; m >>= 1 {
				s++
			}
			e.put(uint32(s), 5)
			switch {
			case s == 16:
			case s > 0:
				b := d
				if d < 0 {
					b = d + (1 << s) - 1
				}
				e.put(uint32(b), s)
			}
		}
		first = false
	}
	e.flush()
	return append(e.out, 0xFF, 0xD9)
}

func abs(x int32) int32 {
	if x < 0 {
		return -x
	}
	return x
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct{ w, h, p, pred, pt, restart int }{
		{7, 5, 16, 1, 0, 0}, {7, 5, 16, 7, 0, 0}, {16, 9, 12, 4, 0, 0}, {9, 9, 8, 5, 0, 0},
		{9, 9, 16, 6, 2, 0}, {10, 6, 16, 1, 0, 10}, {10, 6, 16, 6, 0, 20}, {10, 6, 16, 3, 0, 7},
		{1, 1, 16, 1, 0, 0}, {300, 2, 2, 2, 0, 0},
	} {
		pix := make([]uint16, tc.w*tc.h)
		for i := range pix {
			switch rng.IntN(4) {
			case 0:
				pix[i] = 0
			case 1:
				pix[i] = uint16(1<<tc.p - 1)
			default:
				pix[i] = uint16(rng.IntN(1 << tc.p))
			}
			pix[i] &^= uint16(1<<tc.pt - 1)
		}
		img, err := Decode(encode(pix, tc.w, tc.h, tc.p, tc.pred, tc.pt, tc.restart))
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		if img.Width != tc.w || img.Height != tc.h || img.Precision != tc.p {
			t.Fatalf("%+v: got %d×%d P%d", tc, img.Width, img.Height, img.Precision)
		}
		for i := range pix {
			if img.Pix[i] != pix[i] {
				t.Fatalf("%+v: pixel %d = %d, want %d", tc, i, img.Pix[i], pix[i])
			}
		}
	}
}

func TestTruncatedIsAnError(t *testing.T) {
	pix := make([]uint16, 64*64)
	for i := range pix {
		pix[i] = uint16(i * 7919)
	}
	b := encode(pix, 64, 64, 16, 1, 0, 0)
	for _, n := range []int{0, 3, 30, len(b) / 2, len(b) - 100} {
		if _, err := Decode(b[:n]); !errors.Is(err, ErrFormat) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	bad := append([]byte(nil), b...)
	bad[2], bad[3] = 0xFF, 0xC1 // SOF1: not lossless
	if _, err := Decode(bad); !errors.Is(err, ErrFormat) {
		t.Fatalf("SOF1: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	pix := []uint16{0, 65535, 3, 4, 5, 6, 7, 8, 9}
	f.Add(encode(pix, 3, 3, 16, 1, 0, 0))
	f.Add(encode(pix, 3, 3, 16, 7, 0, 2))
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := Decode(b)
		if err == nil && len(img.Pix) != img.Width*img.Height {
			t.Fatal("inconsistent image")
		}
	})
}
