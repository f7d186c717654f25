package worker

import (
	"context"

	"github.com/otonode/otonode/analysis"
	"github.com/otonode/otonode/analysis/infer"
)

// ModelAnalyzer is the real analysis: a model manifest opened in ONNX
// Runtime and the pipeline of package analysis.
type ModelAnalyzer struct {
	A   *analysis.Analyzer
	net *infer.Model
}

// OpenModel opens the model of a manifest. ortLib is the path of
// libonnxruntime.so ("" means $ORT_LIB).
func OpenModel(manifest, ortLib string, opt infer.Options, ao analysis.Options) (*ModelAnalyzer, error) {
	man, net, err := analysis.OpenModel(manifest, ortLib, opt)
	if err != nil {
		return nil, err
	}
	return &ModelAnalyzer{A: &analysis.Analyzer{Manifest: man, Model: net, Options: ao}, net: net}, nil
}

// Model implements Analyzer.
func (m *ModelAnalyzer) Model() analysis.Model { return m.A.Manifest.ModelInfo() }

// Analyze implements Analyzer: the files become one CT volume (errors
// there are analysis.ErrInput, not retried) and the pipeline runs on it.
// The volume is int16 HU where the series' values allow it, half the
// memory of float32 for the same result.
func (m *ModelAnalyzer) Analyze(ctx context.Context, files []string) (*analysis.Result, error) {
	in, err := analysis.LoadInputWith(ctx, files, analysis.LoadOptions{Int16: true})
	if err != nil {
		return nil, err
	}
	return m.A.AnalyzeInput(ctx, in)
}

// Close releases the ONNX Runtime session.
func (m *ModelAnalyzer) Close() error { return m.net.Close() }
