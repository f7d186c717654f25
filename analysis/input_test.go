package analysis

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/otonode/otonode/analysis/nifti"
	"github.com/otonode/otonode/analysis/phantom"
	"github.com/otonode/otonode/analysis/volume"
)

// A small phantom (an ear, 32×32×16 at 0.25 mm) as a DICOM series, a
// NIfTI and an NRRD file loads to the same HU as float32 and, asked for,
// as int16; a volume with fractional HU falls back to float32.
func TestLoadInputInt16(t *testing.T) {
	ctx := context.Background()
	v, err := phantom.ParseVariant("right")
	if err != nil {
		t.Fatal(err)
	}
	v.Size = [3]int{32, 32, 16}
	v.SpacingMM = [3]float64{0.25, 0.25, 0.25}
	c, err := phantom.Generate(ctx, 3, v, phantom.Options{NoSupersample: true, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dcm := filepath.Join(dir, "dicom")
	if _, err := phantom.WriteSeries(ctx, dcm, c.CT, &c.Info, phantom.SeriesOptions{Workers: 1}); err != nil {
		t.Fatal(err)
	}
	nii := filepath.Join(dir, "ct.nii.gz")
	if err := nifti.WriteFile(nii, c.CT, nifti.Options{}); err != nil {
		t.Fatal(err)
	}
	nrd := filepath.Join(dir, "ct.nrrd")
	writeNRRD(t, nrd, c.CT)
	// Fractional HU: only float32 holds them.
	frac := volume.New[float32](c.CT.Grid)
	for i, x := range c.CT.Data {
		frac.Data[i] = float32(x) + 0.5
	}
	fracPath := filepath.Join(dir, "frac.nii")
	if err := nifti.WriteFile(fracPath, frac, nifti.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, format string
		want16             bool
		want               []float32
	}{
		{"dicom", dcm, "dicom", true, nil},
		{"nifti", nii, "nifti", true, nil},
		{"nrrd", nrd, "nrrd", true, nil},
		{"fractional nifti", fracPath, "nifti", false, frac.Data},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want == nil {
				want = make([]float32, len(c.CT.Data))
				for i, x := range c.CT.Data {
					want[i] = float32(x)
				}
			}
			f32, err := LoadInput(ctx, []string{tc.path})
			if err != nil {
				t.Fatal(err)
			}
			if f32.CT == nil || f32.CT16 != nil || f32.Format != tc.format {
				t.Fatalf("LoadInput: CT %v, CT16 %v, format %q", f32.CT != nil, f32.CT16 != nil, f32.Format)
			}
			i16, err := LoadInputWith(ctx, []string{tc.path}, LoadOptions{Int16: true})
			if err != nil {
				t.Fatal(err)
			}
			if (i16.CT16 != nil) != tc.want16 || (i16.CT != nil) == tc.want16 {
				t.Fatalf("Int16: CT %v, CT16 %v; want CT16 %v", i16.CT != nil, i16.CT16 != nil, tc.want16)
			}
			for i, w := range want {
				got16 := w
				if i16.CT16 != nil {
					got16 = float32(i16.CT16.Data[i])
				} else {
					got16 = i16.CT.Data[i]
				}
				if f32.CT.Data[i] != w || got16 != w {
					t.Fatalf("voxel %d: float32 %v, int16 load %v, want %v", i, f32.CT.Data[i], got16, w)
				}
			}
			if g := f32.CT.Grid; tc.format == "dicom" && g.Size != c.CT.Size {
				t.Fatalf("grid %v, want %v", g.Size, c.CT.Size)
			}
		})
	}
}

// writeNRRD writes v as a raw little-endian NRRD (the package reads NRRD
// but does not write it).
func writeNRRD(t *testing.T, path string, v *volume.Volume[int16]) {
	t.Helper()
	sp := v.Affine.Spacing()
	o := v.Affine.Origin()
	hdr := fmt.Sprintf("NRRD0004\ntype: short\ndimension: 3\nsizes: %d %d %d\nspace: left-posterior-superior\n"+
		"space directions: (%g,0,0) (0,%g,0) (0,0,%g)\nspace origin: (%g,%g,%g)\nendian: little\nencoding: raw\n\n",
		v.Size[0], v.Size[1], v.Size[2], sp[0], sp[1], sp[2], o[0], o[1], o[2])
	b := []byte(hdr)
	for _, x := range v.Data {
		b = binary.LittleEndian.AppendUint16(b, uint16(x))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
