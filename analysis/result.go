// Package analysis turns a temporal-bone CT volume into the inner-ear
// analysis of Stebani et al. 2023: per ear a segmentation of the labyrinth's
// fluid space, three landmarks, the inner-ear volume and a test-time
// augmentation uncertainty with a flag. Sub-packages hold the parts (volume
// I/O, series assembly, inference, TTA, metrics, the phantom generator and
// the model's training code); this package holds the pipeline and its
// result. It imports no networking, NATS or database package.
package analysis

import (
	"fmt"
	"time"

	"github.com/otonode/otonode/analysis/volume"
)

// Laterality of an ear, as DICOM's Laterality (0020,0060) spells it.
type Laterality string

const (
	Right Laterality = "R"
	Left  Laterality = "L"
)

// Landmark names in the model's heatmap order (DESIGN.md, model contract).
const (
	Helicotrema = "helicotrema"
	OvalWindow  = "oval_window"
	RoundWindow = "round_window"
)

// LandmarkOrder is the order of the model's heatmap channels.
var LandmarkOrder = [3]string{Helicotrema, OvalWindow, RoundWindow}

// Structure labels of a per-structure label volume; 0 is background and any
// value above 0 is the labyrinth's fluid space.
const (
	LabelBackground = 0
	LabelCochlea    = 1
	LabelVestibule  = 2
	LabelCanals     = 3 // semicircular canals
)

// Landmark is one localised point.
type Landmark struct {
	Name      string     `json:"name"`
	Voxel     [3]float64 `json:"voxel"`      // index (i, j, k) on the source grid, sub-voxel
	PatientMM [3]float64 `json:"patient_mm"` // DICOM patient coordinates (LPS, mm)
	// Peak is the heatmap value at the maximum; a low peak means the model
	// did not find the landmark with confidence.
	Peak float64 `json:"peak"`
}

// Flag says whether an ear's result needs a human look, and why.
type Flag struct {
	Raised bool   `json:"raised"`
	Reason string `json:"reason,omitempty"` // e.g. "uncertainty 0.012 above threshold 0.004"
}

// Ear is the analysis of one inner ear.
type Ear struct {
	Laterality Laterality `json:"laterality"`
	// Label is the binary segmentation (1 = inner ear) on the analysed
	// box of the source grid (Analysed.SourceBox): its grid is the source
	// grid's Sub of that box, so its affine places it in patient space and
	// volume.Grid.BoxIn on the source grid; outside it the segmentation is
	// background. A full-grid label (the box is the whole grid) is valid
	// too. When the model outputs one class only, that is all there is; a
	// model with per-structure outputs may use the Label* values.
	Label     *volume.Volume[uint8] `json:"-"`
	Landmarks []Landmark            `json:"landmarks"`
	VolumeMM3 float64               `json:"volume_mm3"`
	// VolumeSpreadMM3 is the standard deviation of the volume across the
	// TTA passes (each pass thresholded on the model grid).
	VolumeSpreadMM3 float64 `json:"volume_spread_mm3"`
	// Uncertainty is the TTA score: the mean voxel-wise standard deviation
	// over the predicted structure plus a fixed margin.
	Uncertainty float64 `json:"uncertainty"`
	// UncertaintyMap is the voxel-wise TTA standard deviation on the grid
	// the model saw (isotropic, over the ear's region of interest).
	UncertaintyMap *volume.Volume[float32] `json:"-"`
	Flag           Flag                    `json:"flag"`
	// Analysed is the part of the region of interest the TTA passes ran
	// on. Outside it the segmentation is background and the uncertainty 0.
	Analysed AnalysedRegion `json:"analysed_region"`
}

// AnalysedRegion says where an ear's TTA passes ran.
type AnalysedRegion struct {
	// TTA is "focused" (the default: a first pass over the region of
	// interest finds the structure; the TTA passes run on the box around
	// its major connected components plus a margin) or "full" (every pass
	// over the whole region of interest).
	TTA string `json:"tta"`
	// SourceBox is the analysed box on the source grid: voxel indices
	// [SourceBox[0][a], SourceBox[1][a]) along each axis a.
	SourceBox [2][3]int `json:"source_box"`
	// Fraction is the analysed box's share of the region of interest.
	Fraction float64 `json:"fraction_of_roi"`
	// ScoutWindows is how many network windows the first pass ran to find
	// the structure (0 for full TTA).
	ScoutWindows int `json:"scout_windows,omitempty"`
}

// Model identifies the model that produced a result, from its manifest.
type Model struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"` // of the ONNX file
	// NotForDiagnosis is set when the manifest says the model must not be
	// used clinically (the reference model, trained on phantoms); results
	// writers then say so in the objects they produce.
	NotForDiagnosis bool   `json:"not_for_diagnosis"`
	Statement       string `json:"statement,omitempty"` // the manifest's words for users
}

// Stage is the duration of one step of the pipeline.
type Stage struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration_ns"`
}

// Result is what one analysis of a series produces. Status is "done" when
// at least one ear was analysed, else a reason the series was not analysed.
type Result struct {
	Status string  `json:"status"`           // "done", "not-analysable", "no-inner-ear"
	Reason string  `json:"reason,omitempty"` // why not, in words a user reads
	Ears   []Ear   `json:"ears"`
	Model  Model   `json:"model"`
	Stages []Stage `json:"stages"`
}

// LabelOn returns the ear's label on grid g, the source grid it was
// analysed on (zero outside the label's box). It allocates a volume of g's
// size; writers of whole-grid files use it, the pipeline does not.
func (e *Ear) LabelOn(g volume.Grid) (*volume.Volume[uint8], error) {
	out := volume.New[uint8](g)
	if e.Label == nil {
		return out, nil
	}
	if err := volume.Paste(out, e.Label); err != nil {
		return nil, fmt.Errorf("analysis: %s ear's label: %w", e.Laterality, err)
	}
	return out, nil
}
