package infer

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
)

// BenchmarkWindow times one forward pass of a model over a cubic window, the
// unit of the analysis's compute budget. It needs a model of the contract:
//
//	OTONODE_BENCH_MODEL=$PWD/analysis/model/.../model.onnx [OTONODE_BENCH_SIZE=128] [OTONODE_BENCH_THREADS=1] \
//	  go test -run - -bench Window ./analysis/infer/
func BenchmarkWindow(b *testing.B) {
	path := os.Getenv("OTONODE_BENCH_MODEL")
	if path == "" {
		b.Skip("set OTONODE_BENCH_MODEL to an ONNX model of the otonode contract")
	}
	n := 128
	if s := os.Getenv("OTONODE_BENCH_SIZE"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	var opt Options
	if s := os.Getenv("OTONODE_BENCH_THREADS"); s != "" {
		var err error
		if opt.Threads, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	rt := testRuntime(b)
	m, err := rt.Load(path, Spec{Input: "input", Outputs: []string{"segmentation", "heatmaps"}}, opt)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	x := make([]float32, n*n*n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	if _, err := m.Run(x, n, n, n); err != nil { // warm-up: allocation, graph optimisation
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Run(x, n, n, n); err != nil {
			b.Fatal(err)
		}
	}
}
