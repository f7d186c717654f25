package analysis

import (
	"context"
	"testing"

	"github.com/otonode/otonode/analysis/tta"
	"github.com/otonode/otonode/analysis/volume"
)

func TestMaskBox(t *testing.T) {
	n := [3]int{20, 16, 12}
	idx := func(i, j, k int) int { return i + n[0]*(j+n[1]*k) }
	tests := []struct {
		name   string
		fg     [][3]int
		margin [3]int
		want   volume.Box
		ok     bool
	}{
		{name: "empty", margin: [3]int{2, 2, 2}},
		{
			name: "one voxel", fg: [][3]int{{10, 8, 6}}, margin: [3]int{2, 3, 1},
			want: volume.Box{Min: [3]int{8, 5, 5}, Max: [3]int{13, 12, 8}}, ok: true,
		},
		{
			name: "clipped", fg: [][3]int{{1, 0, 11}, {18, 15, 10}}, margin: [3]int{3, 3, 3},
			want: volume.Box{Min: [3]int{0, 0, 7}, Max: [3]int{20, 16, 12}}, ok: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mask := make([]bool, n[0]*n[1]*n[2])
			for _, p := range tt.fg {
				mask[idx(p[0], p[1], p[2])] = true
			}
			b, ok := maskBox(mask, n, tt.margin)
			if ok != tt.ok || (ok && b != tt.want) {
				t.Fatalf("got %v %v, want %v %v", b, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestFocusMargin(t *testing.T) {
	if got, want := focusMargin([3]float64{0.1, 0.2, 0.5}, 1, 1), [3]int{20, 10, 4}; got != want {
		t.Errorf("margin %v, want %v (2 mm)", got, want)
	}
	if got, want := focusMargin([3]float64{0.25, 0.25, 0.25}, 3, 0.5), [3]int{14, 14, 14}; got != want {
		t.Errorf("margin %v, want %v (uncertainty margin + slack)", got, want)
	}
}

// A box marked in a volume is where transformBox says after every
// transform.
func TestTransformBox(t *testing.T) {
	n := [3]int{7, 5, 4}
	b := volume.Box{Min: [3]int{1, 2, 0}, Max: [3]int{4, 5, 3}}
	in := make([]uint8, n[0]*n[1]*n[2])
	for k := b.Min[2]; k < b.Max[2]; k++ {
		for j := b.Min[1]; j < b.Max[1]; j++ {
			for i := b.Min[0]; i < b.Max[0]; i++ {
				in[i+n[0]*(j+n[1]*k)] = 1
			}
		}
	}
	for _, tr := range tta.All() {
		out := make([]uint8, len(in))
		tn := tta.Into(tr, out, in, n)
		tb := transformBox(tr, b, n)
		for k := range tn[2] {
			for j := range tn[1] {
				for i := range tn[0] {
					inside := i >= tb.Min[0] && i < tb.Max[0] && j >= tb.Min[1] && j < tb.Max[1] && k >= tb.Min[2] && k < tb.Max[2]
					if (out[i+tn[0]*(j+tn[1]*k)] == 1) != inside {
						t.Fatalf("%s: box %v, voxel (%d,%d,%d) marked %v", tr.Name, tb, i, j, k, !inside)
					}
				}
			}
		}
	}
}

// voxelNet counts the calls and input voxels the network is given.
type voxelNet struct {
	fluidNet
	calls, voxels *int
}

func (v voxelNet) Run(x []float32, d, h, w int) ([][]float32, error) {
	*v.calls++
	*v.voxels += d * h * w
	return v.fluidNet.Run(x, d, h, w)
}

// Focused TTA gives the segmentation, volume and landmarks of full TTA with
// the equivariant network, for much less network input.
func TestAnalyzeFocusedTTA(t *testing.T) {
	ct := paint([3]int{110, 100, 90}, 0.25, [3]float64{-12, -13, -11}, 1100, earScene)
	m := testManifest(0.2)
	norm := func(hu float32) float32 { return (hu - 500) / 1000 }
	type run struct {
		ear           Ear
		calls, voxels int
	}
	analyze := func(full bool) run {
		var r run
		net := voxelNet{fluidNet{lo: norm(-500), hi: norm(1015)}, &r.calls, &r.voxels}
		a := &Analyzer{Manifest: m, Model: net, Options: Options{SingleWindow: 256, FullTTA: full}}
		res, err := a.Analyze(context.Background(), ct)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != StatusDone || len(res.Ears) != 1 {
			t.Fatalf("full %v: status %q (%s), %d ears", full, res.Status, res.Reason, len(res.Ears))
		}
		r.ear = res.Ears[0]
		return r
	}
	full, focused := analyze(true), analyze(false)
	if full.calls != 10 || focused.calls != 11 {
		t.Errorf("network calls: full %d, focused %d; want 10 and 11 (one window per pass, and the scout)", full.calls, focused.calls)
	}
	// The scout and 10 passes on the box: well under half the voxels of
	// full TTA.
	if 2*focused.voxels >= full.voxels {
		t.Errorf("network input: focused %d voxels, full %d; want under half", focused.voxels, full.voxels)
	}
	t.Logf("network input: focused %d voxels, full %d", focused.voxels, full.voxels)
	// The labels cover different boxes (the focused one the smaller):
	// compare them on the source grid.
	fullLab, err := full.ear.LabelOn(ct.Grid)
	if err != nil {
		t.Fatal(err)
	}
	focusedLab, err := focused.ear.LabelOn(ct.Grid)
	if err != nil {
		t.Fatal(err)
	}
	var differ, fg int
	for i, v := range fullLab.Data {
		if v != focusedLab.Data[i] {
			differ++
		}
		if v != 0 {
			fg++
		}
	}
	if differ != 0 || fg == 0 {
		t.Errorf("%d of %d foreground voxels differ between focused and full TTA", differ, fg)
	}
	if full.ear.VolumeMM3 != focused.ear.VolumeMM3 {
		t.Errorf("volume: focused %g, full %g", focused.ear.VolumeMM3, full.ear.VolumeMM3)
	}
	for i, l := range full.ear.Landmarks {
		if d := dist3(l.PatientMM, focused.ear.Landmarks[i].PatientMM); d > 1e-3 {
			t.Errorf("%s: focused %v, full %v", l.Name, focused.ear.Landmarks[i].PatientMM, l.PatientMM)
		}
	}
	if focused.ear.Uncertainty > 1e-6 || focused.ear.VolumeSpreadMM3 != 0 {
		t.Errorf("focused: uncertainty %g, volume spread %g; want 0 for an equivariant network", focused.ear.Uncertainty, focused.ear.VolumeSpreadMM3)
	}
}

// With no foreground in the first pass there is nothing to focus on: every
// pass runs over the whole region.
func TestPredictTTANoForegroundRunsInFull(t *testing.T) {
	m := testManifest(0.25)
	x := paint([3]int{40, 36, 32}, 0.25, [3]float64{}, 1100, nil)
	var calls, voxels int
	a := &Analyzer{Manifest: m, Model: voxelNet{fluidNet{lo: -0.5, hi: 0.5}, &calls, &voxels}, Options: Options{SingleWindow: 256}}
	a.normalise(x.Data)
	tr, err := a.predictTTA(context.Background(), x, [3]int{20, 18, 16}, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if tr.focused || tr.box != (volume.Box{Max: x.Size}) {
		t.Errorf("box %v, focused %v; want the whole region", tr.box, tr.focused)
	}
	for _, p := range tr.prob {
		if p >= 0.5 {
			t.Fatal("foreground in a scene of bone alone")
		}
	}
	// The scout and each pass pad their 40×36×32 input (rotated) to a
	// multiple of 4: the same count whatever the rotation.
	if want := 11 * 40 * 36 * 32; calls != 11 || voxels != want {
		t.Fatalf("%d calls on %d voxels, want 11 on %d", calls, voxels, want)
	}
}

func TestMajorComponents(t *testing.T) {
	n := [3]int{30, 10, 10}
	mask := make([]bool, 3000)
	set := func(i0, i1 int) { // a bar along i in row j=k=5
		for i := i0; i < i1; i++ {
			mask[i+30*(5+10*5)] = true
		}
	}
	set(0, 20)  // 20 voxels: the largest
	set(22, 23) // 1 voxel: under 10 % of it
	set(25, 29) // 4 voxels: kept
	got := majorComponents(mask, n, 0.1)
	for i := range 30 {
		want := i < 20 || (i >= 25 && i < 29)
		if got[i+30*55] != want {
			t.Fatalf("voxel %d kept %v, want %v", i, got[i+30*55], want)
		}
	}
}

// The scout is the identity pass: its windows are blended over the box
// instead of run again, so focused TTA costs the scout and nine passes, and
// gives what running the identity pass anew gives.
func TestScoutIsTheIdentityPass(t *testing.T) {
	ct := paint([3]int{110, 100, 90}, 0.25, [3]float64{-12, -13, -11}, 1100, earScene)
	m := testManifest(0.2)
	m.Chunk.Size = [3]int{32, 32, 32}
	norm := func(hu float32) float32 { return (hu - 500) / 1000 }
	analyze := func(o Options) (Ear, int) {
		var calls, voxels int
		net := voxelNet{fluidNet{lo: norm(-500), hi: norm(1015)}, &calls, &voxels}
		a := &Analyzer{Manifest: m, Model: net, Options: o}
		res, err := a.Analyze(context.Background(), ct)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != StatusDone || len(res.Ears) != 1 {
			t.Fatalf("status %q (%s), %d ears", res.Status, res.Reason, len(res.Ears))
		}
		return res.Ears[0], calls
	}
	only, calls := analyze(Options{TTA: []tta.Transform{tta.Identity}})
	if sw := only.Analysed.ScoutWindows; sw < 2 || calls != sw {
		t.Errorf("identity only: %d network calls, scout windows %d; want the scout's alone (≥ 2)", calls, sw)
	}
	// With the scout's windows overlapping less than the passes', the
	// identity pass runs anew.
	anew, callsAnew := analyze(Options{TTA: []tta.Transform{tta.Identity}, Overlap: 8})
	if callsAnew <= anew.Analysed.ScoutWindows {
		t.Errorf("passes overlapping more than the scout: %d calls, %d scout windows; want the identity pass run", callsAnew, anew.Analysed.ScoutWindows)
	}
	all, callsAll := analyze(Options{})
	passes := callsAll - all.Analysed.ScoutWindows
	if passes <= 0 || passes%9 != 0 {
		t.Errorf("10 transforms: %d calls beyond the scout's %d; want nine passes' worth", passes, all.Analysed.ScoutWindows)
	}
	for _, e := range []Ear{anew, all} {
		a, err := only.LabelOn(ct.Grid)
		if err != nil {
			t.Fatal(err)
		}
		b, err := e.LabelOn(ct.Grid)
		if err != nil {
			t.Fatal(err)
		}
		var differ, fg int
		for i, v := range a.Data {
			if v != b.Data[i] {
				differ++
			}
			if v != 0 {
				fg++
			}
		}
		if differ != 0 || fg == 0 {
			t.Errorf("%d voxels differ from the scout's identity pass (%d foreground)", differ, fg)
		}
	}
	if all.Uncertainty > 1e-3 {
		t.Errorf("uncertainty %g with an equivariant segmentation; want about 0", all.Uncertainty)
	}
}
