package analysis

import (
	"os"
	"slices"
	"testing"

	"github.com/otonode/otonode/analysis/volume"
)

// TestWriteOutputsOneFilePerEar: every ear gets its own uncertainty map and
// preview, also when two ears carry the same side or none.
func TestWriteOutputsOneFilePerEar(t *testing.T) {
	g := volume.Grid{Size: [3]int{8, 8, 8}, Affine: volume.Affine{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}}}
	ct := volume.New[float32](g)
	ear := func(side Laterality) Ear {
		return Ear{Laterality: side, Label: volume.New[uint8](g), UncertaintyMap: volume.New[float32](g)}
	}
	tests := []struct {
		sides []Laterality
		want  []string // file-name sides, in ear order
	}{
		{[]Laterality{Right, Left}, []string{"right", "left"}},
		{[]Laterality{Left, Left}, []string{"left1", "left2"}},
		{[]Laterality{Right, Right}, []string{"right1", "right2"}},
		{[]Laterality{"", ""}, []string{"ear1", "ear2"}},
		{[]Laterality{"", Left}, []string{"ear1", "left"}},
	}
	for _, tt := range tests {
		res := &Result{Status: StatusDone}
		for _, s := range tt.sides {
			res.Ears = append(res.Ears, ear(s))
		}
		dir := t.TempDir()
		rep, err := WriteOutputs(dir, &Input{CT: ct, Format: "nifti"}, res)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, s := range tt.want {
			want = append(want, "preview-"+s+".png", "uncertainty-"+s+".nii.gz")
			for _, role := range []string{"preview-" + s, "uncertainty-" + s} {
				if rep.Files[role] == "" {
					t.Errorf("%v: report has no file for %s: %v", tt.sides, role, rep.Files)
				}
			}
		}
		want = append(want, "report.json", "segmentation.nii.gz")
		slices.Sort(want)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Name())
		}
		if !slices.Equal(got, want) {
			t.Errorf("%v: files %v, want %v", tt.sides, got, want)
		}
	}
}
