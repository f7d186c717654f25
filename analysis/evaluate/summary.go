package evaluate

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"text/tabwriter"
)

// Stat is a mean with its sample standard deviation over n values.
type Stat struct {
	Mean, SD float64
	N        int
}

func (s Stat) String() string {
	if s.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3g ± %.2g", s.Mean, s.SD)
}

func stat(xs []float64) Stat {
	var s Stat
	for _, x := range xs {
		if !math.IsInf(x, 0) && !math.IsNaN(x) {
			s.Mean += x
			s.N++
		}
	}
	if s.N == 0 {
		return s
	}
	s.Mean /= float64(s.N)
	for _, x := range xs {
		if !math.IsInf(x, 0) && !math.IsNaN(x) {
			s.SD += (x - s.Mean) * (x - s.Mean)
		}
	}
	if s.N > 1 {
		s.SD = math.Sqrt(s.SD / float64(s.N-1))
	}
	return s
}

// Summary is the mean ± sd of each metric over one subset of cases.
type Summary struct {
	Subset                          string
	Cases, Correct                  int
	Dice, IoU, VolumetricSimilarity Stat
	Hausdorff, AverageHausdorff     Stat
	Uncertainty                     Stat
	Landmarks                       map[string]Stat // voxels, by landmark name (side removed)
	LandmarksMM                     map[string]Stat
}

// Summarise groups the results by key (for example split or variant) and
// computes the statistics of each group; "all" summarises every case.
func Summarise(rs []CaseResult, key func(CaseResult) string) []Summary {
	groups := map[string][]CaseResult{"all": rs}
	for _, r := range rs {
		k := key(r)
		if k != "all" {
			groups[k] = append(groups[k], r)
		}
	}
	var names []string
	for k := range groups {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []Summary
	for _, k := range names {
		g := groups[k]
		s := Summary{Subset: k, Cases: len(g), Landmarks: map[string]Stat{}, LandmarksMM: map[string]Stat{}}
		var dice, iou, vs, hd, ahd, unc []float64
		vox := map[string][]float64{}
		mm := map[string][]float64{}
		for _, r := range g {
			if r.Correct {
				s.Correct++
			}
			if r.Status != "done" {
				continue
			}
			dice, iou, vs = append(dice, r.Dice), append(iou, r.IoU), append(vs, r.VolumetricSimilarity)
			hd, ahd, unc = append(hd, float64(r.Hausdorff)), append(ahd, float64(r.AverageHausdorff)), append(unc, r.Uncertainty)
			for name, e := range r.Landmarks {
				base := baseName(name)
				vox[base] = append(vox[base], e.Voxels)
				mm[base] = append(mm[base], e.MM)
			}
		}
		s.Dice, s.IoU, s.VolumetricSimilarity = stat(dice), stat(iou), stat(vs)
		s.Hausdorff, s.AverageHausdorff, s.Uncertainty = stat(hd), stat(ahd), stat(unc)
		for n := range vox {
			s.Landmarks[n], s.LandmarksMM[n] = stat(vox[n]), stat(mm[n])
		}
		out = append(out, s)
	}
	return out
}

func baseName(n string) string {
	if len(n) > 2 && n[len(n)-2] == '_' && (n[len(n)-1] == 'R' || n[len(n)-1] == 'L') {
		return n[:len(n)-2]
	}
	return n
}

var landmarkOrder = []string{"helicotrema", "oval_window", "round_window"}

// WriteTable prints the summaries as an aligned table.
func WriteTable(w io.Writer, ss []Summary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "subset\tcases\tcorrect\tDice\tIoU\tVS\tHD mm\tavgHD mm\thelicotrema vox\toval window vox\tround window vox\tuncertainty")
	for _, s := range ss {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%v\t%v\t%v\t%v\t%v\t%v\t%v\t%v\t%v\n", s.Subset, s.Cases, s.Correct,
			s.Dice, s.IoU, s.VolumetricSimilarity, s.Hausdorff, s.AverageHausdorff,
			s.Landmarks[landmarkOrder[0]], s.Landmarks[landmarkOrder[1]], s.Landmarks[landmarkOrder[2]], s.Uncertainty)
	}
	return tw.Flush()
}

// WriteCSV writes one row per case.
func WriteCSV(w io.Writer, rs []CaseResult) error {
	cw := csv.NewWriter(w)
	head := []string{"id", "split", "variant", "status", "correct", "dice", "iou", "vs", "hausdorff_mm", "avg_hausdorff_mm", "uncertainty", "flagged", "seconds"}
	for _, l := range landmarkOrder {
		head = append(head, l+"_vox", l+"_mm")
	}
	cw.Write(head)
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', 6, 64) }
	for _, r := range rs {
		row := []string{r.ID, r.Split, r.Variant, r.Status, strconv.FormatBool(r.Correct), f(r.Dice), f(r.IoU), f(r.VolumetricSimilarity),
			f(float64(r.Hausdorff)), f(float64(r.AverageHausdorff)), f(r.Uncertainty), strconv.FormatBool(r.Flagged), f(r.Seconds)}
		for _, l := range landmarkOrder {
			var vs, ms []float64
			for name, e := range r.Landmarks {
				if baseName(name) == l {
					vs, ms = append(vs, e.Voxels), append(ms, e.MM)
				}
			}
			row = append(row, f(stat(vs).Mean), f(stat(ms).Mean))
		}
		cw.Write(row)
	}
	cw.Flush()
	return cw.Error()
}

// WriteJSON writes the cases and the summaries.
func WriteJSON(w io.Writer, rs []CaseResult, ss []Summary) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"cases": rs, "summaries": ss})
}
