package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otonode/otonode/analysis"
	"github.com/otonode/otonode/analysis/nifti"
	"github.com/otonode/otonode/analysis/phantom"
	"github.com/otonode/otonode/analysis/volume"
)

// ortLib finds ONNX Runtime as the analysis tests do; under CI it must exist.
func ortLib(t *testing.T) string {
	t.Helper()
	lib := os.Getenv("ORT_LIB")
	if lib == "" {
		lib, _ = filepath.Abs("../../third_party/onnxruntime/libonnxruntime.so.1")
	}
	if _, err := os.Stat(lib); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ONNX Runtime missing: %v", err)
		}
		t.Skipf("ONNX Runtime missing: %v", err)
	}
	return lib
}

// tinyModel writes the untrained test network of analysis/infer with a
// manifest into dir and returns the manifest's path.
func tinyModel(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile("../../analysis/infer/testdata/tiny.onnx")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "tiny.onnx"), b, 0o644)
	sum := sha256.Sum256(b)
	lo, hi := 100.0, 300.0
	m := map[string]any{
		"format": analysis.ManifestFormat, "name": "tiny-untrained", "created_utc": "2026-11-27T00:00:00Z",
		"intended_use":                  "An untrained test network. It is not for diagnosis.",
		"trained_on_synthetic_phantoms": true,
		"onnx":                          map[string]any{"file": "tiny.onnx", "sha256": hex.EncodeToString(sum[:]), "bytes": len(b), "opset": 17},
		"input":                         map[string]any{"name": "input", "layout": "NCDHW", "dtype": "float32", "axes": []string{"k", "j", "i"}, "spatial_multiple": 2},
		"outputs": map[string]any{
			"segmentation": map[string]any{"name": "segmentation", "layout": "NCDHW", "channels": 1, "kind": "logits"},
			"heatmaps":     map[string]any{"name": "heatmaps", "layout": "NCDHW", "channels": 3, "kind": "heatmap"},
		},
		"landmarks":            []string{"helicotrema", "oval_window", "round_window"},
		"voxel_size_mm":        0.3,
		"chunk":                map[string]any{"size": []int{64, 64, 64}, "overlap": 8},
		"normalization":        map[string]any{"low_quantile": 0.01, "high_quantile": 0.99, "clip_low": -1000, "clip_high": 2500, "mean": 500, "std": 1000},
		"threshold":            0.5,
		"tta":                  map[string]any{"passes": 10},
		"uncertainty":          map[string]any{"margin_mm": 1.0, "flag_threshold": 0.05},
		"plausible_volume_mm3": map[string]any{"min": lo, "max": hi},
	}
	j, _ := json.Marshal(m)
	p := filepath.Join(dir, "tiny.json")
	os.WriteFile(p, j, 0o644)
	return p
}

// earVolume is a dense capsule with a fluid cavity in petrous bone.
func earVolume() *volume.Volume[float32] {
	g := volume.Grid{Size: [3]int{80, 80, 64}, Affine: volume.NewAffine([3]float64{1, 0, 0}, [3]float64{0, 1, 0}, [3]float64{0, 0, 1}, [3]float64{0.3, 0.3, 0.3}, [3]float64{-12, -12, -9.6})}
	v := volume.New[float32](g)
	for k := range g.Size[2] {
		for j := range g.Size[1] {
			for i := range g.Size[0] {
				p := g.Affine.Apply([3]float64{float64(i), float64(j), float64(k)})
				r2 := p[0]*p[0] + p[1]*p[1] + p[2]*p[2]
				val := float32(1100)
				if r2 < 49 {
					val = 2000
				}
				if p[0]*p[0]/6.25+p[1]*p[1]/2.56+p[2]*p[2]/2.56 < 1 {
					val = 30
				}
				v.Set(i, j, k, val)
			}
		}
	}
	return v
}

func TestAnalyzeCommand(t *testing.T) {
	lib := ortLib(t)
	dir := t.TempDir()
	manifest := tinyModel(t, dir)
	input := filepath.Join(dir, "ct.nii.gz")
	if err := nifti.WriteFile(input, earVolume(), nifti.Options{}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"analyze", input, "--out", out, "--model", manifest, "--ort-lib", lib, "--tta", "identity,i90,k180", "--threads", "1"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep analysis.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Result.Status != analysis.StatusDone || len(rep.Result.Ears) != 1 || rep.Input.Format != "nifti" {
		t.Fatalf("report %s", b)
	}
	if !rep.Result.Model.NotForDiagnosis || len(rep.Result.Ears[0].Landmarks) != 3 {
		t.Fatalf("report %s", b)
	}
	for _, f := range rep.Files {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("listed output %s: %v", f, err)
		}
	}
	seg, _, err := nifti.ReadFileAs[uint8](filepath.Join(out, "segmentation.nii.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if seg.Size != [3]int{80, 80, 64} {
		t.Fatalf("segmentation on grid %v", seg.Size)
	}
	if stdout.Len() == 0 {
		t.Fatal("no summary on stdout")
	}
}

func TestAnalyzeCommandUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"analyze", "x.nii"}, &stdout, &stderr); code != 2 {
		t.Fatalf("missing --out: exit %d", code)
	}
	if code := run(context.Background(), []string{"analyze", "--out", t.TempDir(), "--model", "/nonexistent.json", "x.nii"}, &stdout, &stderr); code != 1 {
		t.Fatalf("missing input: exit %d", code)
	}
}

// TestAnalyzeDICOMWritesSEGAndSR runs analyze on a phantom DICOM series with
// a fixed threshold network, so the segmentation is not empty, and checks
// that the SEG and SR it writes pass dciodvfy.
func TestAnalyzeDICOMWritesSEGAndSR(t *testing.T) {
	lib := ortLib(t)
	dciodvfy, err := exec.LookPath("dciodvfy")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("dciodvfy missing (Debian package dicom3tools)")
		}
		t.Skip("dciodvfy missing")
	}
	dir := t.TempDir()
	manifest := tinyModel(t, dir)
	onnx, err := os.ReadFile("../../analysis/infer/testdata/threshold.onnx")
	if err != nil {
		t.Fatal(err)
	}
	// The same manifest, pointing at the threshold network.
	var m map[string]any
	b, _ := os.ReadFile(manifest)
	json.Unmarshal(b, &m)
	sum := sha256.Sum256(onnx)
	m["name"] = "threshold-test"
	m["onnx"] = map[string]any{"file": "threshold.onnx", "sha256": hex.EncodeToString(sum[:]), "bytes": len(onnx), "opset": 17}
	m["input"].(map[string]any)["spatial_multiple"] = 1
	os.WriteFile(filepath.Join(dir, "threshold.onnx"), onnx, 0o644)
	b, _ = json.Marshal(m)
	os.WriteFile(manifest, b, 0o644)

	v, err := phantom.ParseVariant("right")
	if err != nil {
		t.Fatal(err)
	}
	v.Size = [3]int{96, 96, 80}
	v.SpacingMM = [3]float64{0.25, 0.25, 0.25}
	c, err := phantom.Generate(context.Background(), 3, v, phantom.Options{NoSupersample: true})
	if err != nil {
		t.Fatal(err)
	}
	series := filepath.Join(dir, "series")
	if _, err := phantom.WriteSeries(context.Background(), series, c.CT, &c.Info, phantom.SeriesOptions{}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"analyze", series, "--out", out, "--model", manifest, "--ort-lib", lib, "--tta", "identity,j90"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, f := range []string{"seg.dcm", "sr.dcm"} {
		p := filepath.Join(out, f)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s not written: %v\n%s", f, err, stderr.String())
		}
		cmd := exec.Command(dciodvfy, "-new", p)
		msg, _ := cmd.CombinedOutput()
		for _, line := range strings.Split(string(msg), "\n") {
			if strings.HasPrefix(line, "Error") {
				t.Errorf("dciodvfy %s: %s", f, line)
			}
		}
	}
}
