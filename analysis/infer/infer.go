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
	"os"
	"path/filepath"
)

// EnvLibrary names the environment variable that points at libonnxruntime.so.
const EnvLibrary = "ORT_LIB"

// LibraryCandidates are where FindLibrary looks when neither a path nor
// $ORT_LIB names the library: where deploy/fetch-onnxruntime.sh puts it
// (relative to the working directory, as when running from a checkout,
// and beside the executable), then the usual system folders.
func LibraryCandidates() []string {
	const name = "libonnxruntime.so.1"
	c := []string{filepath.Join("third_party", "onnxruntime", name)}
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		c = append(c, filepath.Join(dir, name), filepath.Join(dir, "third_party", "onnxruntime", name))
	}
	return append(c, "/usr/local/lib/"+name, "/usr/lib/x86_64-linux-gnu/"+name, "/usr/lib/aarch64-linux-gnu/"+name)
}

// FindLibrary returns the ONNX Runtime library to load: path when given,
// else $ORT_LIB, else the first of LibraryCandidates that exists (made
// absolute). It returns ErrNoLibrary when none is found.
func FindLibrary(path string) (string, error) {
	if path == "" {
		path = os.Getenv(EnvLibrary)
	}
	if path != "" {
		return path, nil
	}
	for _, c := range LibraryCandidates() {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			if abs, err := filepath.Abs(c); err == nil {
				return abs, nil
			}
			return c, nil
		}
	}
	return "", ErrNoLibrary
}

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
	// Spin lets ONNX Runtime's intra-op threads busy-wait for work between
	// operators. Off by default: the node shares its cores with the
	// store, the database and other workers, and a spinning thread takes
	// CPU they need. Measured on the 2 shared cores at load 8 (64³ window,
	// 10 runs): spinning 9.0 and 9.3 CPU s, not spinning 7.0 and 6.2 CPU s,
	// wall time no worse.
	Spin bool
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
