package infer

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testRuntime opens ONNX Runtime from $ORT_LIB or the copy that
// deploy/fetch-onnxruntime.sh puts under third_party/. Under CI a missing
// library fails the test.
func testRuntime(t testing.TB) *Runtime {
	t.Helper()
	lib := os.Getenv(EnvLibrary)
	if lib == "" {
		lib, _ = filepath.Abs("../../third_party/onnxruntime/libonnxruntime.so.1")
	}
	if _, err := os.Stat(lib); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ONNX Runtime library missing (%v); run deploy/fetch-onnxruntime.sh", err)
		}
		t.Skipf("ONNX Runtime library missing (%v); run deploy/fetch-onnxruntime.sh", err)
	}
	rt, err := OpenRuntime(lib)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func readF32(t *testing.T, name string) []float32 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

var tinySpec = Spec{Input: "input", Outputs: []string{"segmentation", "heatmaps"}}

// TestTinyModelMatchesPyTorch runs the exported graph and compares it with the
// outputs PyTorch computed for the same input (testdata/make_tiny_model.py).
func TestTinyModelMatchesPyTorch(t *testing.T) {
	rt := testRuntime(t)
	if !strings.HasPrefix(rt.Version(), "1.") {
		t.Fatalf("version %q", rt.Version())
	}
	m, err := rt.Load("testdata/tiny.onnx", tinySpec, Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	x := readF32(t, "tiny_input_1x1x6x8x10.f32")
	want := [][]float32{
		readF32(t, "tiny_segmentation_1x1x6x8x10.f32"),
		readF32(t, "tiny_heatmaps_1x3x6x8x10.f32"),
	}
	for pass := range 2 { // the second pass reuses the tensors
		got, err := m.Run(x, 6, 8, 10)
		if err != nil {
			t.Fatal(err)
		}
		for o := range want {
			if len(got[o]) != len(want[o]) {
				t.Fatalf("pass %d output %d: %d values, want %d", pass, o, len(got[o]), len(want[o]))
			}
			for i := range want[o] {
				if d := math.Abs(float64(got[o][i] - want[o][i])); d > 1e-4 {
					t.Fatalf("pass %d output %d value %d: %g, PyTorch %g", pass, o, i, got[o][i], want[o][i])
				}
			}
		}
	}
	// Another spatial size works (dynamic axes) and gives outputs of that size.
	got, err := m.Run(make([]float32, 4*4*4), 4, 4, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(got[0]) != 64 || len(got[1]) != 3*64 {
		t.Fatalf("4³ run gave %d and %d values", len(got[0]), len(got[1]))
	}
}

func TestLoadErrors(t *testing.T) {
	rt := testRuntime(t)
	tests := []struct {
		name string
		path string
		spec Spec
		opt  Options
		want string
	}{
		{"missing file", "testdata/nope.onnx", tinySpec, Options{}, "load"},
		{"no outputs", "testdata/tiny.onnx", Spec{Input: "input"}, Options{}, "needs an input"},
		{"wrong output name", "testdata/tiny.onnx", Spec{Input: "input", Outputs: []string{"logits"}}, Options{}, `no output "logits"`},
		{"wrong input name", "testdata/tiny.onnx", Spec{Input: "image", Outputs: []string{"heatmaps"}}, Options{}, `no input "image"`},
		{"unknown provider", "testdata/tiny.onnx", tinySpec, Options{Provider: "tpu"}, "unknown execution provider"},
		// The CPU build has no CUDA provider: the message must say so.
		{"cuda on a cpu build", "testdata/tiny.onnx", tinySpec, Options{Provider: ProviderCUDA}, "CUDA execution provider is not available"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := rt.Load(tt.path, tt.spec, tt.opt)
			if err == nil {
				m.Close()
				t.Fatalf("no error, want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
	m, err := rt.Load("testdata/tiny.onnx", tinySpec, Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Run(make([]float32, 10), 2, 2, 2); err == nil {
		t.Fatal("wrong input length accepted")
	}
}

func TestOpenRuntimeTwice(t *testing.T) {
	rt := testRuntime(t)
	again, err := OpenRuntime(rt.LibraryPath())
	if err != nil || again != rt {
		t.Fatalf("second open: %v, same=%v", err, again == rt)
	}
	if _, err := OpenRuntime("/nonexistent/libonnxruntime.so"); err == nil {
		t.Fatal("a second, different library was accepted")
	}
}
