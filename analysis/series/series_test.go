package series

import (
	"context"
	"errors"
	"math"
	"testing"
)

// huOf is what a stored value becomes after sign handling and rescale.
func huOf(s ctSpec, p uint16) float32 {
	mask := uint32(1)<<uint(s.BitsStored) - 1
	u := (uint32(p) >> uint(s.HighBit+1-s.BitsStored)) & mask
	x := int64(u)
	if s.PixelRepresentation == 1 && u&(1<<uint(s.BitsStored-1)) != 0 {
		x -= int64(mask) + 1
	}
	return float32(float64(x)*s.Slope + s.Intercept)
}

func TestAssembleRegularStack(t *testing.T) {
	paths := writeStack(t, 5, nil)
	// Reverse the input order: sorting must not depend on it.
	rev := []string{paths[3], paths[0], paths[4], paths[2], paths[1]}
	v, l, err := Load(context.Background(), rev, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Size != [3]int{6, 4, 5} {
		t.Fatalf("size %v", v.Size)
	}
	want := [3][4]float64{{0.25, 0, 0, -10}, {0, 0.3, 0, -20}, {0, 0, 0.5, 30}}
	for r := range want {
		for c := range want[r] {
			if math.Abs(v.Affine[r][c]-want[r][c]) > 1e-9 {
				t.Fatalf("affine %v, want %v", v.Affine, want)
			}
		}
	}
	for k := 0; k < 5; k++ {
		s := baseSpec(k)
		if l.Slices[k].SOPInstanceUID != s.SOPInstance {
			t.Fatalf("slice %d is %s", k, l.Slices[k].SOPInstanceUID)
		}
		for j := 0; j < s.Rows; j++ {
			for i := 0; i < s.Cols; i++ {
				if got, want := v.At(i, j, k), huOf(s, s.Pixels[j*s.Cols+i]); got != want {
					t.Fatalf("(%d,%d,%d) = %v, want %v", i, j, k, got, want)
				}
			}
		}
	}
	v16, err := Decode[int16](context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	for i := range v.Data {
		if float32(v16.Data[i]) != v.Data[i] {
			t.Fatalf("int16 voxel %d = %d, float32 %v", i, v16.Data[i], v.Data[i])
		}
	}
}

// Pixel encodings: every one must decode to the same HU as computed from
// the stored values.
func TestNativePixelFormats(t *testing.T) {
	cases := map[string]func(k int, s *ctSpec){
		"implicit LE": func(k int, s *ctSpec) { s.TS = tsImplicitLE },
		"explicit BE": func(k int, s *ctSpec) { s.TS = tsExplicitBE },
		"unsigned 16": func(k int, s *ctSpec) {
			s.PixelRepresentation = 0
			for i := range s.Pixels {
				s.Pixels[i] = uint16(60000 + i*200)
			}
		},
		"signed 12 in 16, garbage above high bit": func(k int, s *ctSpec) {
			s.BitsStored, s.HighBit = 12, 11
			for i := range s.Pixels {
				v := int16(i*150 - 2048) // covers -2048..
				s.Pixels[i] = uint16(v)&0x0FFF | 0xA000
			}
		},
		"signed 12 shifted high bit 13": func(k int, s *ctSpec) {
			s.BitsStored, s.HighBit = 12, 13
			for i := range s.Pixels {
				s.Pixels[i] = (uint16(int16(i*170-2000))&0x0FFF)<<2 | 0x8001
			}
		},
		"8-bit unsigned, slope 2.5": func(k int, s *ctSpec) {
			s.BitsAllocated, s.BitsStored, s.HighBit, s.PixelRepresentation = 8, 8, 7, 0
			s.Slope, s.Intercept = 2.5, -300
			for i := range s.Pixels {
				s.Pixels[i] = uint16(i * 11 % 256)
			}
		},
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			paths := writeStack(t, 3, mod)
			v, _, err := Load(context.Background(), paths, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for k := 0; k < 3; k++ {
				s := baseSpec(k)
				mod(k, &s)
				for i, p := range s.Pixels {
					if got, want := v.Data[k*len(s.Pixels)+i], huOf(s, p); got != want {
						t.Fatalf("slice %d pixel %d = %v, want %v (stored %#x)", k, i, got, want, p)
					}
				}
			}
		})
	}
}

func TestEnhancedCTCrafted(t *testing.T) {
	s := baseSpec(0)
	s.SOPClass = sopEnhancedCT
	// Frames given out of order along z, with per-frame rescale.
	s.FramePositions = [][3]float64{{-10, -20, 31}, {-10, -20, 30}, {-10, -20, 31.5}, {-10, -20, 30.5}}
	s.FrameIntercept = []float64{-1000, -1001, -1002, -1003}
	n := s.Rows * s.Cols
	s.Pixels = make([]uint16, 4*n)
	for i := range s.Pixels {
		s.Pixels[i] = uint16(i)
	}
	p := writeCT(t, t.TempDir(), "mf.dcm", s)
	v, l, err := Load(context.Background(), []string{p}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	order := []int{1, 3, 0, 2} // frames sorted by z
	for k, f := range order {
		if l.Slices[k].Frame != f {
			t.Fatalf("slice %d is frame %d, want %d", k, l.Slices[k].Frame, f)
		}
		for i := 0; i < n; i++ {
			if got, want := v.Data[k*n+i], float32(f*n+i)+float32(s.FrameIntercept[f]); got != want {
				t.Fatalf("slice %d pixel %d = %v, want %v", k, i, got, want)
			}
		}
	}
	if sp := v.Affine.Spacing(); math.Abs(sp[2]-0.5) > 1e-9 {
		t.Fatalf("spacing %v", sp)
	}
}

func TestGantryTilt(t *testing.T) {
	// Slices step 0.5 mm in z and 0.2 mm in y: tilt atan(0.2/0.5) ≈ 21.8°.
	tilted := func(k int, s *ctSpec) { s.IPP[1] += 0.2 * float64(k) }
	paths := writeStack(t, 4, tilted)
	v, l, err := Load(context.Background(), paths, Options{})
	if err != nil {
		t.Fatalf("shear policy: %v", err)
	}
	if math.Abs(l.TiltDegrees-math.Atan2(0.2, 0.5)*180/math.Pi) > 1e-6 {
		t.Fatalf("tilt %v", l.TiltDegrees)
	}
	// The grid is exact: voxel (0,0,k) is at slice k's position.
	for k := 0; k < 4; k++ {
		p := v.Affine.Apply([3]float64{0, 0, float64(k)})
		want := baseSpec(k).IPP
		tilted(k, &ctSpec{IPP: want})
		want[1] += 0.2 * float64(k)
		for c := 0; c < 3; c++ {
			if math.Abs(p[c]-want[c]) > 1e-9 {
				t.Fatalf("slice %d at %v, want %v", k, p, want)
			}
		}
	}
	_, _, err = Load(context.Background(), paths, Options{Tilt: TiltRefuse})
	if !errors.Is(err, ReasonGantryTilt) {
		t.Fatalf("refuse policy: %v", err)
	}
	_, _, err = Load(context.Background(), paths, Options{MaxTiltDeg: 15})
	if !errors.Is(err, ReasonGantryTilt) {
		t.Fatalf("beyond MaxTiltDeg: %v", err)
	}
}

// Each refusal reason, triggered by a crafted series.
func TestRefusals(t *testing.T) {
	cases := []struct {
		name string
		n    int
		mod  func(k int, s *ctSpec)
		opts Options
		want Reason
	}{
		{"not CT (MR SOP class)", 3, func(k int, s *ctSpec) { s.SOPClass = "1.2.840.10008.5.1.4.1.1.4"; s.Modality = "MR" }, Options{}, ReasonNotCT},
		{"not CT (modality)", 3, func(k int, s *ctSpec) { s.Modality = "PT" }, Options{}, ReasonNotCT},
		{"mixed series", 3, func(k int, s *ctSpec) {
			if k == 1 {
				s.Series += ".2"
			}
		}, Options{}, ReasonMixedSeries},
		{"mixed orientation", 3, func(k int, s *ctSpec) {
			if k == 2 {
				c, sn := math.Cos(0.1), math.Sin(0.1)
				s.IOP = [6]float64{c, sn, 0, -sn, c, 0}
			}
		}, Options{}, ReasonMixedOrientation},
		{"mixed pixel spacing", 3, func(k int, s *ctSpec) {
			if k == 1 {
				s.Spacing[0] = 0.31
			}
		}, Options{}, ReasonMixedPixelSpacing},
		{"mixed matrix", 3, func(k int, s *ctSpec) {
			if k == 1 {
				s.Rows = 3
				s.Pixels = s.Pixels[:18]
			}
		}, Options{}, ReasonMixedMatrix},
		{"duplicate slices", 3, func(k int, s *ctSpec) {
			if k == 2 {
				s.IPP[2] = 30.5
			}
		}, Options{}, ReasonDuplicateSlices},
		{"missing slices", 5, func(k int, s *ctSpec) {
			if k >= 3 {
				s.IPP[2] += 1.0 // two slices missing between k=2 and k=3
			}
		}, Options{}, ReasonMissingSlices},
		{"non-uniform spacing", 5, func(k int, s *ctSpec) {
			if k >= 3 {
				s.IPP[2] += 0.2
			}
		}, Options{}, ReasonNonUniformSpacing},
		{"off the line", 4, func(k int, s *ctSpec) {
			if k == 2 {
				s.IPP[0] += 0.1 // in-plane jump of 0.4 pixel for one slice
			}
		}, Options{}, ReasonNonUniformSpacing},
		{"gantry tilt refused", 4, func(k int, s *ctSpec) { s.IPP[1] += 0.05 * float64(k) }, Options{Tilt: TiltRefuse}, ReasonGantryTilt},
		{"too few slices", 2, nil, Options{}, ReasonTooFewSlices},
		{"too few for MinSlices", 5, nil, Options{MinSlices: 6}, ReasonTooFewSlices},
		{"unsupported transfer syntax (JPEG-LS)", 3, func(k int, s *ctSpec) { s.TS = "1.2.840.10008.1.2.4.80" }, Options{}, ReasonUnsupportedSyntax},
		{"unsupported transfer syntax (HTJ2K)", 3, func(k int, s *ctSpec) { s.TS = "1.2.840.10008.1.2.4.201" }, Options{}, ReasonUnsupportedSyntax},
		{"unknown transfer syntax", 3, func(k int, s *ctSpec) { s.TS = "1.2.3.4" }, Options{}, ReasonUnsupportedSyntax},
		{"colour", 3, func(k int, s *ctSpec) { s.Photometric = "RGB" }, Options{}, ReasonUnsupportedPixels},
		{"bits stored > allocated", 3, func(k int, s *ctSpec) { s.BitsStored = 17 }, Options{}, ReasonUnsupportedPixels},
		{"no orientation", 3, func(k int, s *ctSpec) { s.IOP = [6]float64{1, 0, 0, 1, 0, 0} }, Options{}, ReasonMissingGeometry},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			paths := writeStack(t, c.n, c.mod)
			_, _, err := Load(context.Background(), paths, c.opts)
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want reason %s", err, c.want)
			}
			var e *Error
			if !errors.As(err, &e) || e.Detail == "" {
				t.Fatalf("refusal without detail: %#v", err)
			}
			t.Log(err)
		})
	}
}

func TestUnreadable(t *testing.T) {
	dir := t.TempDir()
	paths := writeStack(t, 3, nil)
	_ = dir
	bad := []string{"/nonexistent/file.dcm"}
	if _, _, err := Load(context.Background(), bad, Options{}); !errors.Is(err, ReasonUnreadable) {
		t.Fatalf("missing file: %v", err)
	}
	if _, _, err := Load(context.Background(), nil, Options{}); !errors.Is(err, ReasonNoInstances) {
		t.Fatalf("no files: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Load(ctx, paths, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestPixelPadding(t *testing.T) {
	for _, ts := range []string{tsExplicitLE, tsImplicitLE} {
		pad := -2000
		paths := writeStack(t, 3, func(k int, s *ctSpec) { s.Padding = &pad; s.TS = ts })
		_, l, err := Load(context.Background(), paths, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !l.PixelPadding || l.PixelPaddingHU != -3024 {
			t.Fatalf("%s: padding %v %v, want -3024 HU", ts, l.PixelPadding, l.PixelPaddingHU)
		}
	}
	_, l, err := Load(context.Background(), writeStack(t, 3, nil), Options{})
	if err != nil || l.PixelPadding {
		t.Fatalf("no padding: %v %v", l.PixelPadding, err)
	}
}
