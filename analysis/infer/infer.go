// Package infer runs an ONNX model of the otonode model contract through ONNX
// Runtime: one float32 input [N,1,D,H,W] and the outputs named by the model's
// manifest. It knows nothing about volumes, windows or TTA; the analysis
// pipeline above it does.
//
// ONNX Runtime is a C library loaded at run time (libonnxruntime.so). Its
// environment is process-wide, so this package keeps the one Runtime of the
// process; everything else (sessions, tensors) belongs to the caller.
package infer

import (
	"errors"
)

// EnvLibrary names the environment variable that points at libonnxruntime.so.
const EnvLibrary = "ORT_LIB"

// ErrNoLibrary is returned when no ONNX Runtime library path is known.
var ErrNoLibrary = errors.New("infer: no ONNX Runtime library: set " + EnvLibrary +
	" or the configured path (deploy/fetch-onnxruntime.sh fetches the CPU build)")

// Provider selects the execution provider of a session.
type Provider string

const (
	ProviderCPU  Provider = "cpu"
	ProviderCUDA Provider = "cuda"
)

// Options configure a model session. The zero value runs on the CPU with one
// intra-op thread per core and full graph optimisation.
type Options struct {
	Provider Provider
	Threads  int // intra-op threads; 0 means runtime.NumCPU()
	DeviceID int // GPU ordinal for ProviderCUDA
}

// Spec names the graph's input and outputs, as the model manifest gives them.
type Spec struct {
	Input   string
	Outputs []string
}

// Runtime is the process's ONNX Runtime environment.
type Runtime struct {
	libPath string
	version string
}

// Version is the ONNX Runtime version the library reports.
func (rt *Runtime) Version() string { return rt.version }

// LibraryPath is where the library was loaded from.
func (rt *Runtime) LibraryPath() string { return rt.libPath }
