package results

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"
)

func TestReadSource(t *testing.T) {
	spec := cases[1].spec
	dir := t.TempDir()
	paths := writeCT(t, dir, spec)
	src, err := ReadSource(context.Background(), paths)
	if err != nil {
		t.Fatal(err)
	}
	if src.Rows != spec.rows || src.Columns != spec.cols || len(src.Slices) != spec.slices || src.PatientName != spec.patientName {
		t.Fatalf("source %dx%d, %d slices, patient %q", src.Rows, src.Columns, len(src.Slices), src.PatientName)
	}
	// Sorted along the normal although the files were written shuffled, and
	// the grid places every slice where its header says.
	g := src.Grid()
	for k, sl := range src.Slices {
		p := g.Affine.Apply([3]float64{0, 0, float64(k)})
		for a := 0; a < 3; a++ {
			if math.Abs(p[a]-sl.ImagePositionPatient[a]) > 1e-6 {
				t.Fatalf("slice %d at %v, grid puts it at %v", k, sl.ImagePositionPatient, p)
			}
		}
	}
	if math.Abs(src.SliceSpacing()-spec.sliceStep) > 1e-9 {
		t.Fatalf("slice spacing %v, want %v", src.SliceSpacing(), spec.sliceStep)
	}
}

func TestReadSourceRejects(t *testing.T) {
	dir := t.TempDir()
	paths := writeCT(t, dir, cases[1].spec)
	other := writeCT(t, t.TempDir(), cases[0].spec)
	garbage := filepath.Join(dir, "garbage.dcm")
	if err := os.WriteFile(garbage, append(make([]byte, 128), []byte("DICMnot really")...), 0o644); err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.dcm")
	b, _ := os.ReadFile(paths[0])
	if err := os.WriteFile(truncated, b[:300], 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		paths []string
	}{
		{"no files", nil},
		{"another series", append([]string{other[0]}, paths...)},
		{"garbage", append([]string{garbage}, paths...)},
		{"truncated", append([]string{truncated}, paths...)},
		{"missing file", []string{filepath.Join(dir, "nope.dcm")}},
		{"same instance twice", append([]string{paths[0]}, paths...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ReadSource(context.Background(), tt.paths); !errors.Is(err, ErrSource) {
				t.Fatalf("ReadSource error %v, want ErrSource", err)
			}
		})
	}
}

// FuzzReadSource feeds arbitrary bytes as a source file: an error is fine,
// a panic is not (the DICOM library panics on some input; ReadSource must
// turn that into an error).
func FuzzReadSource(f *testing.F) {
	dir := f.TempDir()
	paths := writeCTForFuzz(f, dir)
	seed, err := os.ReadFile(paths[0])
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:200])
	f.Add(append(make([]byte, 128), "DICM"...))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "f.dcm")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		src, err := ReadSource(context.Background(), []string{p})
		if err == nil && src.Validate() != nil {
			t.Fatal("ReadSource returned an invalid source without an error")
		}
	})
}

// writeCTForFuzz writes a tiny CT series; testing.F lacks the helpers of T.
func writeCTForFuzz(f *testing.F, dir string) []string {
	var d dataSet
	d.set(tag.SOPClassUID, ctImageStorage)
	d.set(tag.SOPInstanceUID, "1.2.3.4.5")
	d.set(tag.StudyInstanceUID, "1.2.3")
	d.set(tag.SeriesInstanceUID, "1.2.3.4")
	d.set(tag.FrameOfReferenceUID, "1.2.3.5")
	d.set(tag.ImagePositionPatient, []float64{0, 0, 0})
	d.set(tag.ImageOrientationPatient, axial[:])
	d.set(tag.PixelSpacing, []float64{0.5, 0.5})
	d.set(tag.Rows, 2)
	d.set(tag.Columns, 2)
	d.set(tag.BitsAllocated, 16)
	d.set(tag.PixelData, bytes.Repeat([]byte{1}, 8))
	b, err := encodeFile(&d, DefaultImplementationClassUID)
	if err != nil {
		f.Fatal(err)
	}
	p := filepath.Join(dir, "ct.dcm")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		f.Fatal(err)
	}
	return []string{p}
}

// A Latin-1 source is read as UTF-8, which the writers declare as ISO_IR 192.
func TestReadSourceLatin1(t *testing.T) {
	var d dataSet
	d.set(tag.SpecificCharacterSet, "ISO_IR 100")
	d.set(tag.SOPClassUID, ctImageStorage)
	d.set(tag.SOPInstanceUID, "1.2.3.4.5")
	d.set(tag.PatientName, "M\xfcller^J\xfcrgen")
	d.set(tag.StudyInstanceUID, "1.2.3")
	d.set(tag.SeriesInstanceUID, "1.2.3.4")
	d.set(tag.FrameOfReferenceUID, "1.2.3.5")
	d.set(tag.ImagePositionPatient, []float64{0, 0, 0})
	d.set(tag.ImageOrientationPatient, axial[:])
	d.set(tag.PixelSpacing, []float64{0.5, 0.5})
	d.set(tag.Rows, 2)
	d.set(tag.Columns, 2)
	b, err := encodeFile(&d, DefaultImplementationClassUID)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ct.dcm")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := ReadSource(context.Background(), []string{p})
	if err != nil {
		t.Fatal(err)
	}
	if src.PatientName != "Müller^Jürgen" {
		t.Fatalf("PatientName %q", src.PatientName)
	}
}
