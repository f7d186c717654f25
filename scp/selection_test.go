package scp

import (
	"slices"
	"strings"
	"testing"

	"github.com/otonode/otonode/scp/config"
	"github.com/otonode/otonode/store/index"
)

func fp(v float64) *float64 { return &v }
func ip(v int) *int         { return &v }

func TestRulesRefuse(t *testing.T) {
	sel := config.Default().Selection
	sel.CallingAE = "^CT"
	sel.Description = "bone|felsenbein"
	r, err := NewRules(sel)
	if err != nil {
		t.Fatal(err)
	}
	ok := index.Series{Modality: "CT", ImageType: []string{"ORIGINAL", "PRIMARY", "AXIAL"}, SliceThickness: fp(0.6),
		SpacingBetweenSlices: fp(0.3), Instances: 120, SourceAE: "CT1", SeriesDescription: "Felsenbein 0.6 H70h"}
	tests := []struct {
		name   string
		change func(*index.Series)
		want   string // substring of the reason, "" = analysed
	}{
		{"qualifies", func(*index.Series) {}, ""},
		{"modality", func(s *index.Series) { s.Modality = "MR" }, "modality"},
		{"localizer", func(s *index.Series) { s.ImageType = []string{"ORIGINAL", "PRIMARY", "LOCALIZER"} }, "localizer"},
		{"thick", func(s *index.Series) { s.SliceThickness = fp(5) }, "thickness"},
		{"sparse", func(s *index.Series) { s.SpacingBetweenSlices = fp(3) }, "spacing"},
		{"short", func(s *index.Series) { s.Instances = 3 }, "fewer"},
		{"sender", func(s *index.Series) { s.SourceAE = "PACS" }, "sending AE"},
		{"description", func(s *index.Series) { s.SeriesDescription = "Thorax" }, "description"},
		{"thickness unknown passes", func(s *index.Series) { s.SliceThickness = nil }, ""},
	}
	for _, tc := range tests {
		s := ok
		tc.change(&s)
		got := r.Refuse(s)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: reason %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestRulesBetter(t *testing.T) {
	r, err := NewRules(config.Default().Selection)
	if err != nil {
		t.Fatal(err)
	}
	boneThin := index.Series{SeriesInstanceUID: "1.1", Instances: 200, SliceThickness: fp(0.6), ConvolutionKernel: []string{"H70h"}, SeriesNumber: ip(3)}
	boneThick := index.Series{SeriesInstanceUID: "1.2", Instances: 100, SliceThickness: fp(1.0), ConvolutionKernel: []string{"Hr68"}, SeriesNumber: ip(4)}
	softThin := index.Series{SeriesInstanceUID: "1.3", Instances: 400, SliceThickness: fp(0.4), ConvolutionKernel: []string{"H30s"}, SeriesNumber: ip(2)}
	reformat := index.Series{SeriesInstanceUID: "1.4", Instances: 60, SliceThickness: fp(0.6), ConvolutionKernel: []string{"H70h"}, SeriesNumber: ip(5)}
	list := []index.Series{softThin, reformat, boneThick, boneThin}
	slices.SortFunc(list, r.Better)
	var got []string
	for _, s := range list {
		got = append(got, s.SeriesInstanceUID)
	}
	if want := "1.1 1.4 1.2 1.3"; strings.Join(got, " ") != want {
		t.Fatalf("order %v, want %s", got, want)
	}
}
