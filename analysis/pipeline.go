package analysis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/otonode/otonode/analysis/infer"
	"github.com/otonode/otonode/analysis/metrics"
	"github.com/otonode/otonode/analysis/roi"
	"github.com/otonode/otonode/analysis/tta"
	"github.com/otonode/otonode/analysis/volume"
)

// Statuses of a Result.
const (
	StatusDone          = "done"
	StatusNotAnalysable = "not-analysable"
	StatusNoInnerEar    = "no-inner-ear"
)

// Gate holds the input checks made before the model runs; the zero value
// gives the defaults.
type Gate struct {
	// MaxSpacingMM refuses volumes coarser than this along any axis
	// (default 0.7 mm: a thick-slice head CT does not resolve the canals).
	MaxSpacingMM float64
	// MinSpacingMM refuses volumes finer than this (default 0.005 mm).
	MinSpacingMM float64
}

// Options configure an Analyzer; the zero value follows the manifest.
type Options struct {
	// TTA is the set of test-time augmentations; nil means the paper's 10.
	TTA  []tta.Transform
	Gate Gate
	ROI  roi.Options
	// FullTTA runs every TTA pass over the whole region of interest, the
	// paper's protocol. By default a first pass over the region (the
	// scout) finds the structure, and the TTA passes run only on the box
	// around its major connected components plus a margin (see focus.go):
	// outside that box the result is background with a spread of 0.
	FullTTA bool
	// Overlap is the least overlap, in voxels, of neighbouring windows of
	// the TTA passes (windows are spread evenly, so most overlap a little
	// more); 0 means the default (none for focused passes, the manifest's
	// with FullTTA), a negative value none.
	Overlap int
	// ScoutOverlap is the least overlap of the scout's windows (default 0:
	// the scout only has to find the structure).
	ScoutOverlap int
	// ScoutEverywhere runs the scout's windows over the whole region of
	// interest instead of following the structure from the region's
	// cavity through the windows it reaches.
	ScoutEverywhere bool
	// FocusSlackMM is what the focus box's margin adds to the uncertainty
	// score's margin (0: focusSlackMM, none; a negative value none).
	FocusSlackMM float64

	// MaxWindow is how large (voxels per axis) a TTA pass's window may
	// grow where fewer, larger windows cover the analysed box with fewer
	// voxels: 0 means 1.5 × the manifest's chunk, a negative value the
	// chunk. The network's cost follows the voxels it sees; on three
	// held-out phantoms windows up to 96 for a model of 64³ chunks gave
	// mean Dice 0.961 and landmark error 1.38 voxels, as 64³ windows did,
	// with 15 % less CPU.
	MaxWindow int

	// SingleWindow is the largest region (voxels per axis) run as one
	// network input instead of sliding windows (default: the manifest's
	// chunk size).
	SingleWindow int
	// LargestComponent keeps only the largest 26-connected component of
	// each ear's segmentation (on the source grid), and looks for the
	// landmarks only within landmarkMarginMM of it (they lie on or in the
	// labyrinth). Off by default, as in the paper: it hides a model's false
	// positives from the figures, and it drops any part of a labyrinth the
	// threshold cut off.
	LargestComponent bool
	// Raw ignores the post-processing the manifest asks for, to measure
	// the network's own output (LargestComponent still applies).
	Raw bool
	// Progress, when set, is told about each step of the work.
	Progress func(stage string, done, total int)
}

// Analyzer runs the inner-ear analysis of one model.
type Analyzer struct {
	Manifest *Manifest
	Model    infer.Runner // the manifest's network; outputs segmentation, heatmaps
	Options  Options
}

// ErrInput marks a volume the pipeline cannot use at all (as opposed to one
// it analysed and found nothing in).
var ErrInput = errors.New("analysis: unusable input volume")

// Analyze runs the whole method on a CT volume in HU on its source grid.
func (a *Analyzer) Analyze(ctx context.Context, ct *volume.Volume[float32]) (*Result, error) {
	return analyze(ctx, a, ct)
}

// AnalyzeInput runs the whole method on a loaded input: Input.CT16 when it
// holds the volume (LoadOptions.Int16), else Input.CT. The int16 volume
// gives the same result as its float32 copy (every step reads voxels as
// float32 or float64, which hold any int16 exactly) in half the memory.
func (a *Analyzer) AnalyzeInput(ctx context.Context, in *Input) (*Result, error) {
	switch {
	case in.CT16 != nil:
		return analyze(ctx, a, in.CT16)
	case in.CT != nil:
		return analyze(ctx, a, in.CT)
	}
	return nil, fmt.Errorf("%w: no volume", ErrInput)
}

// analyze is Analyze for either voxel type of an Input.
func analyze[T volume.Scalar](ctx context.Context, a *Analyzer, ct *volume.Volume[T]) (*Result, error) {
	if err := ct.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInput, err)
	}
	if len(ct.Data) != ct.Len() {
		return nil, fmt.Errorf("%w: %d values for a grid of %d voxels", ErrInput, len(ct.Data), ct.Len())
	}
	res := &Result{Model: a.Manifest.ModelInfo()}
	stage := func(name string, start time.Time) {
		res.Stages = append(res.Stages, Stage{Name: name, Duration: time.Since(start)})
	}
	if reason := a.gate(ct.Grid); reason != "" {
		res.Status, res.Reason = StatusNotAnalysable, reason
		return res, nil
	}
	t0 := time.Now()
	cands, err := roi.Find(ct, a.Options.ROI)
	stage("roi", t0)
	if errors.Is(err, roi.ErrNoBone) {
		res.Status, res.Reason = StatusNoInnerEar, "no inner ear found: "+err.Error()
		return res, nil
	}
	if err != nil {
		return nil, err
	}
	if len(cands) == 0 {
		res.Status, res.Reason = StatusNoInnerEar, "no inner ear found: no dense-bone capsule enclosing a labyrinth-sized cavity"
		return res, nil
	}
	for n, c := range cands {
		ear, stages, err := analyzeEar(ctx, a, ct, c, n, len(cands))
		if err != nil {
			return nil, fmt.Errorf("analysis: ear %d (%s): %w", n+1, c.Side, err)
		}
		res.Ears = append(res.Ears, *ear)
		res.Stages = append(res.Stages, stages...)
	}
	res.Status = StatusDone
	return res, nil
}

func (a *Analyzer) gate(ct volume.Grid) string {
	g := a.Options.Gate
	if g.MaxSpacingMM <= 0 {
		g.MaxSpacingMM = 0.7
	}
	if g.MinSpacingMM <= 0 {
		g.MinSpacingMM = 0.005
	}
	sp := ct.Affine.Spacing()
	for ax, s := range sp {
		if s > g.MaxSpacingMM {
			return fmt.Sprintf("voxel size %.3g mm along axis %d is coarser than %.3g mm: the labyrinth's canals are not resolved", s, ax, g.MaxSpacingMM)
		}
		if s < g.MinSpacingMM {
			return fmt.Sprintf("voxel size %.3g mm along axis %d is finer than %.3g mm", s, ax, g.MinSpacingMM)
		}
	}
	return ""
}

func (a *Analyzer) progress(stage string, done, total int) {
	if a.Options.Progress != nil {
		a.Options.Progress(stage, done, total)
	}
}

// analyzeEar runs the model with TTA on one region of interest.
func analyzeEar[T volume.Scalar](ctx context.Context, a *Analyzer, ct *volume.Volume[T], c roi.Candidate, n, total int) (*Ear, []Stage, error) {
	m := a.Manifest
	var stages []Stage
	mark := func(name string, start time.Time) {
		stages = append(stages, Stage{Name: fmt.Sprintf("ear%d/%s", n+1, name), Duration: time.Since(start)})
	}
	t0 := time.Now()
	box := volume.Box{Min: c.Box[0], Max: c.Box[1]}
	srcSub := ct.Grid.Sub(box)
	mg := volume.IsotropicGrid(srcSub, m.VoxelSizeMM)
	x, err := volume.ResampleLinear(ct, mg, float32(m.Normalization.ClipLow))
	if err != nil {
		return nil, nil, err
	}
	a.normalise(x.Data)
	mark("resample", t0)

	t0 = time.Now()
	// The scout starts from the cavity the region of interest was found by.
	var seed [3]int
	if inv, err := mg.Affine.Inverse(); err == nil {
		p := inv.Apply(c.CentreMM)
		for ax := range 3 {
			seed[ax] = min(max(int(math.Round(p[ax])), 0), mg.Size[ax]-1)
		}
	}
	tr, err := a.predictTTA(ctx, x, seed, n, total)
	if err != nil {
		return nil, nil, err
	}
	if tr.scoutTime > 0 {
		stages = append(stages, Stage{Name: fmt.Sprintf("ear%d/scout", n+1), Duration: tr.scoutTime})
		t0 = t0.Add(tr.scoutTime)
	}
	mark("inference", t0)

	t0 = time.Now()
	ear := &Ear{Laterality: Laterality(c.Side), VolumeSpreadMM3: tr.volSpread}
	// Everything below works on the analysed box of the model grid; the
	// rest of the region is background.
	bg := mg.Sub(tr.box)
	prob, spread, heat := tr.prob, tr.spread, tr.heat
	x = nil // the normalised region is no longer needed
	// Segmentation on the source grid: the mean probability interpolated
	// back, then thresholded, inside the analysed box; zero elsewhere.
	sb := sourceBox(bg, srcSub)
	srcBox := srcSub.Sub(sb)
	probVol := &volume.Volume[float32]{Grid: bg, Data: prob}
	back, err := volume.ResampleLinear(probVol, srcBox, 0)
	if err != nil {
		return nil, nil, err
	}
	thr := float32(m.Threshold)
	mask := make([]bool, len(back.Data))
	for i, p := range back.Data {
		mask[i] = p >= thr
	}
	back = nil
	if a.largestComponent() {
		largestComponent(mask, srcBox.Size)
	}
	// The label covers the analysed box only: on a 512×512×400 series a
	// full-grid label would be 105 MB of zeros per ear.
	label := &volume.Volume[uint8]{Grid: srcBox, Data: make([]uint8, len(mask))}
	var count int
	for i, in := range mask {
		if in {
			label.Data[i] = 1
			count++
		}
	}
	ear.Label = label
	sp := ct.Affine.Spacing()
	ear.VolumeMM3 = float64(count) * sp[0] * sp[1] * sp[2]
	ear.Analysed = AnalysedRegion{TTA: "full", Fraction: float64(boxLen(tr.box)) / float64(mg.Len()), ScoutWindows: tr.scoutWindows}
	if tr.focused {
		ear.Analysed.TTA = "focused"
	}
	for ax := range 3 {
		ear.Analysed.SourceBox[0][ax] = box.Min[ax] + sb.Min[ax]
		ear.Analysed.SourceBox[1][ax] = box.Min[ax] + sb.Max[ax]
	}

	inv, err := ct.Affine.Inverse()
	if err != nil {
		return nil, nil, err
	}
	nvox := bg.Len()
	var near []bool
	if a.largestComponent() {
		near = nearLargest(prob, bg, thr, landmarkMarginMM)
	}
	for ch, name := range LandmarkOrder {
		v, p := peakWithin(heat[ch*nvox:(ch+1)*nvox], bg.Size, near)
		mm := bg.Affine.Apply(p)
		ear.Landmarks = append(ear.Landmarks, Landmark{Name: name, PatientMM: mm, Voxel: inv.Apply(mm), Peak: float64(v)})
	}

	// The side: see earSide for how the shape and the ROI's clue combine.
	var shape Laterality
	if centre, ok := centroidMM(prob, bg, thr); ok {
		l := ear.Landmarks
		shape = sideFromShape(l[0].PatientMM, l[1].PatientMM, l[2].PatientMM, centre)
	}
	ear.Laterality = earSide(Laterality(c.Side), c.SideFromPosition, shape)
	ear.Uncertainty = uncertaintyScore(prob, spread, bg, thr, m.Uncertainty.MarginMM)
	ear.UncertaintyMap = &volume.Volume[float32]{Grid: bg, Data: spread}
	ear.Flag = a.flag(ear)
	mark("postprocess", t0)
	return ear, stages, nil
}

// largestComponent tells whether the largest-component clean-up runs: when
// the options ask for it, or the manifest does and the options do not ask
// for the raw output.
func (a *Analyzer) largestComponent() bool {
	return a.Options.LargestComponent || (a.Manifest.Postprocessing.LargestComponent && !a.Options.Raw)
}

// normalise clips to the manifest's intensity window and standardises.
func (a *Analyzer) normalise(x []float32) {
	n := a.Manifest.Normalization
	lo, hi := float32(n.ClipLow), float32(n.ClipHigh)
	mean, inv := float32(n.Mean), float32(1/n.Std)
	for i, v := range x {
		x[i] = (min(max(v, lo), hi) - mean) * inv
	}
}

// landmarkMarginMM is how far from the kept structure landmarks are looked
// for when Options.LargestComponent is set: the windows lie on the
// labyrinth's surface and the helicotrema inside it.
const landmarkMarginMM = 1.5

// nearLargest marks the voxels of grid g within marginMM of the largest
// connected component of prob >= thr; nil when nothing is predicted.
func nearLargest(prob []float32, g volume.Grid, thr float32, marginMM float64) []bool {
	fg := make([]bool, len(prob))
	for i, p := range prob {
		fg[i] = p >= thr
	}
	if largestComponent(fg, g.Size) == 0 {
		return nil
	}
	d2 := metrics.SquaredEDT(fg, g.Size, g.Affine.Spacing())
	for i, d := range d2 {
		fg[i] = d <= marginMM*marginMM
	}
	return fg
}

// peak returns the maximum of a heatmap and its position refined to sub-voxel
// precision by a parabola through the maximum and its neighbours on each axis.
func peak(h []float32, n [3]int) (float32, [3]float64) { return peakWithin(h, n, nil) }

// peakWithin is peak over the voxels where within is true (all when nil).
func peakWithin(h []float32, n [3]int, within []bool) (float32, [3]float64) {
	best := -1
	for i, v := range h {
		if (within == nil || within[i]) && (best < 0 || v > h[best]) {
			best = i
		}
	}
	if best < 0 {
		best = 0
	}
	idx := [3]int{best % n[0], best / n[0] % n[1], best / (n[0] * n[1])}
	stride := [3]int{1, n[0], n[0] * n[1]}
	var p [3]float64
	for ax := range 3 {
		p[ax] = float64(idx[ax])
		if idx[ax] == 0 || idx[ax] == n[ax]-1 {
			continue
		}
		l, c, r := float64(h[best-stride[ax]]), float64(h[best]), float64(h[best+stride[ax]])
		if d := l - 2*c + r; d < 0 {
			p[ax] += math.Max(-0.5, math.Min(0.5, 0.5*(l-r)/d))
		}
	}
	return h[best], p
}

// centroidMM is the patient position of the centroid of the voxels at or
// above thr.
func centroidMM(prob []float32, g volume.Grid, thr float32) ([3]float64, bool) {
	var sum [3]float64
	var n float64
	for idx, p := range prob {
		if p >= thr {
			sum[0] += float64(idx % g.Size[0])
			sum[1] += float64(idx / g.Size[0] % g.Size[1])
			sum[2] += float64(idx / (g.Size[0] * g.Size[1]))
			n++
		}
	}
	if n == 0 {
		return [3]float64{}, false
	}
	return g.Affine.Apply([3]float64{sum[0] / n, sum[1] / n, sum[2] / n}), true
}

// uncertaintyScore is the mean TTA standard deviation over the predicted
// structure dilated by marginMM, so that it measures the spread where the
// inner ear is and not how large a region was analysed.
func uncertaintyScore(prob, spread []float32, g volume.Grid, thr float32, marginMM float64) float64 {
	fg := make([]bool, len(prob))
	any := false
	for i, p := range prob {
		if p >= thr {
			fg[i], any = true, true
		}
	}
	if !any {
		return 0
	}
	d2 := metrics.SquaredEDT(fg, g.Size, g.Affine.Spacing())
	m2 := marginMM * marginMM
	var sum float64
	var n int
	for i, d := range d2 {
		if d <= m2 {
			sum += float64(spread[i])
			n++
		}
	}
	return sum / float64(n)
}

// flag raises an ear's flag for an uncertainty above the manifest's
// threshold or a volume outside its plausible range.
func (a *Analyzer) flag(e *Ear) Flag {
	var reasons []string
	u := a.Manifest.Uncertainty
	if u.FlagThreshold != nil && e.Uncertainty > *u.FlagThreshold {
		reasons = append(reasons, fmt.Sprintf("uncertainty %.3g above threshold %.3g", e.Uncertainty, *u.FlagThreshold))
	}
	pv := a.Manifest.PlausibleVolumeMM3
	if pv.Min != nil && e.VolumeMM3 < *pv.Min {
		reasons = append(reasons, fmt.Sprintf("inner-ear volume %.0f mm³ below the plausible %.0f mm³", e.VolumeMM3, *pv.Min))
	}
	if pv.Max != nil && e.VolumeMM3 > *pv.Max {
		reasons = append(reasons, fmt.Sprintf("inner-ear volume %.0f mm³ above the plausible %.0f mm³", e.VolumeMM3, *pv.Max))
	}
	if len(reasons) == 0 {
		return Flag{}
	}
	return Flag{Raised: true, Reason: strings.Join(reasons, "; ")}
}

// sourceBox is the box of grid src that covers grid g (on the same patient
// space): the source voxels a linear interpolation from g can reach, clipped
// to src.
func sourceBox(g, src volume.Grid) volume.Box {
	inv, err := src.Affine.Inverse()
	if err != nil {
		return src.Bounds()
	}
	lo := [3]float64{math.Inf(1), math.Inf(1), math.Inf(1)}
	hi := [3]float64{math.Inf(-1), math.Inf(-1), math.Inf(-1)}
	for c := range 8 {
		var p [3]float64
		for ax := range 3 {
			p[ax] = -0.5
			if c>>ax&1 == 1 {
				p[ax] = float64(g.Size[ax]) - 0.5
			}
		}
		q := inv.Apply(g.Affine.Apply(p))
		for ax := range 3 {
			lo[ax] = min(lo[ax], q[ax])
			hi[ax] = max(hi[ax], q[ax])
		}
	}
	var b volume.Box
	for ax := range 3 {
		b.Min[ax] = max(int(math.Floor(lo[ax])), 0)
		b.Max[ax] = min(int(math.Ceil(hi[ax]))+1, src.Size[ax])
		if b.Min[ax] >= b.Max[ax] {
			return src.Bounds()
		}
	}
	return b
}
