package phantom

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/otonode/otonode/analysis/nifti"
	"github.com/otonode/otonode/analysis/volume"
)

// bruteRender is the peer of the octree renderer: every voxel centre
// classified against every layer, no supersampling.
func bruteRender(sc *scene, g volume.Grid, hu huTable) []float32 {
	out := make([]float32, g.Len())
	all := make([]int32, len(sc.layers))
	for i := range all {
		all[i] = int32(i)
	}
	var p pt
	for k := 0; k < g.Size[2]; k++ {
		for j := 0; j < g.Size[1]; j++ {
			for i := 0; i < g.Size[0]; i++ {
				p.reset(sc, g.Affine.Apply([3]float64{float64(i), float64(j), float64(k)}))
				t, _, _ := sc.classify(&p, all, sc.bg)
				out[g.Index(i, j, k)] = hu[t]
			}
		}
	}
	return out
}

// BenchmarkRender compares the octree renderer (with partial volume) with
// brute force on a 160³ flat-panel block around the labyrinth, one core
// each, and reports the ratio.
func BenchmarkRender(b *testing.B) {
	v, _ := ParseVariant("flatpanel,right")
	v.Size = [3]int{160, 160, 160}
	var sc *scene
	var g volume.Grid
	if _, err := Generate(context.Background(), 1, v, Options{Workers: 1, onScene: func(s *scene, gg volume.Grid) { sc, g = s, gg }}); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	bruteRender(sc, g, clinicalHU())
	brute := time.Since(t0)
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		if _, err := render(context.Background(), sc, g, clinicalHU(), true, 1); err != nil {
			b.Fatal(err)
		}
	}
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(brute)/float64(per), "x-faster-than-brute-force")
	b.ReportMetric(per.Seconds(), "s/render")
}

// BenchmarkFlatPanelCase makes the clinical flat-panel case (512×512×400 at
// 0.099 mm) and writes its DICOM series, on all cores: the issue's ≤ 10 s
// target. Opt in with OTONODE_PHANTOM_BENCH=1 (it needs ~1.5 GB of memory).
func BenchmarkFlatPanelCase(b *testing.B) {
	if os.Getenv("OTONODE_PHANTOM_BENCH") == "" {
		b.Skip("set OTONODE_PHANTOM_BENCH=1 to run the 512×512×400 case")
	}
	v, _ := ParseVariant("flatpanel")
	var gen, dcm, nii time.Duration
	for n := 0; n < b.N; n++ {
		dir := b.TempDir()
		t0 := time.Now()
		c, err := Generate(context.Background(), uint64(n+1), v, Options{})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := WriteSeries(context.Background(), dir, c.CT, &c.Info, SeriesOptions{}); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := writeNIfTIFast(dir+"/ct.nii.gz", c.CT, nifti.Options{}); err != nil {
			b.Fatal(err)
		}
		gen, dcm, nii = gen+t1.Sub(t0), dcm+t2.Sub(t1), nii+time.Since(t2)
	}
	nb := float64(b.N)
	b.ReportMetric(gen.Seconds()/nb, "s-generate")
	b.ReportMetric(dcm.Seconds()/nb, "s-dicom")
	b.ReportMetric(nii.Seconds()/nb, "s-nifti-ct")
	b.ReportMetric((gen+dcm).Seconds()/nb/10, "x-of-10s-target")
}
