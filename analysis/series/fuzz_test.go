package series

import (
	"io"
	"log"
	"os"
	"path/filepath"
	"strconv"
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
		_, _ = decodeFrames(in)
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
	out := filepath.Join("testdata", "fuzz", "FuzzInstance")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]string{"ct-slice": a, "enhanced-ct": b} {
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
