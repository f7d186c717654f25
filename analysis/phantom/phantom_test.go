package phantom

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/otonode/otonode/analysis/volume"
)

// small returns a variant on a 96³ grid of 0.2 mm (19 mm across), enough
// for the whole labyrinth and fast to make.
func small(t *testing.T, tokens string) Variant {
	t.Helper()
	v, err := ParseVariant(tokens)
	if err != nil {
		t.Fatal(err)
	}
	if v.Size == ([3]int{}) {
		v.Size = [3]int{96, 96, 96}
		v.SpacingMM = [3]float64{0.2, 0.2, 0.2}
	}
	return v
}

func gen(t *testing.T, seed uint64, v Variant) *Case {
	t.Helper()
	c, err := Generate(context.Background(), seed, v, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseVariant(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want func(Variant) bool
		err  bool
	}{
		{"", func(v Variant) bool {
			return v.Scanner == FlatPanel && v.Contrast == "fluid" && v.Rotation == "standard"
		}, false},
		{"conebeam,left,rotated", func(v Variant) bool { return v.Scanner == ConeBeam && v.Side == "L" && v.Rotation == "arbitrary" }, false},
		{"otosclerosis,severe", func(v Variant) bool { return v.Lesion == "both" && v.Severity == "severe" }, false},
		{"fenestral", func(v Variant) bool { return v.Severity == "moderate" }, false},
		{"bilateral", func(v Variant) bool { return v.Scanner == MultiSlice }, false},
		{"dose=0.25,dr", func(v Variant) bool { return v.Dose == 0.25 && v.DomainRandomisation }, false},
		{"thickslice", func(v Variant) bool { return v.Negative == "thickslice" }, false},
		{"banana", nil, true},
		{"dose=-1", nil, true},
		{"body,otosclerosis", nil, true},
		{"bilateral,left", nil, true},
		{"bilateral,flatpanel", nil, true},
	} {
		v, err := ParseVariant(tc.in)
		if tc.err {
			if !errors.Is(err, ErrVariant) {
				t.Errorf("%q: err %v, want ErrVariant", tc.in, err)
			}
			continue
		}
		if err != nil || !tc.want(v) {
			t.Errorf("%q: %+v, %v", tc.in, v, err)
		}
		// String gives tokens that parse to the same variant.
		if v2, err := ParseVariant(v.String()); err != nil || v2 != v {
			t.Errorf("%q: round trip %q gave %+v, %v", tc.in, v.String(), v2, err)
		}
	}
}

func TestDeterminism(t *testing.T) {
	v := small(t, "flatpanel,artefacts,otosclerosis")
	a, err := Generate(context.Background(), 7, v, Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate(context.Background(), 7, v, Options{Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !equal(a.CT.Data, b.CT.Data) || !equal(a.Label.Data, b.Label.Data) {
		t.Fatal("same seed, different voxels")
	}
	c := gen(t, 8, v)
	if equal(a.CT.Data, c.CT.Data) {
		t.Fatal("different seeds, same voxels")
	}
	// The written case, DICOM included, is the same bytes too.
	d1, d2 := t.TempDir(), t.TempDir()
	for i, d := range []string{d1, d2} {
		cs := []*Case{a, b}[i]
		if err := WriteCase(context.Background(), d, "case", cs, WriteOptions{DICOM: true}); err != nil {
			t.Fatal(err)
		}
	}
	h1, h2 := hashTree(t, d1), hashTree(t, d2)
	if len(h1) < 5 {
		t.Fatalf("only %d files written", len(h1))
	}
	for name, h := range h1 {
		if h2[name] != h {
			t.Errorf("%s differs between runs", name)
		}
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func hashTree(t *testing.T, dir string) map[string][32]byte {
	out := map[string][32]byte{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = sha256.Sum256(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGroundTruth checks the landmarks against the label and the image:
// the voxel↔patient mapping, the helicotrema at the apical end of the
// cochlea, the windows on the labyrinth wall with middle-ear air outside,
// and the labyrinth volume.
func TestGroundTruth(t *testing.T) {
	for _, tc := range []struct {
		seed   uint64
		tokens string
	}{{1, "right"}, {2, "left"}, {3, "right,rotated"}, {4, "conebeam,left"}} {
		c := gen(t, tc.seed, small(t, tc.tokens))
		if len(c.Info.Ears) != 1 {
			t.Fatalf("%s: %d ears", tc.tokens, len(c.Info.Ears))
		}
		e := c.Info.Ears[0]
		if e.Laterality != c.Info.Variant.Side {
			t.Errorf("%s: laterality %s", tc.tokens, e.Laterality)
		}
		if e.ModelVolumeMM3 < 150 || e.ModelVolumeMM3 > 230 {
			t.Errorf("%s: model volume %.0f mm³ outside 150–230", tc.tokens, e.ModelVolumeMM3)
		}
		if math.Abs(e.VolumeMM3-e.ModelVolumeMM3) > 0.12*e.ModelVolumeMM3 {
			t.Errorf("%s: label volume %.0f vs model %.0f", tc.tokens, e.VolumeMM3, e.ModelVolumeMM3)
		}
		for _, s := range []string{"cochlea", "vestibule", "semicircular_canals"} {
			if e.StructureMM3[s] <= 0 {
				t.Errorf("%s: no %s", tc.tokens, s)
			}
		}
		sp := c.Label.Affine.Spacing()[0]
		inv, _ := c.Label.Affine.Inverse()
		for _, n := range LandmarkNames {
			lm := e.Landmarks[n]
			back := c.Label.Affine.Apply(lm.Voxel)
			if d := dist3(back, lm.PatientMM); d > 1e-6 {
				t.Errorf("%s %s: voxel→patient off by %g mm", tc.tokens, n, d)
			}
			if d := dist3(inv.Apply(lm.PatientMM), lm.Voxel); d > 1e-6 {
				t.Errorf("%s %s: patient→voxel off by %g", tc.tokens, n, d)
			}
			// The landmark lies in or on the label: a labelled voxel centre
			// within half a voxel diagonal.
			want := LabelCochlea
			if n != "helicotrema" {
				want = 0 // any structure: the windows sit where they meet
			}
			if d := nearestLabel(c.Label, lm.Voxel, want); d > 0.5*math.Sqrt(3)+1e-9 {
				t.Errorf("%s %s: nearest label-%d voxel %.2f voxels away", tc.tokens, n, want, d)
			}
		}
		// Helicotrema: the apical end of the cochlear label along the axis.
		h := e.Landmarks["helicotrema"].PatientMM
		ax := e.ModiolarAxis
		top := math.Inf(-1)
		forEach(c.Label, func(i, j, k int, l uint8) {
			if l == LabelCochlea {
				p := c.Label.Affine.Apply([3]float64{float64(i), float64(j), float64(k)})
				top = math.Max(top, dot(sub(p, e.CochlearBaseMM), ax))
			}
		})
		if hp := dot(sub(h, e.CochlearBaseMM), ax); hp < top-e.Anatomy.LumenApexMM-sp || hp > top {
			t.Errorf("%s: helicotrema at %.2f mm along the axis, cochlear label reaches %.2f", tc.tokens, hp, top)
		}
		// Windows: fluid just inside, middle-ear air just outside.
		for _, n := range []string{"oval_window", "round_window"} {
			lm := e.Landmarks[n]
			nrm := *lm.Normal
			in := sampleLabel(c.Label, inv, add(lm.PatientMM, scale(nrm, -0.35)))
			if in == 0 {
				t.Errorf("%s %s: no label just inside the window", tc.tokens, n)
			}
			// Air somewhere in the half ball of 2.5 mm outside the window.
			air := false
			for dz := -2.5; dz <= 2.5 && !air; dz += sp {
				for dy := -2.5; dy <= 2.5 && !air; dy += sp {
					for dx := -2.5; dx <= 2.5 && !air; dx += sp {
						d := [3]float64{dx, dy, dz}
						if norm(d) > 2.5 || dot(d, nrm) < 0.3 {
							continue
						}
						if v, ok := sampleCT(c.CT, inv, add(lm.PatientMM, d)); ok && v < -500 {
							air = true
						}
					}
				}
			}
			if !air {
				t.Errorf("%s %s: no middle-ear air within 2.5 mm outside the window", tc.tokens, n)
			}
		}
		// Round window 2–3.5 mm from the oval window.
		if d := dist3(e.Landmarks["oval_window"].PatientMM, e.Landmarks["round_window"].PatientMM); d < 1.8 || d > 3.6 {
			t.Errorf("%s: oval to round window %.2f mm", tc.tokens, d)
		}
	}
}

func dist3(a, b [3]float64) float64 { return norm(sub(a, b)) }

func forEach(v *volume.Volume[uint8], f func(i, j, k int, l uint8)) {
	n := v.Size
	for k := 0; k < n[2]; k++ {
		for j := 0; j < n[1]; j++ {
			for i := 0; i < n[0]; i++ {
				f(i, j, k, v.Data[i+n[0]*(j+n[1]*k)])
			}
		}
	}
}

func nearestLabel(v *volume.Volume[uint8], x [3]float64, want uint8) float64 {
	best := math.Inf(1)
	for dk := -2; dk <= 2; dk++ {
		for dj := -2; dj <= 2; dj++ {
			for di := -2; di <= 2; di++ {
				i, j, k := int(math.Round(x[0]))+di, int(math.Round(x[1]))+dj, int(math.Round(x[2]))+dk
				if l := uint8(0); v.Contains(i, j, k) {
					l = v.At(i, j, k)
					if l == 0 || (want != 0 && l != want) {
						continue
					}
					best = math.Min(best, dist3([3]float64{float64(i), float64(j), float64(k)}, x))
				}
			}
		}
	}
	return best
}

func sampleLabel(v *volume.Volume[uint8], inv volume.Affine, p [3]float64) uint8 {
	x := inv.Apply(p)
	i, j, k := int(math.Round(x[0])), int(math.Round(x[1])), int(math.Round(x[2]))
	if !v.Contains(i, j, k) {
		return 0
	}
	return v.At(i, j, k)
}

func sampleCT(v *volume.Volume[int16], inv volume.Affine, p [3]float64) (int16, bool) {
	x := inv.Apply(p)
	i, j, k := int(math.Round(x[0])), int(math.Round(x[1])), int(math.Round(x[2]))
	if !v.Contains(i, j, k) {
		return 0, false
	}
	return v.At(i, j, k), true
}

// TestLesions: otosclerotic foci lower the capsule HU where they are
// placed, more with severity, and nowhere else.
func TestLesions(t *testing.T) {
	base := gen(t, 5, small(t, "right"))
	var prevVol, prevDrop float64
	for _, sev := range []string{"mild", "moderate", "severe"} {
		c := gen(t, 5, small(t, "right,otosclerosis,"+sev))
		li := c.Info.Lesion
		if li == nil || li.VolumeMM3 <= prevVol || li.HUDrop <= prevDrop {
			t.Fatalf("%s: lesion info %+v not above the milder level", sev, li)
		}
		prevVol, prevDrop = li.VolumeMM3, li.HUDrop
		if !equal(c.Label.Data, base.Label.Data) {
			t.Errorf("%s: the lesion changed the label", sev)
		}
		// Same seed, same noise: the difference is the lesion (blurred).
		ow := c.Info.Ears[0].Landmarks["oval_window"].PatientMM
		inv, _ := c.CT.Affine.Inverse()
		var near, far, nNear, nFar float64
		for k := 0; k < c.CT.Size[2]; k++ {
			for j := 0; j < c.CT.Size[1]; j++ {
				for i := 0; i < c.CT.Size[0]; i++ {
					o := c.CT.Index(i, j, k)
					d := float64(base.CT.Data[o]) - float64(c.CT.Data[o])
					p := c.CT.Affine.Apply([3]float64{float64(i), float64(j), float64(k)})
					switch r := dist3(p, ow); {
					case r < 2.5:
						near += d
						nNear++
					case r > 12:
						far += math.Abs(d)
						nFar++
					}
				}
			}
		}
		_ = inv
		if near/nNear < 20 {
			t.Errorf("%s: mean HU drop near the oval window only %.1f", sev, near/nNear)
		}
		if far/nFar > 1 {
			t.Errorf("%s: HU changed far from the labyrinth (%.2f)", sev, far/nFar)
		}
	}
}

// TestOssified checks the negative that reaches the model: the same seed's
// labyrinth, where a normal case has fluid, is bone in the ossified case.
func TestOssified(t *testing.T) {
	size := [3]int{128, 128, 96}
	normal := gen(t, 11, Variant{Size: size})
	ossified := gen(t, 11, Variant{Negative: "ossified", Size: size})
	var fluid, bone float64
	var n int
	for i, l := range normal.Label.Data {
		if l == 0 {
			continue
		}
		fluid += float64(normal.CT.Data[i])
		bone += float64(ossified.CT.Data[i])
		n++
	}
	if n < 1000 {
		t.Fatalf("only %d labelled voxels in the normal case", n)
	}
	fluid, bone = fluid/float64(n), bone/float64(n)
	if fluid > 600 || bone < 1000 {
		t.Errorf("labyrinth mean HU: normal %.0f (want fluid-like), ossified %.0f (want bone)", fluid, bone)
	}
	if len(ossified.Info.Ears) != 0 || ossified.Info.Negative == "" {
		t.Errorf("ossified: ears %d, reason %q", len(ossified.Info.Ears), ossified.Info.Negative)
	}
}

func TestNegatives(t *testing.T) {
	for _, tok := range []string{"body", "thickslice", "localizer", "ossified"} {
		v, err := ParseVariant(tok)
		if err != nil {
			t.Fatal(err)
		}
		v.Size = [3]int{96, 96, 12}
		if tok == "localizer" {
			v.Size = [3]int{96, 0, 0}
		}
		c := gen(t, 3, v)
		if len(c.Info.Ears) != 0 || c.Info.Negative == "" {
			t.Errorf("%s: ears %d, reason %q", tok, len(c.Info.Ears), c.Info.Negative)
		}
		for _, l := range c.Label.Data {
			if l != 0 {
				t.Fatalf("%s: labelled voxels in a negative", tok)
			}
		}
		var lo, hi int16 = 4000, -4000
		for _, x := range c.CT.Data {
			lo, hi = min(lo, x), max(hi, x)
		}
		if hi-lo < 500 {
			t.Errorf("%s: image almost flat (%d..%d)", tok, lo, hi)
		}
	}
}

// TestBilateral: both labyrinths labelled, the left ear at larger x.
func TestBilateral(t *testing.T) {
	v := small(t, "bilateral")
	v.Size = [3]int{220, 64, 64}
	v.SpacingMM = [3]float64{0.5, 0.5, 0.5}
	c := gen(t, 11, v)
	if len(c.Info.Ears) != 2 {
		t.Fatalf("%d ears", len(c.Info.Ears))
	}
	byside := map[string]EarInfo{}
	for _, e := range c.Info.Ears {
		byside[e.Laterality] = e
		if e.LabelVoxels == 0 {
			t.Errorf("%s ear has no label", e.Laterality)
		}
	}
	r, l := byside["R"], byside["L"]
	if !(l.VestibuleMM[0] > r.VestibuleMM[0]+40) {
		t.Errorf("left vestibule x %.1f not well left (+x) of right %.1f", l.VestibuleMM[0], r.VestibuleMM[0])
	}
	// Labelled voxels split into two clusters, one per side of the midline.
	mid := (l.VestibuleMM[0] + r.VestibuleMM[0]) / 2
	var nl, nr int64
	forEach(c.Label, func(i, j, k int, lab uint8) {
		if lab != 0 {
			if c.Label.Affine.Apply([3]float64{float64(i), float64(j), float64(k)})[0] > mid {
				nl++
			} else {
				nr++
			}
		}
	})
	if nl != l.LabelVoxels || nr != r.LabelVoxels {
		t.Errorf("label voxels left %d right %d, ears say %d and %d", nl, nr, l.LabelVoxels, r.LabelVoxels)
	}
	// Each ear's cochlea lies lateral-ward mirrored: the round window is
	// lateral to the vestibule centre on its own side.
	if !(r.Landmarks["round_window"].PatientMM[0] < r.VestibuleMM[0] && l.Landmarks["round_window"].PatientMM[0] > l.VestibuleMM[0]) {
		t.Error("round windows not lateral to their vestibules")
	}
}

func TestVariantsRender(t *testing.T) {
	for _, tok := range []string{"microct,dry", "multislice,formalin", "fovcut", "dr,dose=0.5"} {
		c := gen(t, 21, small(t, tok))
		if tok == "fovcut" {
			if e := c.Info.Ears[0]; !e.LabyrinthCutByFOV {
				t.Errorf("fovcut: labyrinth not cut (%.0f of %.0f mm³)", e.VolumeMM3, e.ModelVolumeMM3)
			}
		}
		if tok == "microct,dry" {
			// Dry specimen: the labyrinth is air.
			var sum, n float64
			for i, l := range c.Label.Data {
				if l != 0 {
					sum += float64(c.CT.Data[i])
					n++
				}
			}
			if n > 0 && sum/n > -400 {
				t.Errorf("dry specimen: labyrinth mean %.0f HU", sum/n)
			}
		}
	}
}

func TestPreview(t *testing.T) {
	c := gen(t, 1, small(t, "right"))
	var b bytes.Buffer
	if err := Preview(&b, c.CT, c.Label, PreviewOptions{Landmarks: c.LandmarkVoxels(), MaxPanel: 200}); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() < 600 {
		t.Errorf("preview %v", img.Bounds())
	}
	if err := Preview(&b, &volume.Volume[int16]{}, nil, PreviewOptions{}); err == nil {
		t.Error("empty volume accepted")
	}
}

// TestMixVariant: the dataset mix covers every kind of case and every
// drawn variant is valid.
func TestMixVariant(t *testing.T) {
	seen := map[string]int{}
	for s := uint64(0); s < 400; s++ {
		v := MixVariant(s)
		if v != MixVariant(s) {
			t.Fatalf("seed %d: not deterministic", s)
		}
		if err := v.normalise(); err != nil {
			t.Fatalf("seed %d: %v", s, err)
		}
		seen[v.Scanner]++
		switch {
		case v.Negative != "":
			seen["negative"]++
		case v.Bilateral:
			seen["bilateral"]++
		case v.Lesion != "":
			seen["lesion"]++
		case v.Rotation == "arbitrary":
			seen["rotated"]++
		case v.FOVCut:
			seen["fovcut"]++
		}
	}
	for _, k := range []string{FlatPanel, ConeBeam, MultiSlice, MicroCT, "negative", "bilateral", "lesion", "rotated", "fovcut"} {
		if seen[k] == 0 {
			t.Errorf("the mix never draws %s (%v)", k, seen)
		}
	}
}

func TestDatasetSplits(t *testing.T) {
	cases := make([]DatasetCase, 20)
	assignSplits(cases, [3]float64{0.7, 0.15, 0.15}, 1)
	n := map[string]int{}
	for _, c := range cases {
		n[c.Split]++
	}
	if n["train"] != 14 || n["validation"] != 3 || n["test"] != 3 {
		t.Errorf("splits %v", n)
	}
	one := make([]DatasetCase, 1)
	assignSplits(one, [3]float64{0.7, 0.15, 0.15}, 1)
	if one[0].Split != "train" {
		t.Errorf("a single case went to %s", one[0].Split)
	}
}
