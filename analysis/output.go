package analysis

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/otonode/otonode/analysis/nifti"
	"github.com/otonode/otonode/analysis/volume"
)

// Report is the JSON document an offline analysis writes: the result plus
// what was analysed and where the other outputs are.
type Report struct {
	Input  ReportInput       `json:"input"`
	Result *Result           `json:"result"`
	Files  map[string]string `json:"files"` // role → file name in the output folder
}

// ReportInput describes the analysed volume.
type ReportInput struct {
	Format            string     `json:"format"`
	Files             int        `json:"files,omitempty"`
	SeriesInstanceUID string     `json:"series_instance_uid,omitempty"`
	Size              [3]int     `json:"size"`
	SpacingMM         [3]float64 `json:"spacing_mm"`
}

// WriteOutputs writes into dir: segmentation.nii.gz (all ears, 1 = inner
// ear, on the source grid), uncertainty-<side>.nii.gz per ear (on the model
// grid), preview-<side>.png per ear, and report.json. It returns the report.
// <side> is right, left or ear<n>, with the ear's number appended when two
// ears have the same side (see earNames).
func WriteOutputs(dir string, in *Input, res *Result) (*Report, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("analysis: output folder: %w", err)
	}
	rep := &Report{
		Input: ReportInput{
			Format:    in.Format,
			Files:     len(in.Files),
			Size:      in.Grid().Size,
			SpacingMM: in.Grid().Affine.Spacing(),
		},
		Result: res,
		Files:  map[string]string{},
	}
	if in.Layout != nil {
		rep.Input.SeriesInstanceUID = in.Layout.SeriesInstanceUID
	}
	desc := "otonode " + res.Model.Name
	if res.Model.NotForDiagnosis {
		desc += " NOT FOR DIAGNOSTIC USE"
	}
	if len(res.Ears) > 0 {
		seg := volume.New[uint8](in.Grid())
		for _, e := range res.Ears {
			if err := pasteNonZero(seg, e.Label); err != nil {
				return nil, fmt.Errorf("analysis: %s ear's label: %w", e.Laterality, err)
			}
		}
		if err := nifti.WriteFile(filepath.Join(dir, "segmentation.nii.gz"), seg, nifti.Options{Description: desc}); err != nil {
			return nil, err
		}
		rep.Files["segmentation"] = "segmentation.nii.gz"
	}
	names := earNames(res.Ears)
	for n, e := range res.Ears {
		side := names[n]
		if e.UncertaintyMap != nil {
			name := "uncertainty-" + side + ".nii.gz"
			if err := nifti.WriteFile(filepath.Join(dir, name), e.UncertaintyMap, nifti.Options{Description: desc}); err != nil {
				return nil, err
			}
			rep.Files["uncertainty-"+side] = name
		}
		name := "preview-" + side + ".png"
		var err error
		if in.CT16 != nil {
			err = writePreview(filepath.Join(dir, name), in.CT16, e)
		} else {
			err = writePreview(filepath.Join(dir, name), in.CT, e)
		}
		if err != nil {
			return nil, err
		}
		rep.Files["preview-"+side] = name
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("analysis: report: %w", err)
	}
	rep.Files["report"] = "report.json"
	return rep, nil
}

// pasteNonZero sets to 1 the voxels of dst where label, a sub-grid of
// dst's grid, is not zero.
func pasteNonZero(dst, label *volume.Volume[uint8]) error {
	if label == nil {
		return nil
	}
	b, ok := label.BoxIn(dst.Grid)
	if !ok {
		return fmt.Errorf("label grid %v is not on the source grid %v", label.Size, dst.Size)
	}
	n := label.Size[0]
	for k := range label.Size[2] {
		for j := range label.Size[1] {
			row := dst.Data[dst.Index(b.Min[0], b.Min[1]+j, b.Min[2]+k):][:n]
			for i, v := range label.Data[label.Index(0, j, k):][:n] {
				if v != 0 {
					row[i] = 1
				}
			}
		}
	}
	return nil
}

// earName is "right", "left" or "ear<n>" when the side is unknown.
func earName(e Ear, n int) string {
	switch e.Laterality {
	case Right:
		return "right"
	case Left:
		return "left"
	}
	return fmt.Sprintf("ear%d", n+1)
}

// earNames are the ears' names in file names: earName, with the ear's
// number appended where two ears would share a name (both of one side), so
// that no ear's files overwrite another's.
func earNames(ears []Ear) []string {
	names := make([]string, len(ears))
	count := map[string]int{}
	for n, e := range ears {
		names[n] = earName(e, n)
		count[names[n]]++
	}
	for n, name := range names {
		if count[name] > 1 {
			names[n] = fmt.Sprintf("%s%d", name, n+1)
		}
	}
	return names
}

// Summary is one line per ear for a terminal.
func (r *Result) Summary() string {
	if r.Status != StatusDone {
		return fmt.Sprintf("%s: %s", r.Status, r.Reason)
	}
	var b strings.Builder
	for n, e := range r.Ears {
		fmt.Fprintf(&b, "%s: volume %.1f mm³, uncertainty %.3g", earName(e, n), e.VolumeMM3, e.Uncertainty)
		if e.Flag.Raised {
			fmt.Fprintf(&b, ", FLAGGED (%s)", e.Flag.Reason)
		}
		for _, l := range e.Landmarks {
			fmt.Fprintf(&b, "; %s (%.1f, %.1f, %.1f) mm", l.Name, l.PatientMM[0], l.PatientMM[1], l.PatientMM[2])
		}
		b.WriteByte('\n')
	}
	return strings.TrimSuffix(b.String(), "\n")
}
