package analysis

import (
	"context"
	"math"
	"os"
	"strconv"
	"testing"

	"github.com/otonode/otonode/analysis/infer"
	"github.com/otonode/otonode/analysis/metrics"
	"github.com/otonode/otonode/analysis/nifti"
	"github.com/otonode/otonode/analysis/roi"
	"github.com/otonode/otonode/analysis/volume"
)

// TestScoreDecomposition explains the uncertainty score of full TTA against
// focused TTA on one case: it runs full TTA and the scout, and splits the
// voxels full TTA's score averages over (the predicted structure dilated by
// the manifest's margin) into those inside the focus box and those outside
// it (stray blobs). Not part of CI: it runs the reference model for
// minutes.
//
//	OTONODE_SCORE_CASE=/var/tmp/oto/phantoms/case00000/ct.nii.gz [OTONODE_SCORE_OVERLAP=12] \
//	  go test -run ScoreDecomposition -v -timeout 2h ./analysis/
func TestScoreDecomposition(t *testing.T) {
	path := os.Getenv("OTONODE_SCORE_CASE")
	if path == "" {
		t.Skip("set OTONODE_SCORE_CASE to a CT volume (NIfTI) to explain the score on")
	}
	overlap := 0
	if s := os.Getenv("OTONODE_SCORE_OVERLAP"); s != "" {
		var err error
		if overlap, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	man, net, err := OpenModel("model/reference/model.json", "", infer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	ct, _, err := nifti.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cands, err := roi.Find(ct, roi.Options{})
	if err != nil || len(cands) == 0 {
		t.Fatalf("no ROI: %v", err)
	}
	c := cands[0]
	box := volume.Box{Min: c.Box[0], Max: c.Box[1]}
	mg := volume.IsotropicGrid(ct.Grid.Sub(box), man.VoxelSizeMM)
	x, err := volume.ResampleLinear(ct, mg, float32(man.Normalization.ClipLow))
	if err != nil {
		t.Fatal(err)
	}
	a := &Analyzer{Manifest: man, Model: net, Options: Options{FullTTA: true, Overlap: overlap}}
	a.normalise(x.Data)
	ctx := context.Background()
	fb, ok, _, _, err := a.scoutBox(ctx, x, [3]int{x.Size[0] / 2, x.Size[1] / 2, x.Size[2] / 2})
	if err != nil || !ok {
		t.Fatalf("scout: %v %v", ok, err)
	}
	t.Logf("region %v, focus box %v (%v voxels, %.1f %% of the region)", x.Size, fb, fb.Size(), 100*float64(boxLen(fb))/float64(x.Len()))
	tr, err := a.predictTTA(ctx, x, [3]int{}, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	thr := float32(man.Threshold)
	n := x.Size
	fg := make([]bool, len(tr.prob))
	for i, p := range tr.prob {
		fg[i] = p >= thr
	}
	major := append([]bool(nil), fg...)
	largestComponent(major, n)
	d2 := metrics.SquaredEDT(fg, n, x.Affine.Spacing())
	m2 := man.Uncertainty.MarginMM * man.Uncertainty.MarginMM
	type part struct {
		n   int
		sum float64
	}
	var all, in, out, fgOut, strayFG part
	for i, d := range d2 {
		if d > m2 {
			continue
		}
		s := float64(tr.spread[i])
		all.n++
		all.sum += s
		p := [3]int{i % n[0], i / n[0] % n[1], i / (n[0] * n[1])}
		inside := true
		for ax := range 3 {
			inside = inside && p[ax] >= fb.Min[ax] && p[ax] < fb.Max[ax]
		}
		if inside {
			in.n++
			in.sum += s
		} else {
			out.n++
			out.sum += s
			if fg[i] {
				fgOut.n++
				fgOut.sum += s
			}
		}
		if fg[i] && !major[i] {
			strayFG.n++
			strayFG.sum += s
		}
	}
	mean := func(p part) float64 { return p.sum / math.Max(float64(p.n), 1) }
	t.Logf("full TTA (overlap %d): score %.4f over %d voxels", overlap, mean(all), all.n)
	t.Logf("  inside the focus box:  %d voxels, mean spread %.4f (the focused score's counterpart)", in.n, mean(in))
	t.Logf("  outside the focus box: %d voxels, mean spread %.4f (of them %d predicted, mean spread %.4f)", out.n, mean(out), fgOut.n, mean(fgOut))
	t.Logf("  predicted voxels outside the largest component (strays): %d, mean spread %.4f", strayFG.n, mean(strayFG))
}
