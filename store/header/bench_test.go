package header

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/suyashkumar/dicom"
)

// BenchmarkHeaderVsLibrary reads the index attributes of a 512×512 CT
// slice (header plus 512 KiB of pixel data) with this walker and with
// suyashkumar/dicom (SkipPixelData), in the same run, and prints the ratio.
func BenchmarkHeaderVsLibrary(b *testing.B) {
	ds := ctHeader(ExplicitVRLittleEndian)
	ds = ds[:len(ds)-20] // drop the small Pixel Data element
	ds = append(ds, 0xe0, 0x7f, 0x10, 0x00, 'O', 'W', 0, 0, 0, 0, 8, 0)
	ds = append(ds, make([]byte, 512<<10)...)
	file := part10(ExplicitVRLittleEndian, ds)
	if _, err := dicom.Parse(bytes.NewReader(file), int64(len(file)), nil, dicom.SkipPixelData()); err != nil {
		b.Fatalf("library cannot read the test file: %v", err)
	}
	var own, lib time.Duration
	b.Run("walker", func(b *testing.B) {
		for b.Loop() {
			if _, err := ParseFile(bytes.NewReader(file), Limits{}); err != nil {
				b.Fatal(err)
			}
		}
		own = b.Elapsed() / time.Duration(b.N)
	})
	b.Run("suyashkumar", func(b *testing.B) {
		for b.Loop() {
			if _, err := dicom.Parse(bytes.NewReader(file), int64(len(file)), nil, dicom.SkipPixelData()); err != nil {
				b.Fatal(err)
			}
		}
		lib = b.Elapsed() / time.Duration(b.N)
	})
	if own > 0 && lib > 0 {
		fmt.Printf("header walker %v/op, suyashkumar/dicom %v/op: library takes %.1fx as long\n", own, lib, float64(lib)/float64(own))
	}
}
