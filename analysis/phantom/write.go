package phantom

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/otonode/otonode/analysis/nifti"
	"github.com/otonode/otonode/analysis/volume"
)

// WriteOptions control WriteCase.
type WriteOptions struct {
	DICOM bool // also write the CT as a DICOM series under dicom/
	// Crop > 0 crops the NIfTI volumes to a box of at least Crop voxels per
	// axis around the labelled labyrinth(s) (never cutting the label).
	Crop     int
	Workers  int
	Progress func(done, total int) // DICOM files written
}

// File names inside a case folder (the dataset contract, see FORMAT.md).
const (
	FileCT        = "ct.nii.gz"
	FileLabel     = "label.nii.gz"
	FileLandmarks = "landmarks.mrk.json"
	FileCase      = "case.json"
	DirDICOM      = "dicom"
)

// caseJSON is case.json: Info plus where the files are.
type caseJSON struct {
	Info
	ID         string    `json:"id"`
	Files      fileNames `json:"files"`
	DICOMGrid  *GridInfo `json:"dicom_grid,omitempty"`
	LabelNames [4]string `json:"label_names"`
}

type fileNames struct {
	CT        string `json:"ct"`
	Label     string `json:"label"`
	Landmarks string `json:"landmarks"`
	DICOM     string `json:"dicom,omitempty"`
}

// WriteCase writes a case folder: NIfTI CT and label, Slicer markups,
// case.json and optionally the DICOM series.
func WriteCase(ctx context.Context, dir, id string, c *Case, opt WriteOptions) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("phantom: %w", err)
	}
	ct, lab := c.CT, c.Label
	info := c.Info
	// Landmarks in the DICOM grid are kept; NIfTI voxels may be cropped.
	full := info.Grid
	if opt.Crop > 0 {
		b := cropBox(c, opt.Crop)
		var err error
		if ct, err = volume.Crop(c.CT, b); err != nil {
			return err
		}
		if lab, err = volume.Crop(c.Label, b); err != nil {
			return err
		}
		info.Grid = GridInfo{Size: ct.Size, SpacingMM: ct.Affine.Spacing(), Affine: ct.Affine}
		inv, err := ct.Affine.Inverse()
		if err != nil {
			return err
		}
		ears := make([]EarInfo, len(info.Ears))
		for e, ear := range info.Ears {
			ear.Landmarks = map[string]Landmark{}
			for n, lm := range c.Info.Ears[e].Landmarks {
				lm.Voxel = inv.Apply(lm.PatientMM)
				ear.Landmarks[n] = lm
			}
			ears[e] = ear
		}
		info.Ears = ears
	}
	// The CT's noise makes gzip slow; write it with the fastest level and
	// alongside the DICOM series.
	desc := "otonode phantom " + info.Tokens
	ctErr := make(chan error, 1)
	go func() {
		ctErr <- writeNIfTIFast(filepath.Join(dir, FileCT), ct, nifti.Options{Description: desc})
	}()
	if err := nifti.WriteFile(filepath.Join(dir, FileLabel), lab, nifti.Options{Description: "labyrinth 1 cochlea 2 vestibule 3 canals"}); err != nil {
		<-ctErr
		return err
	}
	cj := caseJSON{Info: info, ID: id, Files: fileNames{CT: FileCT, Label: FileLabel, Landmarks: FileLandmarks},
		LabelNames: [4]string{"background", "cochlea", "vestibule", "semicircular_canals"}}
	if opt.Crop > 0 {
		cj.DICOMGrid = &full
	}
	if opt.DICOM {
		cj.Files.DICOM = DirDICOM
		if cj.DICOMGrid == nil {
			cj.DICOMGrid = &full
		}
		if _, err := WriteSeries(ctx, filepath.Join(dir, DirDICOM), c.CT, &c.Info, SeriesOptions{Workers: opt.Workers, Progress: opt.Progress}); err != nil {
			<-ctErr
			return err
		}
	}
	if err := <-ctErr; err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(dir, FileLandmarks), markups(info)); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dir, FileCase), cj)
}

// writeNIfTIFast writes a .nii.gz with gzip's fastest level.
func writeNIfTIFast[T volume.Scalar](path string, v *volume.Volume[T], o nifti.Options) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("phantom: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("phantom: %w", cerr)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	if err != nil {
		return err
	}
	o.Gzip = false
	if err := nifti.Write(zw, v, o); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("phantom: %w", err)
	}
	return bw.Flush()
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("phantom: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("phantom: %w", err)
	}
	return nil
}

// cropBox is a box of at least n voxels per axis holding every labelled
// voxel and landmark (or the grid centre for a case without a label).
func cropBox(c *Case, n int) volume.Box {
	sz := c.Label.Size
	lo := [3]int{sz[0], sz[1], sz[2]}
	hi := [3]int{-1, -1, -1}
	for k := 0; k < sz[2]; k++ {
		for j := 0; j < sz[1]; j++ {
			row := c.Label.Data[sz[0]*(j+sz[1]*k) : sz[0]*(j+sz[1]*k)+sz[0]]
			for i, l := range row {
				if l != 0 {
					lo[0], hi[0] = min(lo[0], i), max(hi[0], i)
					lo[1], hi[1] = min(lo[1], j), max(hi[1], j)
					lo[2], hi[2] = min(lo[2], k), max(hi[2], k)
				}
			}
		}
	}
	if hi[0] < 0 {
		for a := 0; a < 3; a++ {
			lo[a], hi[a] = sz[a]/2, sz[a]/2
		}
	}
	var b volume.Box
	for a := 0; a < 3; a++ {
		ext := max(n, hi[a]-lo[a]+1)
		mid := (lo[a] + hi[a] + 1) / 2
		b.Min[a] = mid - ext/2
		b.Max[a] = b.Min[a] + ext
		// Shift inside the grid where possible rather than lose size.
		if b.Min[a] < 0 {
			b.Max[a] -= b.Min[a]
			b.Min[a] = 0
		}
		if b.Max[a] > sz[a] {
			b.Min[a] = max(0, b.Min[a]-(b.Max[a]-sz[a]))
			b.Max[a] = sz[a]
		}
	}
	return b
}

// Slicer markups JSON (schema v1.0.3), LPS coordinates.
type mrkFile struct {
	Schema  string      `json:"@schema"`
	Markups []mrkMarkup `json:"markups"`
}

type mrkMarkup struct {
	Type             string     `json:"type"`
	CoordinateSystem string     `json:"coordinateSystem"`
	CoordinateUnits  string     `json:"coordinateUnits"`
	Locked           bool       `json:"locked"`
	FixedNumber      bool       `json:"fixedNumberOfControlPoints"`
	LabelFormat      string     `json:"labelFormat"`
	LastUsedIndex    int        `json:"lastUsedControlPointNumber"`
	ControlPoints    []mrkPoint `json:"controlPoints"`
	Measurements     []any      `json:"measurements"`
}

type mrkPoint struct {
	ID             string     `json:"id"`
	Label          string     `json:"label"`
	Description    string     `json:"description"`
	AssociatedNode string     `json:"associatedNodeID"`
	Position       [3]float64 `json:"position"`
	Orientation    [9]float64 `json:"orientation"`
	Selected       bool       `json:"selected"`
	Locked         bool       `json:"locked"`
	Visibility     bool       `json:"visibility"`
	PositionStatus string     `json:"positionStatus"`
}

func markups(info Info) mrkFile {
	m := mrkMarkup{Type: "Fiducial", CoordinateSystem: "LPS", CoordinateUnits: "mm", LabelFormat: "%N-%d",
		ControlPoints: []mrkPoint{}, Measurements: []any{}}
	for _, e := range info.Ears {
		for _, n := range LandmarkNames {
			lm := e.Landmarks[n]
			label := n
			if len(info.Ears) > 1 {
				label += "_" + e.Laterality
			}
			m.ControlPoints = append(m.ControlPoints, mrkPoint{
				ID: fmt.Sprint(len(m.ControlPoints) + 1), Label: label,
				Description: fmt.Sprintf("%s ear, ground truth of the phantom", e.Laterality),
				Position:    lm.PatientMM, Orientation: [9]float64{-1, 0, 0, 0, -1, 0, 0, 0, 1},
				Selected: true, Visibility: true, PositionStatus: "defined",
			})
		}
	}
	m.LastUsedIndex = len(m.ControlPoints)
	return mrkFile{Schema: "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/markups-schema-v1.0.3.json#", Markups: []mrkMarkup{m}}
}
