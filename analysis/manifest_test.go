package analysis

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// validManifest returns a manifest document for the tiny test model of
// analysis/infer, copied into dir.
func validManifest(t *testing.T, dir string) map[string]any {
	t.Helper()
	onnx, err := os.ReadFile("infer/testdata/tiny.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), onnx, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(onnx)
	return map[string]any{
		"format": ManifestFormat, "name": "tiny", "created_utc": "2026-11-27T00:00:00Z",
		"intended_use":                  "A test model. It is not for diagnosis.",
		"trained_on_synthetic_phantoms": true,
		"onnx":                          map[string]any{"file": "model.onnx", "sha256": hex.EncodeToString(sum[:]), "bytes": len(onnx), "opset": 17},
		"input":                         map[string]any{"name": "input", "layout": "NCDHW", "dtype": "float32", "axes": []string{"k", "j", "i"}, "spatial_multiple": 2},
		"outputs": map[string]any{
			"segmentation": map[string]any{"name": "segmentation", "layout": "NCDHW", "channels": 1, "kind": "logits"},
			"heatmaps":     map[string]any{"name": "heatmaps", "layout": "NCDHW", "channels": 3, "kind": "heatmap"},
		},
		"landmarks":            []string{"helicotrema", "oval_window", "round_window"},
		"voxel_size_mm":        0.099,
		"chunk":                map[string]any{"size": []int{128, 128, 128}, "overlap": 25},
		"normalization":        map[string]any{"low_quantile": 0.01, "high_quantile": 0.99, "clip_low": -1000, "clip_high": 2500, "mean": 400, "std": 700},
		"threshold":            0.5,
		"tta":                  map[string]any{"passes": 10},
		"uncertainty":          map[string]any{"margin_mm": 1.0, "flag_threshold": 0.004},
		"plausible_volume_mm3": map[string]any{"min": 100, "max": 300},
	}
}

func writeManifest(t *testing.T, dir string, doc map[string]any) string {
	t.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "model.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadManifest(t *testing.T) {
	dir := t.TempDir()
	m, err := ReadManifest(writeManifest(t, dir, validManifest(t, dir)))
	if err != nil {
		t.Fatal(err)
	}
	if m.ONNXPath() != filepath.Join(dir, "model.onnx") || m.Chunk.Size != [3]int{128, 128, 128} ||
		*m.Uncertainty.FlagThreshold != 0.004 || m.Normalization.Std != 700 {
		t.Fatalf("fields not read: %+v", m)
	}
	if info := m.ModelInfo(); !info.NotForDiagnosis || info.SHA256 != m.ONNX.SHA256 {
		t.Fatalf("model info %+v", info)
	}
}

func TestReadManifestRejects(t *testing.T) {
	tests := []struct {
		name   string
		change func(doc map[string]any)
	}{
		{"wrong format", func(d map[string]any) { d["format"] = "other/1" }},
		{"landmark order", func(d map[string]any) {
			d["landmarks"] = []string{"oval_window", "helicotrema", "round_window"}
		}},
		{"path in file name", func(d map[string]any) { d["onnx"].(map[string]any)["file"] = "../model.onnx" }},
		{"hash mismatch", func(d map[string]any) {
			d["onnx"].(map[string]any)["sha256"] = "0000000000000000000000000000000000000000000000000000000000000000"
		}},
		{"size mismatch", func(d map[string]any) { d["onnx"].(map[string]any)["bytes"] = 12 }},
		{"overlap too big", func(d map[string]any) { d["chunk"].(map[string]any)["overlap"] = 128 }},
		{"chunk not a multiple", func(d map[string]any) { d["chunk"].(map[string]any)["size"] = []int{127, 128, 128} }},
		{"zero std", func(d map[string]any) { d["normalization"].(map[string]any)["std"] = 0 }},
		{"threshold not a probability", func(d map[string]any) { d["threshold"] = 1.5 }},
		{"heatmap channels", func(d map[string]any) {
			d["outputs"].(map[string]any)["heatmaps"].(map[string]any)["channels"] = 2
		}},
		{"volume range", func(d map[string]any) { d["plausible_volume_mm3"] = map[string]any{"min": 300, "max": 100} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			doc := validManifest(t, dir)
			tt.change(doc)
			_, err := ReadManifest(writeManifest(t, dir, doc))
			if !errors.Is(err, ErrManifest) {
				t.Fatalf("err %v, want ErrManifest", err)
			}
		})
	}
}
