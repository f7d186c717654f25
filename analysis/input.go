package analysis

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/otonode/otonode/analysis/nifti"
	"github.com/otonode/otonode/analysis/nrrd"
	"github.com/otonode/otonode/analysis/series"
	"github.com/otonode/otonode/analysis/volume"
)

// Input is a CT volume ready for Analyze, with where it came from.
type Input struct {
	CT *volume.Volume[float32]
	// Format is "dicom", "nifti" or "nrrd".
	Format string
	// Files are the DICOM instances the volume was assembled from (empty
	// for the other formats); DICOM results reference them.
	Files  []string
	Layout *series.Layout
}

// LoadInput reads a CT volume from DICOM files or folders (one series), a
// NIfTI-1 file (.nii, .nii.gz) or an NRRD file (.nrrd, .nhdr). Values are
// taken as HU.
func LoadInput(ctx context.Context, paths []string) (*Input, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("%w: no input", ErrInput)
	}
	if len(paths) == 1 {
		p := strings.ToLower(paths[0])
		switch {
		case strings.HasSuffix(p, ".nii") || strings.HasSuffix(p, ".nii.gz"):
			v, _, err := nifti.ReadFile(paths[0])
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrInput, err)
			}
			return &Input{CT: v, Format: "nifti"}, nil
		case strings.HasSuffix(p, ".nrrd") || strings.HasSuffix(p, ".nhdr"):
			v, _, err := nrrd.ReadFile(paths[0])
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrInput, err)
			}
			return &Input{CT: v, Format: "nrrd"}, nil
		}
	}
	files, err := expand(paths)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no files in %v", ErrInput, paths)
	}
	v, layout, err := series.Load(ctx, files, series.Options{})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInput, err)
	}
	return &Input{CT: v, Format: "dicom", Files: files, Layout: layout}, nil
}

// expand lists the regular files under the given files and folders.
func expand(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInput, err)
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInput, err)
		}
	}
	sort.Strings(out)
	return out, nil
}
