package series

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// corpus is the shared third-party test corpus (see its README.md).
const corpus = "../../../shared/testdata/dicom-corpus"

func corpusPath(t *testing.T, rel string) string {
	t.Helper()
	p := filepath.Join(corpus, rel)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("corpus file missing in CI: %v", err)
		}
		t.Skipf("corpus not available: %v", err)
	}
	return p
}

// unzstd decompresses a .zst corpus file into a temp dir, or skips.
func unzstd(t *testing.T, src string) string {
	t.Helper()
	if _, err := exec.LookPath("zstd"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("zstd is required in CI")
		}
		t.Skip("zstd not installed")
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(src[:len(src)-len(".zst")]))
	if out, err := exec.Command("zstd", "-q", "-d", src, "-o", dst).CombinedOutput(); err != nil {
		t.Fatalf("zstd: %v: %s", err, out)
	}
	return dst
}

// decodeSingle decodes every frame of one file into HU, bypassing the
// stack checks (which need several slices).
func decodeSingle(t *testing.T, path string) ([][]float32, *instance) {
	t.Helper()
	in, err := scanHeader(path, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decodeFrames(in)
	if err != nil {
		t.Fatal(err)
	}
	return out, in
}

// decodeFrames decodes every frame of one scanned instance, each with its
// own rescale.
func decodeFrames(in *instance) ([][]float32, error) {
	out := make([][]float32, len(in.frames))
	targets := make([]frameTarget[float32], len(in.frames))
	for f, g := range in.frames {
		out[f] = make([]float32, in.rows*in.cols)
		targets[f] = frameTarget[float32]{frame: f, slope: g.slope, inter: g.intercept, dst: out[f]}
	}
	var d frameDecoder[float32]
	return out, d.instance(in, targets)
}

func sameHU(t *testing.T, name string, got, want [][]float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d frames, want %d", name, len(got), len(want))
	}
	for f := range want {
		diff := 0
		for i := range want[f] {
			if got[f][i] != want[f][i] {
				diff++
			}
		}
		if diff > 0 {
			t.Errorf("%s frame %d: %d of %d pixels differ", name, f, diff, len(want[f]))
		}
	}
}

func TestWG04SyntaxesDecodeIdentically(t *testing.T) {
	for _, ct := range []string{"CT1", "CT2"} {
		t.Run(ct, func(t *testing.T) {
			ref := unzstd(t, corpusPath(t, "dicom-test-files/data/WG04/REF/"+ct+"_UNC.zst"))
			want, in := decodeSingle(t, ref)
			if in.ts != tsExplicitLE || in.rows != 512 {
				t.Fatalf("reference: ts %s rows %d", in.ts, in.rows)
			}
			var lo, hi float32
			for _, x := range want[0] {
				lo, hi = min(lo, x), max(hi, x)
			}
			if lo > -900 || hi < 500 { // air and bone must both be there
				t.Fatalf("reference HU range [%v, %v] is not a CT", lo, hi)
			}
			for _, enc := range []string{"JPLL", "RLE"} {
				got, _ := decodeSingle(t, corpusPath(t, "dicom-test-files/data/WG04/"+enc+"/"+ct+"_"+enc))
				sameHU(t, enc, got, want)
			}
			for _, enc := range []string{"JLSL", "JLSN", "J2KR", "J2KI"} {
				_, err := scanHeader(corpusPath(t, "dicom-test-files/data/WG04/"+enc+"/"+ct+"_"+enc), 1<<30)
				if !errors.Is(err, ReasonUnsupportedSyntax) {
					t.Errorf("%s: error %v, want %s", enc, err, ReasonUnsupportedSyntax)
				}
			}
		})
	}
}

func TestEnhancedCTSyntaxesDecodeIdentically(t *testing.T) {
	dir := "dicomParser/testImages/encapsulated/multi-frame/"
	want, in := decodeSingle(t, corpusPath(t, dir+"CT0012.explicit_little_endian.dcm"))
	if len(want) != 2 || in.sopClass != sopEnhancedCT {
		t.Fatalf("%d frames, SOP class %s", len(want), in.sopClass)
	}
	for _, name := range []string{
		"CT0012.fragmented_no_bot_jpeg_lossless.57.dcm",
		"CT0012.fragmented_no_bot_jpeg_lossless.70.dcm",
		"CT0012.not_fragmented_bot_rle.dcm",
		"CT0012.not_fragmented_no_bot_rle.dcm",
	} {
		got, _ := decodeSingle(t, corpusPath(t, dir+name))
		sameHU(t, name, got, want)
	}
	for _, name := range []string{
		"CT0012.fragmented_no_bot_jpeg_baseline.51.dcm",
		"CT0012.fragmented_no_bot_jpeg_ls.80.dcm",
		"CT0012.not_fragmented_bot_jpeg_ls.80.dcm",
	} {
		_, err := scanHeader(corpusPath(t, dir+name), 1<<30)
		if !errors.Is(err, ReasonUnsupportedSyntax) {
			t.Errorf("%s: error %v, want %s", name, err, ReasonUnsupportedSyntax)
		}
	}
}

func TestEnhancedCTVolume(t *testing.T) {
	p := corpusPath(t, "pydicom-data/data_store/data/eCT_Supplemental.dcm")
	v, l, err := Load(context.Background(), []string{p}, Options{MinSlices: 2})
	if err != nil {
		t.Fatal(err)
	}
	if v.Size != [3]int{512, 512, 2} {
		t.Fatalf("size %v", v.Size)
	}
	// IOP row (-1,0,0), column (0,1,0): normal (0,0,-1); frames at z=-159
	// and -149, so ascending along the normal puts z=-149 first.
	sp := v.Affine.Spacing()
	if d := sp[2] - 10; d*d > 1e-12 || l.Slices[0].Position[2] != -149 {
		t.Fatalf("spacing %v, first slice %v", sp, l.Slices[0].Position)
	}
	if o := v.Affine.Origin(); o != [3]float64{99.5, -301.5, -149} {
		t.Fatalf("origin %v", o)
	}
	if p := v.Affine.Apply([3]float64{0, 0, 1}); p[2] != -159 {
		t.Fatalf("k=1 at %v", p)
	}
}

func TestMultiSliceCT(t *testing.T) {
	dir := corpusPath(t, "pydicom/src/pydicom/data/test_files/dicomdirtests/77654033/CT2")
	all, _ := filepath.Glob(filepath.Join(dir, "*"))
	// The first file is a slice 202.5 mm away from the other three, which
	// are 1.25 mm apart: the whole set has 161 slices missing.
	_, _, err := Load(context.Background(), all, Options{})
	if !errors.Is(err, ReasonMissingSlices) {
		t.Fatalf("all four: %v, want %s", err, ReasonMissingSlices)
	}
	v, l, err := Load(context.Background(), all[1:], Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Size != [3]int{16, 16, 3} {
		t.Fatalf("size %v", v.Size)
	}
	sp := v.Affine.Spacing()
	if d := sp[2] - 1.25; d > 1e-4 || d < -1e-4 || sp[0] != 0.488281 {
		t.Fatalf("spacing %v", sp)
	}
	for k := 1; k < 3; k++ {
		if l.Slices[k].Position[2] <= l.Slices[k-1].Position[2] {
			t.Fatal("slices not ascending along +z")
		}
	}
}

// dcmqi's Legacy Converted Enhanced CT holds the same three slices as the
// single-frame CT files beside it: both must assemble to the same volume.
func TestLegacyConvertedMatchesSingleFrames(t *testing.T) {
	for _, size := range []string{"23x38x3", "24x38x3"} {
		t.Run(size, func(t *testing.T) {
			base := "dicom-test-files/data/dcmqi/segmentations/" + size + "/"
			mf := unzstd(t, corpusPath(t, base+"multiframe/mf.dcm.zst"))
			var singles []string
			for i := 1; i <= 3; i++ {
				singles = append(singles, unzstd(t, corpusPath(t, base+"image/IMG000"+string(rune('0'+i))+".dcm.zst")))
			}
			opts := Options{MinSlices: 3}
			a, la, err := Load(context.Background(), []string{mf}, opts)
			if err != nil {
				t.Fatal(err)
			}
			b, _, err := Load(context.Background(), singles, opts)
			if err != nil {
				t.Fatal(err)
			}
			if la.SOPClassUID != sopLegacyEnhancedCT {
				t.Fatalf("SOP class %s", la.SOPClassUID)
			}
			if a.Grid != b.Grid {
				t.Fatalf("grids differ:\n%+v\n%+v", a.Grid, b.Grid)
			}
			for i := range a.Data {
				if a.Data[i] != b.Data[i] {
					t.Fatalf("voxel %d: %v vs %v", i, a.Data[i], b.Data[i])
				}
			}
		})
	}
}

// Every file of the third-party corpus is either read or refused with a
// named reason: no panic, no hang, no runaway memory.
func TestWholeCorpusReadOrRefused(t *testing.T) {
	root := corpusPath(t, ".")
	counts := map[Reason]int{}
	read := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".zst") || strings.HasSuffix(p, ".md") || strings.HasSuffix(p, ".txt") {
			return err
		}
		in, err := scanHeader(p, 64<<20)
		if err == nil {
			_, err = decodeFrames(in)
		}
		if err == nil {
			read++
			return nil
		}
		r := ReasonOf(err)
		if r == "" {
			t.Errorf("%s: error without a reason: %v", p, err)
		}
		if r != ReasonNotCT && r != ReasonUnsupportedSyntax && os.Getenv("OTONODE_CORPUS_VERBOSE") != "" {
			t.Logf("%v", err)
		}
		counts[r]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("read %d CT files; refused: %v", read, counts)
	if read < 20 {
		t.Fatalf("only %d corpus CT files read", read)
	}
}
