package analysis

import (
	"context"
	"math"
	"testing"

	"github.com/otonode/otonode/analysis/tta"
)

// With LargestComponent the pipeline keeps the largest blob of what the
// network calls inner ear (here the vestibule) and drops the rest; without
// it, every blob stays (the paper's default). A manifest can ask for it;
// Options.Raw then measures the network alone.
func TestAnalyzeLargestComponent(t *testing.T) {
	far := ellipsoid{Centre: [3]float64{3.5, 3.5, 2.5}, Radii: [3]float64{1, 1, 1}, HU: 30}
	ct := paint([3]int{110, 100, 90}, 0.25, [3]float64{-12, -13, -11}, 1100, append(earScene[:3:3], far))
	m := testManifest(0.2)
	norm := func(hu float32) float32 { return (hu - 500) / 1000 }
	tests := []struct {
		name     string
		option   bool // Options.LargestComponent
		manifest bool // postprocessing.largest_component
		raw      bool // Options.Raw
		largest  bool // the clean-up runs
	}{
		{"paper default", false, false, false, false},
		{"option", true, false, false, true},
		{"manifest", false, true, false, true},
		{"manifest, raw", false, true, true, false},
		{"option beats raw", true, true, true, true},
	}
	for _, tt := range tests {
		largest := tt.largest
		mm := *m
		mm.Postprocessing.LargestComponent = tt.manifest
		a := &Analyzer{Manifest: &mm, Model: fluidNet{lo: norm(-500), hi: norm(1015)},
			Options: Options{SingleWindow: 256, TTA: []tta.Transform{tta.Identity}, LargestComponent: tt.option, Raw: tt.raw}}
		res, err := a.Analyze(context.Background(), ct)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != StatusDone || len(res.Ears) != 1 {
			t.Fatalf("largest %v: status %q (%s), %d ears", largest, res.Status, res.Reason, len(res.Ears))
		}
		ear := res.Ears[0]
		keepOthers := uint8(1)
		if largest {
			keepOthers = 0
		}
		if got := labelAt(ear, vestibule.Centre); got != 1 {
			t.Errorf("largest %v: vestibule labelled %d, want 1", largest, got)
		}
		for _, e := range []ellipsoid{cochlea, far} {
			if got := labelAt(ear, e.Centre); got != keepOthers {
				t.Errorf("largest %v: blob at %v labelled %d, want %d", largest, e.Centre, got, keepOthers)
			}
		}
		v := 4.0 / 3 * math.Pi * 2.5 * 1.6 * 1.6
		if largest && math.Abs(ear.VolumeMM3-v)/v > 0.15 {
			t.Errorf("volume %.1f mm³, want the vestibule's %.1f ± 15%%", ear.VolumeMM3, v)
		}
	}
}
