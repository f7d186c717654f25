package series

import (
	"io"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzInstance feeds arbitrary bytes through the header scan and pixel
// decoding of one file: every input must give a value or an error. Seeds
// (a CT slice and a two-frame enhanced CT) are in testdata/fuzz; rewrite
// them with OTONODE_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds.
func FuzzInstance(f *testing.F) {
	// The DICOM library logs to the standard logger on odd input; in a
	// fuzz worker that output can fill the pipe and stall the run.
	log.SetOutput(io.Discard)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		p := filepath.Join(t.TempDir(), "x.dcm")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		in, err := scanHeader(p, 1<<20)
		if err != nil {
			return
		}
		// Every frame goes to one slab: the harness's own memory stays
		// bounded whatever the header claims (a series' volume is bounded
		// by Options.MaxVoxels instead).
		if in.rows*in.cols > 1<<22 {
			return
		}
		dst := make([]float32, in.rows*in.cols)
		targets := make([]frameTarget[float32], len(in.frames))
		for f, g := range in.frames {
			targets[f] = frameTarget[float32]{frame: f, slope: g.slope, inter: g.intercept, dst: dst}
		}
		var d frameDecoder[float32]
		_ = d.instance(in, targets)
	})
}

func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("OTONODE_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set OTONODE_WRITE_FUZZ_SEEDS=1 to rewrite the seeds")
	}
	dir := t.TempDir()
	s := baseSpec(0)
	a := writeCT(t, dir, "a.dcm", s)
	s.SOPClass = sopEnhancedCT
	s.FramePositions = [][3]float64{{0, 0, 0}, {0, 0, 1}}
	s.Pixels = append(s.Pixels, s.Pixels...)
	b := writeCT(t, dir, "b.dcm", s)
	// Encapsulated seeds, so the fuzzer starts inside the fragment walk
	// and the decoders: a two-frame RLE and a two-frame JPEG lossless
	// split into several fragments without a Basic Offset Table.
	needTool(t, "dcmcrle")
	needTool(t, "dcmcjpeg")
	rle, jpeg := filepath.Join(dir, "rle.dcm"), filepath.Join(dir, "jpeg.dcm")
	run(t, "dcmcrle", b, rle)
	run(t, "dcmcjpeg", "+e1", "+fs", "1", "-ot", b, jpeg)
	out := filepath.Join("testdata", "fuzz", "FuzzInstance")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]string{"ct-slice": a, "enhanced-ct": b, "enhanced-ct-rle": rle, "enhanced-ct-jpeg-fragments": jpeg} {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		seed := "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n"
		if err := os.WriteFile(filepath.Join(out, name), []byte(seed), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The fuzz seeds are valid files: each scans and decodes, so the fuzzer
// starts from inputs that reach the pixel decoders.
func TestFuzzSeedsDecode(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzInstance")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Run(e.Name(), func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			lit, ok := strings.CutPrefix(string(b), "go test fuzz v1\n[]byte(")
			lit, ok2 := strings.CutSuffix(lit, ")\n")
			data, err := strconv.Unquote(lit)
			if !ok || !ok2 || err != nil {
				t.Fatalf("not a []byte seed: %v", err)
			}
			p := filepath.Join(t.TempDir(), "x.dcm")
			if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			in, err := scanHeader(p, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			frames, err := decodeFrames(in)
			if err != nil {
				t.Fatal(err)
			}
			if len(frames) != in.numberOfFrames {
				t.Fatalf("%d frames decoded, %d in the header", len(frames), in.numberOfFrames)
			}
		})
	}
}
