// Package evaluate runs the analysis over a labelled dataset and scores it
// with the paper's metrics: Dice, IoU, volumetric similarity, Hausdorff and
// average Hausdorff distance, and the Euclidean distance of each landmark in
// voxels and mm.
//
// A dataset is the folder format that `otonode phantom dataset` writes and
// that sites convert their own labelled data to (analysis/phantom/FORMAT.md):
// dataset.json with the splits, and per case ct.nii.gz, label.nii.gz
// (0 background, >0 inner ear) and case.json with the landmarks per ear.
package evaluate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/otonode/otonode/analysis"
	"github.com/otonode/otonode/analysis/metrics"
	"github.com/otonode/otonode/analysis/nifti"
	"github.com/otonode/otonode/analysis/volume"
)

// Case is one labelled case of a dataset.
type Case struct {
	ID, Split string
	Dir       string
	Variant   string // the generator's variant tokens, or "" for other data
	Ears      []TruthEar
}

// TruthEar is the ground truth of one ear.
type TruthEar struct {
	Laterality string                `json:"laterality"`
	Landmarks  map[string]truthPoint `json:"landmarks"`
}

type truthPoint struct {
	PatientMM [3]float64 `json:"patient_mm"`
	Voxel     [3]float64 `json:"voxel"`
}

type datasetJSON struct {
	Format string              `json:"format"`
	Splits map[string][]string `json:"splits"`
}

type caseJSON struct {
	Tokens string     `json:"variant_tokens"`
	Ears   []TruthEar `json:"ears"`
}

// ErrDataset marks a dataset folder that does not follow the format.
var ErrDataset = errors.New("evaluate: not a dataset")

// ReadDataset lists the cases of the dataset in dir, for the given splits
// (none means all), in split then case order.
func ReadDataset(dir string, splits ...string) ([]Case, error) {
	b, err := os.ReadFile(filepath.Join(dir, "dataset.json"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDataset, err)
	}
	var ds datasetJSON
	if err := json.Unmarshal(b, &ds); err != nil {
		return nil, fmt.Errorf("%w: dataset.json: %v", ErrDataset, err)
	}
	if len(splits) == 0 {
		for s := range ds.Splits {
			splits = append(splits, s)
		}
		sort.Strings(splits)
	}
	var out []Case
	for _, s := range splits {
		ids, ok := ds.Splits[s]
		if !ok {
			return nil, fmt.Errorf("%w: no split %q", ErrDataset, s)
		}
		for _, id := range ids {
			c := Case{ID: id, Split: s, Dir: filepath.Join(dir, id)}
			b, err := os.ReadFile(filepath.Join(c.Dir, "case.json"))
			if err != nil {
				return nil, fmt.Errorf("%w: case %s: %v", ErrDataset, id, err)
			}
			var cj caseJSON
			if err := json.Unmarshal(b, &cj); err != nil {
				return nil, fmt.Errorf("%w: case %s: %v", ErrDataset, id, err)
			}
			c.Variant, c.Ears = cj.Tokens, cj.Ears
			out = append(out, c)
		}
	}
	return out, nil
}

// LandmarkError is how far one predicted landmark lies from the truth.
type LandmarkError struct {
	Voxels float64 `json:"voxels"`
	MM     float64 `json:"mm"`
}

// CaseResult holds the scores of one case.
type CaseResult struct {
	ID      string `json:"id"`
	Split   string `json:"split"`
	Variant string `json:"variant"`
	// Status is the analysis status; Correct says whether it matches the
	// truth (done for a case with ears, no-inner-ear for a negative).
	Status  string `json:"status"`
	Correct bool   `json:"correct"`
	// Overlap and distances of the whole segmentation (all ears); the
	// distances are infinite (null in JSON) when one mask is empty.
	Dice                 float64 `json:"dice"`
	IoU                  float64 `json:"iou"`
	VolumetricSimilarity float64 `json:"volumetric_similarity"`
	Hausdorff            Num     `json:"hausdorff_mm"`
	AverageHausdorff     Num     `json:"average_hausdorff_mm"`
	// Landmarks by name; for a bilateral case the name carries the side
	// ("helicotrema_R").
	Landmarks   map[string]LandmarkError `json:"landmarks"`
	Uncertainty float64                  `json:"uncertainty"` // largest over the ears
	Flagged     bool                     `json:"flagged"`
	Seconds     float64                  `json:"seconds"`
}

// Run analyses one case and scores it.
func Run(ctx context.Context, a *analysis.Analyzer, c Case) (*CaseResult, error) {
	ct, _, err := nifti.ReadFile(filepath.Join(c.Dir, "ct.nii.gz"))
	if err != nil {
		return nil, fmt.Errorf("evaluate: case %s: %w", c.ID, err)
	}
	truth, _, err := nifti.ReadFileAs[uint8](filepath.Join(c.Dir, "label.nii.gz"))
	if err != nil {
		return nil, fmt.Errorf("evaluate: case %s: %w", c.ID, err)
	}
	res, err := a.Analyze(ctx, ct)
	if err != nil {
		return nil, fmt.Errorf("evaluate: case %s: %w", c.ID, err)
	}
	cr := &CaseResult{ID: c.ID, Split: c.Split, Variant: c.Variant, Status: res.Status, Landmarks: map[string]LandmarkError{}}
	for _, s := range res.Stages {
		cr.Seconds += s.Duration.Seconds()
	}
	if len(c.Ears) == 0 {
		cr.Correct = res.Status != analysis.StatusDone
		return cr, nil
	}
	cr.Correct = res.Status == analysis.StatusDone
	pred := volume.New[uint8](ct.Grid)
	for _, e := range res.Ears {
		lab, err := e.LabelOn(ct.Grid)
		if err != nil {
			return nil, fmt.Errorf("evaluate: case %s: %w", c.ID, err)
		}
		for i, v := range lab.Data {
			if v != 0 {
				pred.Data[i] = 1
			}
		}
		cr.Uncertainty = math.Max(cr.Uncertainty, e.Uncertainty)
		cr.Flagged = cr.Flagged || e.Flag.Raised
	}
	ov, err := metrics.Compare(pred, truth)
	if err != nil {
		return nil, err
	}
	cr.Dice, cr.IoU, cr.VolumetricSimilarity = ov.Dice, ov.IoU, ov.VolumetricSimilarity
	d, err := metrics.Distances(pred, truth)
	if err != nil {
		return nil, err
	}
	cr.Hausdorff, cr.AverageHausdorff = Num(d.Hausdorff), Num(d.AverageHausdorff)
	for _, te := range c.Ears {
		pe := nearestEar(res.Ears, te)
		if pe == nil {
			continue
		}
		for _, l := range pe.Landmarks {
			t, ok := te.Landmarks[l.Name]
			if !ok {
				continue
			}
			name := l.Name
			if len(c.Ears) > 1 {
				name += "_" + te.Laterality
			}
			vox, mm := metrics.LandmarkDistance(l.Voxel, t.Voxel, ct.Affine)
			cr.Landmarks[name] = LandmarkError{Voxels: vox, MM: mm}
		}
	}
	return cr, nil
}

// Num is a float that encodes as null in JSON when it is not finite.
type Num float64

// MarshalJSON implements json.Marshaler.
func (n Num) MarshalJSON() ([]byte, error) {
	if math.IsInf(float64(n), 0) || math.IsNaN(float64(n)) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(n))
}

// nearestEar pairs a true ear with the predicted ear whose landmarks lie
// closest on average (laterality from the image can be unknown).
func nearestEar(pred []analysis.Ear, te TruthEar) *analysis.Ear {
	var best *analysis.Ear
	bestD := math.Inf(1)
	for i := range pred {
		var sum float64
		var n int
		for _, l := range pred[i].Landmarks {
			if t, ok := te.Landmarks[l.Name]; ok {
				sum += dist(l.PatientMM, t.PatientMM)
				n++
			}
		}
		if n > 0 && sum/float64(n) < bestD {
			best, bestD = &pred[i], sum/float64(n)
		}
	}
	return best
}

func dist(a, b [3]float64) float64 {
	return math.Sqrt((a[0]-b[0])*(a[0]-b[0]) + (a[1]-b[1])*(a[1]-b[1]) + (a[2]-b[2])*(a[2]-b[2]))
}
