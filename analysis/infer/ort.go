//go:build cgo

package infer

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// The environment of ONNX Runtime is global to the process in the C library
// itself; these mirror that fact rather than add state of our own.
var (
	runtimeMu sync.Mutex
	theRT     *Runtime
)

// OpenRuntime loads ONNX Runtime from libPath (an empty path: see FindLibrary)
// and initialises its environment. Later calls return the same Runtime; a
// call naming another library than the first is an error, because the C
// library cannot be swapped inside a running process.
func OpenRuntime(libPath string) (*Runtime, error) {
	libPath, err := FindLibrary(libPath)
	if err != nil {
		return nil, err
	}
	runtimeMu.Lock()
	defer runtimeMu.Unlock()
	if theRT != nil {
		if theRT.libPath != libPath {
			return nil, fmt.Errorf("infer: ONNX Runtime already loaded from %s, cannot load %s", theRT.libPath, libPath)
		}
		return theRT, nil
	}
	if _, err := os.Stat(libPath); err != nil {
		return nil, fmt.Errorf("infer: ONNX Runtime library: %w", err)
	}
	ort.SetSharedLibraryPath(libPath)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return nil, fmt.Errorf("infer: initialise ONNX Runtime from %s: %w", libPath, err)
	}
	theRT = &Runtime{libPath: libPath, version: ort.GetVersion()}
	return theRT, nil
}

// Model is an ONNX session ready to run. It is not safe for concurrent use:
// it reuses its tensors between calls of the same shape.
type Model struct {
	spec    Spec
	sess    *ort.DynamicAdvancedSession
	shape   ort.Shape
	input   *ort.Tensor[float32]
	outputs []ort.Value
}

// Load opens the ONNX file at path as a session with the given options.
func (rt *Runtime) Load(path string, spec Spec, opt Options) (*Model, error) {
	if spec.Input == "" || len(spec.Outputs) == 0 {
		return nil, errors.New("infer: the model spec needs an input and at least one output name")
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("infer: session options: %w", err)
	}
	defer so.Destroy()
	threads := opt.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	if err := so.SetIntraOpNumThreads(threads); err != nil {
		return nil, fmt.Errorf("infer: threads: %w", err)
	}
	if err := so.SetInterOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("infer: threads: %w", err)
	}
	if !opt.Spin {
		if err := so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
			return nil, fmt.Errorf("infer: thread spinning: %w", err)
		}
	}
	if err := so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll); err != nil {
		return nil, fmt.Errorf("infer: graph optimisation: %w", err)
	}
	switch opt.Provider {
	case "", ProviderCPU:
	case ProviderCUDA:
		if err := appendCUDA(so, opt.DeviceID); err != nil {
			return nil, fmt.Errorf("infer: the CUDA execution provider is not available in %s (a GPU build of ONNX Runtime and its CUDA libraries are needed): %w", rt.libPath, err)
		}
	default:
		return nil, fmt.Errorf("infer: unknown execution provider %q (want %q or %q)", opt.Provider, ProviderCPU, ProviderCUDA)
	}
	if err := checkSpec(path, spec); err != nil {
		return nil, err
	}
	sess, err := ort.NewDynamicAdvancedSession(path, []string{spec.Input}, spec.Outputs, so)
	if err != nil {
		return nil, fmt.Errorf("infer: load %s: %w", path, err)
	}
	return &Model{spec: spec, sess: sess, outputs: make([]ort.Value, len(spec.Outputs))}, nil
}

// checkSpec compares the graph's declared inputs and outputs with the names
// the manifest gives, so a mismatched model fails at load with a clear reason
// rather than at the first run.
func checkSpec(path string, spec Spec) error {
	ins, outs, err := ort.GetInputOutputInfo(path)
	if err != nil {
		return fmt.Errorf("infer: load %s: %w", path, err)
	}
	find := func(list []ort.InputOutputInfo, name string) *ort.InputOutputInfo {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
		return nil
	}
	names := func(list []ort.InputOutputInfo) []string {
		var s []string
		for _, x := range list {
			s = append(s, x.Name)
		}
		return s
	}
	in := find(ins, spec.Input)
	if in == nil {
		return fmt.Errorf("infer: load %s: no input %q (the graph has %v)", path, spec.Input, names(ins))
	}
	if in.DataType != ort.TensorElementDataTypeFloat || len(in.Dimensions) != 5 {
		return fmt.Errorf("infer: load %s: input %q is %v %v, want float32 [N,1,D,H,W]", path, spec.Input, in.DataType, in.Dimensions)
	}
	for _, name := range spec.Outputs {
		o := find(outs, name)
		if o == nil {
			return fmt.Errorf("infer: load %s: no output %q (the graph has %v)", path, name, names(outs))
		}
		if o.DataType != ort.TensorElementDataTypeFloat || len(o.Dimensions) != 5 {
			return fmt.Errorf("infer: load %s: output %q is %v %v, want float32 [N,C,D,H,W]", path, name, o.DataType, o.Dimensions)
		}
	}
	return nil
}

func appendCUDA(so *ort.SessionOptions, device int) error {
	cuda, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return err
	}
	defer cuda.Destroy()
	if err := cuda.Update(map[string]string{"device_id": fmt.Sprint(device)}); err != nil {
		return err
	}
	return so.AppendExecutionProviderCUDA(cuda)
}

// Run feeds x, a [1,1,d,h,w] float32 volume in C order (w fastest), and
// returns one slice per output, in the order of the Spec. The returned slices
// are owned by the Model and valid until the next Run with another shape or
// Close; copy what must outlive that.
func (m *Model) Run(x []float32, d, h, w int) ([][]float32, error) {
	if len(x) != d*h*w {
		return nil, fmt.Errorf("infer: input has %d values, want %d×%d×%d", len(x), d, h, w)
	}
	shape := ort.NewShape(1, 1, int64(d), int64(h), int64(w))
	if m.input == nil || !m.shape.Equals(shape) {
		m.release()
		t, err := ort.NewEmptyTensor[float32](shape)
		if err != nil {
			return nil, fmt.Errorf("infer: input tensor: %w", err)
		}
		m.input, m.shape = t, shape
	}
	copy(m.input.GetData(), x)
	// Outputs are allocated by ONNX Runtime on the first run of a shape and
	// reused afterwards, so repeated TTA passes copy nothing but the input.
	if err := m.sess.Run([]ort.Value{m.input}, m.outputs); err != nil {
		return nil, fmt.Errorf("infer: run: %w", err)
	}
	out := make([][]float32, len(m.outputs))
	for i, v := range m.outputs {
		t, ok := v.(*ort.Tensor[float32])
		if !ok {
			return nil, fmt.Errorf("infer: output %q is %s, want a float32 tensor", m.spec.Outputs[i], v.GetONNXType())
		}
		s := t.GetShape()
		if len(s) != 5 || s[0] != 1 || s[2] != int64(d) || s[3] != int64(h) || s[4] != int64(w) {
			return nil, fmt.Errorf("infer: output %q has shape %v, want [1,C,%d,%d,%d]", m.spec.Outputs[i], s, d, h, w)
		}
		out[i] = t.GetData()
	}
	return out, nil
}

func (m *Model) release() {
	if m.input != nil {
		m.input.Destroy()
		m.input = nil
	}
	for i, v := range m.outputs {
		if v != nil {
			v.Destroy()
			m.outputs[i] = nil
		}
	}
}

// Close frees the session and its tensors.
func (m *Model) Close() error {
	m.release()
	return m.sess.Destroy()
}
