package series

import (
	"encoding/binary"
	"image"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/jpfielding/jpegs/pkg/compress/rle"
)

// packBits encodes b as PackBits (PS3.5 G.3.1): replicate runs of 3 or
// more, literal runs otherwise, each at most 128 bytes.
func packBits(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); {
		j := i + 1
		for j < len(b) && j-i < 128 && b[j] == b[i] {
			j++
		}
		if j-i >= 3 {
			out = append(out, byte(int8(1-(j-i))), b[i])
			i = j
			continue
		}
		// Literal: up to the next run of 3.
		j = i
		for j < len(b) && j-i < 128 && !(j+2 < len(b) && b[j] == b[j+1] && b[j] == b[j+2]) {
			j++
		}
		if j == i {
			j = i + 1
		}
		out = append(out, byte(j-i-1))
		out = append(out, b[i:j]...)
		i = j
	}
	return out
}

// encodeRLE encodes single-sample pixels as an RLE Lossless frame, the
// most significant byte plane first; odd segments are padded to even
// length as PS3.5 G.3.1 asks.
func encodeRLE(pix []uint16, bytesPerSample int) []byte {
	hdr := make([]byte, 64)
	binary.LittleEndian.PutUint32(hdr, uint32(bytesPerSample))
	out := hdr
	for s := range bytesPerSample {
		shift := uint(8 * (bytesPerSample - 1 - s))
		plane := make([]byte, len(pix))
		for i, p := range pix {
			plane[i] = byte(p >> shift)
		}
		binary.LittleEndian.PutUint32(out[4+4*s:], uint32(len(out)))
		out = append(out, packBits(plane)...)
		if len(out)%2 == 1 {
			out = append(out, 0x80) // a no-op header as padding
		}
	}
	return out
}

func TestRLERoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name  string
		bytes int
		pix   func(i int) uint16
	}{
		{"16-bit noise", 2, func(int) uint16 { return uint16(rng.Uint32()) }},
		{"16-bit runs", 2, func(i int) uint16 { return uint16(i / 300 * 1000) }},
		{"16-bit CT-like", 2, func(i int) uint16 { return uint16(int16(-1000 + i%7*3 + i/1000)) }},
		{"8-bit runs and noise", 1, func(i int) uint16 {
			if i%500 < 250 {
				return 7
			}
			return uint16(rng.IntN(256))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const w, h = 61, 47
			pix := make([]uint16, w*h)
			for i := range pix {
				pix[i] = tc.pix(i)
			}
			data := encodeRLE(pix, tc.bytes)
			got := make([]uint16, w*h)
			for i := range got {
				got[i] = 0xBEEF // must be overwritten
			}
			if err := decodeRLE(data, tc.bytes, got); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, pix) {
				t.Fatal("decoded pixels differ")
			}
			// The third-party decoder the package used before agrees.
			img, err := rle.Decode(data, w, h)
			if err != nil {
				t.Fatal(err)
			}
			if ref := refPixels(t, img); !slices.Equal(ref, pix) {
				t.Fatal("reference decoder disagrees with the encoder")
			}
		})
	}
}

func refPixels(t *testing.T, img image.Image) []uint16 {
	t.Helper()
	switch im := img.(type) {
	case *image.Gray16:
		out := make([]uint16, len(im.Pix)/2)
		for i := range out {
			out[i] = uint16(im.Pix[2*i])<<8 | uint16(im.Pix[2*i+1])
		}
		return out
	case *image.Gray:
		out := make([]uint16, len(im.Pix))
		for i, x := range im.Pix {
			out[i] = uint16(x)
		}
		return out
	}
	t.Fatalf("reference decoder gave %T", img)
	return nil
}

func TestRLERefusals(t *testing.T) {
	pix := make([]uint16, 100)
	good := encodeRLE(pix, 2)
	hdr := func(mod func(h []byte)) []byte {
		b := slices.Clone(good)
		mod(b)
		return b
	}
	// one8 is a one-segment (8-bit) frame with the given segment bytes.
	one8 := func(seg ...byte) []byte {
		b := make([]byte, 64, 64+len(seg))
		binary.LittleEndian.PutUint32(b, 1)
		binary.LittleEndian.PutUint32(b[4:], 64)
		return append(b, seg...)
	}
	for name, data := range map[string][]byte{
		"short header":       good[:40],
		"one segment for 16": hdr(func(h []byte) { binary.LittleEndian.PutUint32(h, 1) }),
		"16 segments":        hdr(func(h []byte) { binary.LittleEndian.PutUint32(h, 16) }),
		"offset in header":   hdr(func(h []byte) { binary.LittleEndian.PutUint32(h[4:], 10) }),
		"offsets backwards":  hdr(func(h []byte) { binary.LittleEndian.PutUint32(h[8:], 63) }),
		"offset past end":    hdr(func(h []byte) { binary.LittleEndian.PutUint32(h[8:], uint32(len(good)+1)) }),
		"truncated":          good[:len(good)-2],
	} {
		if err := decodeRLE(data, 2, make([]uint16, 100)); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	for name, data := range map[string][]byte{
		"literal overruns":   one8(5, 1, 2),
		"replicate no value": one8(0xF0),
		"only no-ops":        one8(0x80, 0x80),
	} {
		if err := decodeRLE(data, 1, make([]uint16, 4)); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	// A final run longer than the frame is cut at its end (some encoders
	// pad that way); fewer bytes than the frame is an error.
	long := one8(0x81, 9) // 128 times 9
	got := make([]uint16, 100)
	if err := decodeRLE(long, 1, got); err != nil || got[99] != 9 {
		t.Errorf("long final run: %v, last %d", err, got[99])
	}
	if err := decodeRLE(long, 1, make([]uint16, 200)); err == nil {
		t.Error("short segment decoded")
	}
}

// FuzzRLE checks the decoder never panics or overruns, and agrees with the
// third-party decoder whenever both accept a 16-bit frame.
func FuzzRLE(f *testing.F) {
	f.Add(encodeRLE([]uint16{1, 2, 3, 3, 3, 3, 0xFFFF, 0}, 2), 4, 2)
	f.Add(encodeRLE([]uint16{5, 5, 5, 5, 5, 5}, 1), 3, 2)
	f.Fuzz(func(t *testing.T, data []byte, w, h int) {
		if w <= 0 || h <= 0 || w*h > 1<<12 {
			return
		}
		got := make([]uint16, w*h)
		err := decodeRLE(data, 2, got)
		if err != nil {
			return
		}
		img, rerr := rle.Decode(data, w, h)
		if rerr != nil {
			return
		}
		if g, ok := img.(*image.Gray16); ok && g.Bounds().Dx() == w && g.Bounds().Dy() == h {
			if ref := refPixels(t, g); !slices.Equal(ref, got) {
				t.Fatalf("differs from the reference decoder")
			}
		}
	})
}
