package analysis

import (
	"fmt"

	"github.com/otonode/otonode/analysis/infer"
)

// OpenModel reads a manifest, checks its ONNX file and opens it as an ONNX
// Runtime session named as the manifest says. ortLib is the path of
// libonnxruntime.so ("" means $ORT_LIB).
func OpenModel(manifestPath, ortLib string, opt infer.Options) (*Manifest, *infer.Model, error) {
	m, err := ReadManifest(manifestPath)
	if err != nil {
		return nil, nil, err
	}
	rt, err := infer.OpenRuntime(ortLib)
	if err != nil {
		return nil, nil, err
	}
	model, err := rt.Load(m.ONNXPath(), infer.Spec{
		Input:   m.Input.Name,
		Outputs: []string{m.Outputs.Segmentation.Name, m.Outputs.Heatmaps.Name},
	}, opt)
	if err != nil {
		return nil, nil, fmt.Errorf("analysis: model %s: %w", m.Name, err)
	}
	return m, model, nil
}
