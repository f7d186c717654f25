// Package reference carries otonode's reference model (trained on synthetic
// phantoms only, not for diagnosis) inside the binary, so a node analyses
// with nothing configured.
package reference

import _ "embed"

// Manifest is model.json, the model's manifest.
//
//go:embed model.json
var Manifest []byte

// ONNX is model.onnx, the network the manifest describes.
//
//go:embed model.onnx
var ONNX []byte
