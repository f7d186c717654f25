package qr_test

import (
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/scp/qr"
)

// encapsulated builds an explicit VR LE image header with encapsulated
// pixel data holding the given fragments.
func encapsulated(rows, cols, bits uint16, frags ...[]byte) []byte {
	var b []byte
	us := func(tag uint32, v uint16) {
		b = binary.LittleEndian.AppendUint32(b, tag<<16|tag>>16)
		b = append(b, 'U', 'S', 2, 0)
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	us(0x00280002, 1)
	us(0x00280010, rows)
	us(0x00280011, cols)
	us(0x00280100, bits)
	b = append(b, 0xE0, 0x7F, 0x10, 0x00, 'O', 'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF)
	b = append(b, 0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0)
	for _, f := range frags {
		b = append(b, 0xFE, 0xFF, 0x00, 0xE0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return append(b, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0)
}

// FuzzDecompress: any data set decompresses or fails with ErrDecompress,
// never panics or runs away.
func FuzzDecompress(f *testing.F) {
	// An RLE frame of one segment: 4 literal bytes.
	rle := make([]byte, 64)
	binary.LittleEndian.PutUint32(rle, 1)
	binary.LittleEndian.PutUint32(rle[4:], 64)
	rle = append(rle, 3, 1, 2, 3, 4)
	f.Add(encapsulated(2, 2, 8, rle), true)
	f.Add(encapsulated(2, 2, 16, []byte{0xFF, 0xD8, 0xFF, 0xD9}), false)
	f.Add(encapsulated(0, 0, 16), false)
	f.Fuzz(func(t *testing.T, b []byte, isRLE bool) {
		ts := dimse.JPEGLosslessSV1
		if isRLE {
			ts = dimse.RLELossless
		}
		r, err := qr.Decompress(bytesReader(b), ts)
		if err != nil {
			if !errors.Is(err, qr.ErrDecompress) {
				t.Fatalf("error %v is not ErrDecompress", err)
			}
			return
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			t.Fatal(err)
		}
	})
}
