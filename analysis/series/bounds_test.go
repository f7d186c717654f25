package series

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"os"
	"slices"
	"testing"
)

// explicitLE encodes one explicit VR little endian element header.
func explicitLE(group, elem uint16, vr string, length uint32) []byte {
	b := binary.LittleEndian.AppendUint16(nil, group)
	b = binary.LittleEndian.AppendUint16(b, elem)
	b = append(b, vr...)
	switch vr {
	case "OB", "OW", "SQ", "UN":
		b = append(b, 0, 0)
		return binary.LittleEndian.AppendUint32(b, length)
	}
	return binary.LittleEndian.AppendUint16(b, uint16(length))
}

func item(tagElem uint16, length uint32) []byte {
	b := binary.LittleEndian.AppendUint16(nil, 0xFFFE)
	b = binary.LittleEndian.AppendUint16(b, tagElem)
	return binary.LittleEndian.AppendUint32(b, length)
}

// insertAt writes a copy of the file at path with extra inserted at off.
func insertAt(t *testing.T, path string, off int64, extra []byte) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := slices.Concat(b[:off], extra, b[off:])
	p := path + ".mod"
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The length walk notes the top-level Pixel Data only: one nested in a
// sequence (an Icon Image Sequence, PS3.3 C.7.6.1.1.6) is not the image,
// and a second top-level one is refused.
func TestPixelDataLocation(t *testing.T) {
	s := baseSpec(0)
	path := writeCT(t, t.TempDir(), "a.dcm", s)
	in, err := scanHeader(path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	px := in.pixel
	if !px.found || px.encapsulated || px.value.n != int64(2*len(s.Pixels)) || px.value.off != px.tagOffset+12 {
		t.Fatalf("pixel data %+v", px)
	}
	want, err := decodeFrames(in)
	if err != nil {
		t.Fatal(err)
	}

	// An icon of 2×2 8-bit pixels in an undefined-length sequence item,
	// just before the image's Pixel Data.
	var icon bytes.Buffer
	icon.Write(explicitLE(0x0088, 0x0200, "SQ", undefinedLength))
	icon.Write(item(0xE000, undefinedLength))
	icon.Write(explicitLE(0x7FE0, 0x0010, "OB", 4))
	icon.Write([]byte{9, 9, 9, 9})
	icon.Write(item(0xE00D, 0))
	icon.Write(item(0xE0DD, 0))
	withIcon := insertAt(t, path, px.tagOffset, icon.Bytes())
	in2, err := scanHeader(withIcon, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if in2.pixel.tagOffset != px.tagOffset+int64(icon.Len()) || in2.pixel.value.n != px.value.n {
		t.Fatalf("with an icon: pixel data %+v, want tag at %d", in2.pixel, px.tagOffset+int64(icon.Len()))
	}
	got, err := decodeFrames(in2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got[0], want[0]) {
		t.Fatal("with an icon the image decodes differently")
	}

	// A second top-level Pixel Data after the first.
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	second := append(explicitLE(0x7FE0, 0x0010, "OW", 2), 1, 2)
	if _, err := scanHeader(insertAt(t, path, st.Size(), second), 1<<20); ReasonOf(err) != ReasonUnreadable {
		t.Fatalf("two Pixel Data: %v", err)
	}
}

// Encapsulated Pixel Data: the Basic Offset Table is not a fragment, and
// an item of undefined length or a stray tag among the fragments is
// refused.
func TestEncapsulatedWalk(t *testing.T) {
	frag := func(n int) []byte { return append(item(0xE000, uint32(n)), make([]byte, n)...) }
	for _, tc := range []struct {
		name  string
		value []byte
		frags []int64 // lengths; nil: refused
	}{
		{"empty BOT, two fragments", slices.Concat(frag(0), frag(6), frag(4), item(0xE0DD, 0)), []int64{6, 4}},
		{"BOT with offsets", slices.Concat(frag(8), frag(2), item(0xE0DD, 0)), []int64{2}},
		{"undefined-length item", slices.Concat(frag(0), item(0xE000, undefinedLength), item(0xE0DD, 0)), nil},
		{"stray element", slices.Concat(frag(0), explicitLE(0x0008, 0x0016, "UI", 2), []byte("1\x00"), item(0xE0DD, 0)), nil},
		{"no delimiter", slices.Concat(frag(0), frag(4)), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := slices.Concat(explicitLE(0x0008, 0x0060, "CS", 2), []byte("CT"),
				explicitLE(0x7FE0, 0x0010, "OB", undefinedLength), tc.value)
			w := &walker{r: bufioOf(b), size: int64(len(b)), left: int64(len(b)), order: binary.LittleEndian, explicit: true}
			err := w.all()
			if tc.frags == nil {
				if err == nil {
					t.Fatalf("walked: %+v", w.pixel)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var lens []int64
			at := int64(len(b) - len(tc.value))
			for i, f := range w.pixel.fragments {
				lens = append(lens, f.n)
				if f.off < at || f.off+f.n > int64(len(b)) {
					t.Fatalf("fragment %d at %d+%d outside the value", i, f.off, f.n)
				}
			}
			if !w.pixel.encapsulated || !slices.Equal(lens, tc.frags) || w.pixel.tagOffset != 10 {
				t.Fatalf("pixel data %+v, fragment lengths %v, want %v", w.pixel, lens, tc.frags)
			}
		})
	}
}

func bufioOf(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
