package analysis

import (
	"context"
	"errors"
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
	// CT is the volume in HU. With LoadOptions.Int16 it is nil when CT16
	// holds the volume instead.
	CT *volume.Volume[float32]
	// CT16 is the volume in HU as int16, half the memory of CT (210 MB
	// instead of 420 MB for 512×512×400), when LoadOptions.Int16 asked
	// for it and every value is an integer in range, as the HU of CT
	// usually are (rescale slope 1, integer intercept).
	CT16 *volume.Volume[int16]
	// Format is "dicom", "nifti" or "nrrd".
	Format string
	// Files are the DICOM instances the volume was assembled from (empty
	// for the other formats); DICOM results reference them.
	Files  []string
	Layout *series.Layout
}

// Grid is the grid of the loaded volume (CT16's or CT's).
func (in *Input) Grid() volume.Grid {
	if in.CT16 != nil {
		return in.CT16.Grid
	}
	if in.CT != nil {
		return in.CT.Grid
	}
	return volume.Grid{}
}

// LoadInput reads a CT volume from DICOM files or folders (one series), a
// NIfTI-1 file (.nii, .nii.gz) or an NRRD file (.nrrd, .nhdr). Values are
// taken as HU.
func LoadInput(ctx context.Context, paths []string) (*Input, error) {
	return LoadInputWith(ctx, paths, LoadOptions{})
}

// LoadOptions tune LoadInputWith.
type LoadOptions struct {
	// Int16 asks for Input.CT16 instead of Input.CT. Where a value is
	// not an integer in int16's range (a fractional rescale slope, a
	// float NIfTI with fractions) the input is read again as float32
	// into Input.CT.
	Int16 bool
}

// LoadInputWith is LoadInput with options.
func LoadInputWith(ctx context.Context, paths []string, opt LoadOptions) (*Input, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("%w: no input", ErrInput)
	}
	if len(paths) == 1 {
		p := strings.ToLower(paths[0])
		switch {
		case strings.HasSuffix(p, ".nii") || strings.HasSuffix(p, ".nii.gz"):
			return loadVolume(paths[0], "nifti", opt, readNIfTI[int16], readNIfTI[float32])
		case strings.HasSuffix(p, ".nrrd") || strings.HasSuffix(p, ".nhdr"):
			return loadVolume(paths[0], "nrrd", opt, readNRRD[int16], readNRRD[float32])
		}
	}
	files, err := expand(paths)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no files in %v", ErrInput, paths)
	}
	layout, err := series.Scan(ctx, files, series.Options{})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInput, err)
	}
	in := &Input{Format: "dicom", Files: files, Layout: layout}
	if opt.Int16 {
		in.CT16, err = series.Decode[int16](ctx, layout)
		if err == nil {
			return in, nil
		}
		if series.ReasonOf(err) != series.ReasonValueOutOfRange {
			return nil, fmt.Errorf("%w: %w", ErrInput, err)
		}
	}
	if in.CT, err = series.Decode[float32](ctx, layout); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInput, err)
	}
	return in, nil
}

func readNIfTI[T volume.Scalar](path string) (*volume.Volume[T], error) {
	v, _, err := nifti.ReadFileAs[T](path)
	return v, err
}

func readNRRD[T volume.Scalar](path string) (*volume.Volume[T], error) {
	v, _, err := nrrd.ReadFileAs[T](path)
	return v, err
}

// loadVolume reads a volume file as int16 when asked and every value
// fits, else as float32.
func loadVolume(path, format string, opt LoadOptions,
	read16 func(string) (*volume.Volume[int16], error), read32 func(string) (*volume.Volume[float32], error)) (*Input, error) {
	in := &Input{Format: format}
	var err error
	if opt.Int16 {
		in.CT16, err = read16(path)
		var ve *volume.ValueError
		if err == nil {
			return in, nil
		}
		if !errors.As(err, &ve) {
			return nil, fmt.Errorf("%w: %v", ErrInput, err)
		}
	}
	if in.CT, err = read32(path); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInput, err)
	}
	return in, nil
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
