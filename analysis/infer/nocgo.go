//go:build !cgo

package infer

import "errors"

// ErrNoCgo is returned by a binary built without cgo: ONNX Runtime is a C
// library and its Go binding needs cgo (a C compiler at build time).
var ErrNoCgo = errors.New("infer: this otonode was built without cgo, so it cannot load ONNX Runtime; install gcc and build again (CGO_ENABLED=1)")

// OpenRuntime reports ErrNoCgo: the rest of the node works without it.
func OpenRuntime(string) (*Runtime, error) { return nil, ErrNoCgo }

// Model is an ONNX session; without cgo none can be opened.
type Model struct{}

// Load reports ErrNoCgo.
func (rt *Runtime) Load(string, Spec, Options) (*Model, error) { return nil, ErrNoCgo }

// Run reports ErrNoCgo.
func (m *Model) Run([]float32, int, int, int) ([][]float32, error) { return nil, ErrNoCgo }

// Close does nothing.
func (m *Model) Close() error { return nil }
