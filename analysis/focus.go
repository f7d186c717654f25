package analysis

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/otonode/otonode/analysis/infer"
	"github.com/otonode/otonode/analysis/tta"
	"github.com/otonode/otonode/analysis/volume"
)

// How the TTA passes find where to run (see predictTTA).
//
// The analysed structure is what a first, cheap pass (the scout: the
// identity transform, windows with little overlap) finds in the region of
// interest: its largest connected component, which is the labyrinth, when
// the pipeline keeps only that component in the end (the manifest's
// default, see Options.LargestComponent; the model's false positives lie in
// other components mm away); else, for the network's own output, its major
// components (at least majorFraction of the largest). The TTA passes run on
// the box around it grown by the uncertainty score's margin (and by a slack
// when the options ask for one). Outside that box the result is background
// with a spread of 0: the scout's stray blobs are not part of the analysed
// structure. The windows of the TTA passes still read the image beyond the
// box as context, and by default do not overlap (see overlaps).
const (
	// majorFraction is the least size of a major component, as a share of
	// the largest.
	majorFraction = 0.1
	// focusSlackMM is what the box's margin adds to the uncertainty
	// score's by default: room for the TTA passes' structure to reach
	// beyond the scout's. None: on three held-out phantoms (10 passes, no
	// overlap) a slack of 1 mm gave Dice 0.957/0.949/0.953 and none
	// 0.964/0.962/0.955, with landmark errors no worse, and none needs 18
	// windows per pass instead of 27 on a 512×512×400 phantom.
	focusSlackMM = 0.0
	// backgroundLogit is the segmentation logit of a voxel no window ran
	// on: sure background.
	backgroundLogit = -20
)

// focusMargin is the box's margin in voxels of spacing sp: the uncertainty
// score's margin plus slackMM, so that the voxels that score looks at lie
// inside the box.
func focusMargin(sp [3]float64, uncertaintyMarginMM, slackMM float64) [3]int {
	mm := uncertaintyMarginMM + slackMM
	var m [3]int
	for a := range 3 {
		m[a] = int(math.Ceil(mm / sp[a]))
	}
	return m
}

// maskBox returns the bounding box, on a grid of extents n, of the voxels
// set in mask, grown by margin voxels per axis and clipped to the grid; false
// when none is set.
func maskBox(mask []bool, n [3]int, margin [3]int) (volume.Box, bool) {
	lo := [3]int{math.MaxInt, math.MaxInt, math.MaxInt}
	hi := [3]int{-1, -1, -1}
	for idx, on := range mask {
		if !on {
			continue
		}
		p := [3]int{idx % n[0], idx / n[0] % n[1], idx / (n[0] * n[1])}
		for a := range 3 {
			lo[a] = min(lo[a], p[a])
			hi[a] = max(hi[a], p[a])
		}
	}
	if hi[0] < 0 {
		return volume.Box{}, false
	}
	var b volume.Box
	for a := range 3 {
		b.Min[a] = max(lo[a]-margin[a], 0)
		b.Max[a] = min(hi[a]+margin[a]+1, n[a])
	}
	return b, true
}

// grow returns b grown by m voxels per axis, clipped to extents n.
func grow(b volume.Box, m, n [3]int) volume.Box {
	for a := range 3 {
		b.Min[a] = max(b.Min[a]-m[a], 0)
		b.Max[a] = min(b.Max[a]+m[a], n[a])
	}
	return b
}

// boxLen is the number of voxels in b.
func boxLen(b volume.Box) int {
	s := b.Size()
	return s[0] * s[1] * s[2]
}

// transformBox is where box b of a grid of extents n lands after t.
func transformBox(t tta.Transform, b volume.Box, n [3]int) volume.Box {
	var out volume.Box
	for d := range 3 {
		s := t.Src[d]
		if t.Flip[d] {
			out.Min[d], out.Max[d] = n[s]-b.Max[s], n[s]-b.Min[s]
		} else {
			out.Min[d], out.Max[d] = b.Min[s], b.Max[s]
		}
	}
	return out
}

// dhw turns (i, j, k) extents or a box into the network's (D, H, W) order.
func dhw(n [3]int) [3]int { return [3]int{n[2], n[1], n[0]} }

func dhwBox(b volume.Box) infer.Box {
	return infer.Box{Min: dhw(b.Min), Max: dhw(b.Max)}
}

// ttaOutput is what the TTA passes give, over the analysed box of the
// region (x's grid).
type ttaOutput struct {
	box          volume.Box
	focused      bool // the box comes from the scout (else: the whole region)
	scoutWindows int  // windows the scout ran while following the structure
	scoutTime    time.Duration
	prob, spread []float32 // TTA mean probability and its standard deviation, box-sized
	heat         []float32 // mean heatmaps, [channel][box voxel]
	volSpread    float64   // mm³, standard deviation of the passes' volumes
}

// tiling is how the region is cut into network inputs, with at least
// overlap voxels between windows.
func (a *Analyzer) tiling(overlap int) infer.Tiling {
	m := a.Manifest
	// A region larger than the manifest's chunk runs as sliding windows
	// unless the options allow more: instance normalisation makes a
	// network's output depend on its input's extent, so only a model
	// trained for it may see larger windows.
	t := infer.Tiling{
		Window:   m.Chunk.Size,
		Overlap:  overlap,
		Multiple: m.Input.SpatialMultiple,
		Pad:      float32((m.Normalization.ClipLow - m.Normalization.Mean) / m.Normalization.Std),
	}
	if n := a.Options.SingleWindow; n > 0 {
		t.Single = [3]int{n, n, n}
	}
	// The focused passes' windows may grow to cover the box with fewer
	// voxels (the scout's keep the chunk size, see infer.PredictFrom; full
	// TTA, the paper's protocol, too).
	g := a.Options.MaxWindow
	if g == 0 {
		g = max(m.Chunk.Size[0], m.Chunk.Size[1], m.Chunk.Size[2]) * 3 / 2
	}
	if !a.Options.FullTTA {
		mult := max(t.Multiple, 1)
		for ax := range 3 {
			t.Grow[ax] = max(g/mult*mult, m.Chunk.Size[ax])
		}
	}
	return t
}

// overlaps are the least window overlaps of the scout and of the TTA passes.
// The focused passes' windows do not overlap unless the options ask: each
// pass costs what its windows' voxels cost, and ten passes over
// differently placed windows already average the windows' seams out (the
// three phantoms above: Dice ≥ 0.955 and landmark errors ≤ 2.4 voxels
// without overlap). Full TTA, the paper's protocol, keeps the manifest's
// overlap.
func (a *Analyzer) overlaps() (scout, passes int) {
	if a.Options.FullTTA {
		passes = a.Manifest.Chunk.Overlap
	}
	if o := a.Options.Overlap; o > 0 {
		passes = o
	} else if o < 0 {
		passes = 0
	}
	return max(a.Options.ScoutOverlap, 0), passes
}

// scoutBox runs the scout over the region x and returns the analysed box:
// its major components grown by the focus margin. The scout follows the
// structure from the window at seed (x's indices; the region of interest's
// cavity) through its neighbours, and runs every window of the region only
// when that finds nothing. It reports false when the scout finds no
// foreground, and how many windows it ran.
func (a *Analyzer) scoutBox(ctx context.Context, x *volume.Volume[float32], seed [3]int) (volume.Box, bool, int, []infer.Window, error) {
	m := a.Manifest
	ov, _ := a.overlaps()
	n := x.Size
	tiling := a.tiling(ov)
	// p ≥ threshold ⇔ logit ≥ logit(threshold).
	lt := float32(math.Log(m.Threshold / (1 - m.Threshold)))
	var seg []float32
	var kept []infer.Window
	windows := 0
	if !a.Options.ScoutEverywhere && tiling.Single == ([3]int{}) {
		var err error
		keep := func(w infer.Window) { kept = append(kept, w) }
		if seg, windows, err = infer.PredictFrom(ctx, a.Model, x.Data, dhw(n), tiling, dhw(seed), 0, infer.ReachAbove(lt), lt-1, keep); err != nil {
			return volume.Box{}, false, windows, nil, err
		}
	}
	mask := make([]bool, x.Len())
	found := false
	for i, l := range seg {
		mask[i] = l >= lt
		found = found || mask[i]
	}
	if !found {
		kept = nil // found nothing: the identity pass runs anew
		outs, err := infer.PredictBox(ctx, a.Model, x.Data, dhw(n), infer.Box{Max: dhw(n)}, tiling, []bool{true, false})
		if err != nil {
			return volume.Box{}, false, windows, nil, err
		}
		if len(outs) < 1 || len(outs[0]) != x.Len() {
			return volume.Box{}, false, windows, nil, fmt.Errorf("model outputs: %d arrays, want a segmentation of %d values", len(outs), x.Len())
		}
		for i, l := range outs[0] {
			mask[i] = l >= lt
		}
	}
	slack := focusSlackMM
	if s := a.Options.FocusSlackMM; s > 0 {
		slack = s
	} else if s < 0 {
		slack = 0
	}
	margin := focusMargin(x.Affine.Spacing(), m.Uncertainty.MarginMM, slack)
	if a.largestComponent() {
		largestComponent(mask, n)
	} else {
		mask = majorComponents(mask, n, majorFraction)
	}
	b, ok := maskBox(mask, n, margin)
	if !ok {
		return b, false, windows, nil, nil
	}
	// The identity pass reuses the scout's windows over the box (see
	// predictTTA): keep those that reach into it.
	db := dhwBox(b)
	inBox := kept[:0]
	for _, w := range kept {
		if w.Box(dhw(n)).Overlaps(db) {
			inBox = append(inBox, w)
		}
	}
	clear(kept[len(inBox):])
	return b, true, windows, inBox, nil
}

// predictTTA runs every TTA transform over the analysed box, rotates each
// prediction back and returns the voxel-wise mean probability, its standard
// deviation across the passes and the mean heatmaps over that box.
//
// By default the box comes from the scout (see scoutBox and the constants
// above); with Options.FullTTA, or when the scout finds nothing, it is the
// whole region. Each pass rotates the box and enough of the image around it
// for its windows' context, so a pass costs what the box costs, not the
// region.
func (a *Analyzer) predictTTA(ctx context.Context, x *volume.Volume[float32], seed [3]int, ear, ears int) (*ttaOutput, error) {
	m := a.Manifest
	transforms := a.Options.TTA
	if transforms == nil {
		transforms = tta.All()
	}
	n := x.Size
	out := &ttaOutput{box: volume.Box{Max: n}}
	label := fmt.Sprintf("ear %d/%d: TTA pass", ear+1, ears)
	var scoutWins []infer.Window
	if !a.Options.FullTTA {
		a.progress(fmt.Sprintf("ear %d/%d: first pass", ear+1, ears), 0, 1)
		t0 := time.Now()
		b, ok, w, ws, err := a.scoutBox(ctx, x, seed)
		out.scoutTime = time.Since(t0)
		if err != nil {
			return nil, err
		}
		a.progress(fmt.Sprintf("ear %d/%d: first pass", ear+1, ears), 1, 1)
		if ok {
			out.box, out.focused = b, true
			scoutWins = ws
		}
		out.scoutWindows = w
	}
	scoutOv, ov := a.overlaps()
	if scoutOv < ov {
		scoutWins = nil // the passes' windows overlap more than the scout's did
	}
	tiling := a.tiling(ov)
	// The crop each pass rotates: the box and the context its windows
	// may read around it.
	r := max(m.Chunk.Size[0], m.Chunk.Size[1], m.Chunk.Size[2], 2*m.Input.SpatialMultiple) / 2
	reach := [3]int{r, r, r}
	crop := grow(out.box, reach, n)
	cn := crop.Size()
	xc := x.Data
	if crop != x.Bounds() {
		c, err := volume.Crop(x, crop)
		if err != nil {
			return nil, err
		}
		xc = c.Data
	}
	inner := out.box
	for ax := range 3 {
		inner.Min[ax] -= crop.Min[ax]
		inner.Max[ax] -= crop.Min[ax]
	}
	nv := boxLen(out.box)
	nh := len(LandmarkOrder)
	sum := make([]float64, nv)
	sumSq := make([]float64, nv)
	heatSum := make([]float32, nh*nv)
	seg := make([]float32, nv)
	heat := make([]float32, nv)
	buf := make([]float32, len(xc))
	vols := make([]float64, 0, len(transforms))
	for p, t := range transforms {
		a.progress(label, p, len(transforms))
		tb := transformBox(t, inner, cn)
		var outs [][]float32
		var err error
		if t == tta.Identity && scoutWins != nil {
			// The scout was the identity pass over these windows: blend
			// what it saw over the box instead of running them again.
			// Box voxels in no window it ran are background (the
			// structure did not reach those windows).
			outs, err = infer.Blend(scoutWins, dhw(n), dhwBox(out.box), []float32{backgroundLogit, 0})
			scoutWins = nil
		} else {
			tn := tta.Into(t, buf, xc, cn)
			outs, err = infer.PredictBox(ctx, a.Model, buf, dhw(tn), dhwBox(tb), tiling, nil)
		}
		if err != nil {
			return nil, err
		}
		if len(outs) < 2 || len(outs[0]) != nv || len(outs[1]) != nh*nv {
			return nil, fmt.Errorf("model outputs have %d arrays, want segmentation (%d) and heatmaps (%d)", len(outs), nv, nh*nv)
		}
		undo := t.Inverse()
		tbn := tb.Size()
		tta.Into(undo, seg, outs[0], tbn)
		var fg int
		for i, l := range seg {
			pr := 1 / (1 + math.Exp(-float64(l)))
			sum[i] += pr
			sumSq[i] += pr * pr
			if pr >= m.Threshold {
				fg++
			}
		}
		vols = append(vols, float64(fg))
		for c := range nh {
			tta.Into(undo, heat, outs[1][c*nv:(c+1)*nv], tbn)
			hs := heatSum[c*nv : (c+1)*nv]
			for i, v := range heat {
				hs[i] += v
			}
		}
	}
	a.progress(label, len(transforms), len(transforms))
	k := float64(len(transforms))
	out.prob = seg // reused: the last pass's logits are no longer needed
	out.spread = make([]float32, nv)
	for i := range sum {
		mean := sum[i] / k
		out.prob[i] = float32(mean)
		out.spread[i] = float32(math.Sqrt(max(sumSq[i]/k-mean*mean, 0)))
	}
	for i := range heatSum {
		heatSum[i] /= float32(k)
	}
	out.heat = heatSum
	var vm, vv float64
	for _, v := range vols {
		vm += v
	}
	vm /= k // exact for equal passes: counts are small integers
	for _, v := range vols {
		vv += (v - vm) * (v - vm) / k
	}
	sp := x.Affine.Spacing()
	out.volSpread = math.Sqrt(vv) * sp[0] * sp[1] * sp[2]
	return out, nil
}
