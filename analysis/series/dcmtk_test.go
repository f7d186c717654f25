package series

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// needTool skips (or fails under CI) when a dcmtk tool is missing.
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI (Debian package dcmtk)", name)
		}
		t.Skipf("%s not installed", name)
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// Stacks compressed by dcmtk (lossless JPEG with every predictor, point
// transform, fragmentation; RLE) decode to the same HU as the native stack.
func TestDcmtkEncodedStacks(t *testing.T) {
	needTool(t, "dcmcjpeg")
	needTool(t, "dcmcrle")
	// A larger 64×48 image so the predictors see real neighbourhoods;
	// values span the whole 16-bit signed range, including -32768 next to
	// 32767 (difference category 16).
	big := func(k int, s *ctSpec) {
		s.Rows, s.Cols = 48, 64
		s.Pixels = make([]uint16, s.Rows*s.Cols)
		for i := range s.Pixels {
			x, y := i%s.Cols, i/s.Cols
			v := (x*x*37 + y*911 + k*5) % 4000
			if (x+y)%17 == 0 {
				v = 32767
			}
			if (x*y)%23 == 5 {
				v = -32768
			}
			s.Pixels[i] = uint16(int16(v - 1200))
		}
	}
	twelve := func(k int, s *ctSpec) {
		big(k, s)
		s.BitsStored, s.HighBit = 12, 11
		for i := range s.Pixels {
			s.Pixels[i] = uint16(int16(i%4096-2048)) & 0x0FFF
		}
	}
	unsigned := func(k int, s *ctSpec) {
		big(k, s)
		s.PixelRepresentation = 0
		for i := range s.Pixels {
			s.Pixels[i] = uint16(i * 977 % 65536) // first pixel 0: category 16
		}
	}
	eight := func(k int, s *ctSpec) {
		big(k, s)
		s.BitsAllocated, s.BitsStored, s.HighBit, s.PixelRepresentation = 8, 8, 7, 0
		for i := range s.Pixels {
			s.Pixels[i] = uint16(i * 13 % 256)
		}
	}
	encodings := map[string][]string{
		"jpeg sv1":          {"dcmcjpeg", "+e1"},
		"jpeg sv2":          {"dcmcjpeg", "+el", "+sv", "2"},
		"jpeg sv3":          {"dcmcjpeg", "+el", "+sv", "3"},
		"jpeg sv4":          {"dcmcjpeg", "+el", "+sv", "4"},
		"jpeg sv5":          {"dcmcjpeg", "+el", "+sv", "5"},
		"jpeg sv6":          {"dcmcjpeg", "+el", "+sv", "6"},
		"jpeg sv7":          {"dcmcjpeg", "+el", "+sv", "7"},
		"jpeg fragmented":   {"dcmcjpeg", "+e1", "+fs", "1"},
		"rle":               {"dcmcrle"},
		"rle fragment size": {"dcmcrle", "+fs", "1"},
		"deflate":           {"dcmconv", "+td"},
		"implicit (dcmtk)":  {"dcmconv", "+ti"},
		"big endian":        {"dcmconv", "+tb"},
	}
	pixels := map[string]func(int, *ctSpec){"16 signed": big, "12 signed": twelve, "16 unsigned": unsigned, "8 unsigned": eight}
	for pname, mod := range pixels {
		native := writeStack(t, 3, mod)
		want, _, err := Load(context.Background(), native, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for ename, cmd := range encodings {
			t.Run(pname+"/"+ename, func(t *testing.T) {
				dir := t.TempDir()
				var paths []string
				for _, p := range native {
					out := filepath.Join(dir, filepath.Base(p))
					run(t, cmd[0], append(cmd[1:], p, out)...)
					paths = append(paths, out)
				}
				in, err := scanHeader(paths[0], 1<<30)
				if err != nil {
					t.Fatal(err)
				}
				if in.ts == tsExplicitLE {
					t.Fatalf("%v did not change the transfer syntax", cmd)
				}
				got, _, err := Load(context.Background(), paths, Options{})
				if err != nil {
					t.Fatal(err)
				}
				for i := range want.Data {
					if got.Data[i] != want.Data[i] {
						t.Fatalf("voxel %d = %v, want %v (%s)", i, got.Data[i], want.Data[i], in.ts)
					}
				}
			})
		}
	}
}

// A multi-frame enhanced CT compressed frame by frame, with several
// fragments per frame and no offset table: frames are found by their SOI.
func TestDcmtkEncodedMultiFrame(t *testing.T) {
	needTool(t, "dcmcjpeg")
	s := baseSpec(0)
	s.SOPClass = sopEnhancedCT
	s.Rows, s.Cols = 32, 40
	s.FramePositions = [][3]float64{{0, 0, 2}, {0, 0, 0}, {0, 0, 1}}
	s.Pixels = make([]uint16, 3*s.Rows*s.Cols)
	for i := range s.Pixels {
		s.Pixels[i] = uint16(int16(i*31%3000 - 1000))
	}
	dir := t.TempDir()
	native := writeCT(t, dir, "mf.dcm", s)
	want, _, err := Load(context.Background(), []string{native}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"jpeg fragmented no BOT": {"dcmcjpeg", "+e1", "+fs", "1", "-ot"},
		"jpeg with BOT":          {"dcmcjpeg", "+e1"},
		"rle":                    {"dcmcrle"},
	} {
		t.Run(name, func(t *testing.T) {
			needTool(t, args[0])
			out := filepath.Join(t.TempDir(), "c.dcm")
			run(t, args[0], append(args[1:], native, out)...)
			if name == "jpeg fragmented no BOT" {
				ds, err := parseSafely(out, 0, dicom.SkipProcessingPixelDataValue())
				if err != nil {
					t.Fatal(err)
				}
				info := elems(ds.Elements).find(tag.PixelData).Value.GetValue().(dicom.PixelDataInfo)
				if len(info.Frames) <= 3 {
					t.Fatalf("only %d fragments for 3 frames: the test does not exercise regrouping", len(info.Frames))
				}
			}
			got, _, err := Load(context.Background(), []string{out}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for i := range want.Data {
				if got.Data[i] != want.Data[i] {
					t.Fatalf("voxel %d = %v, want %v", i, got.Data[i], want.Data[i])
				}
			}
		})
	}
}
