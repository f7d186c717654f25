package results

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/otonode/otonode/analysis/volume"
)

// Source holds what the writers need to know about the analysed series and
// the analysis result does not carry: the patient and study attributes to
// copy, the identity of the series and its Frame of Reference, and each
// slice's identity and position.
type Source struct {
	// Patient module.
	PatientName, PatientID, PatientBirthDate, PatientSex string
	// General Study module.
	StudyInstanceUID, StudyDate, StudyTime, ReferringPhysicianName, StudyID, AccessionNumber string

	SeriesInstanceUID          string
	FrameOfReferenceUID        string
	PositionReferenceIndicator string
	// SpecificCharacterSet of the source, for information: the values above
	// are held as UTF-8 and the writers always declare ISO_IR 192.
	SpecificCharacterSet string

	ImageOrientationPatient [6]float64
	PixelSpacing            [2]float64 // row spacing (between rows), column spacing
	SliceThickness          float64    // 0 when the source did not say
	Rows, Columns           int
	// Slices in slice order: index k of the analysis grid.
	Slices []Slice
}

// Slice is one single-frame source image.
type Slice struct {
	SOPClassUID          string
	SOPInstanceUID       string
	ImagePositionPatient [3]float64
}

// ErrSource is wrapped by every failure to describe the source series.
var ErrSource = errors.New("results: unusable source series")

// normal returns the slice normal: row direction × column direction.
func (s *Source) normal() [3]float64 {
	r := [3]float64{s.ImageOrientationPatient[0], s.ImageOrientationPatient[1], s.ImageOrientationPatient[2]}
	c := [3]float64{s.ImageOrientationPatient[3], s.ImageOrientationPatient[4], s.ImageOrientationPatient[5]}
	return cross(r, c)
}

func cross(a, b [3]float64) [3]float64 {
	return [3]float64{a[1]*b[2] - a[2]*b[1], a[2]*b[0] - a[0]*b[2], a[0]*b[1] - a[1]*b[0]}
}

func dot(a, b [3]float64) float64 { return a[0]*b[0] + a[1]*b[1] + a[2]*b[2] }

// Validate checks the facts the writers rely on.
func (s *Source) Validate() error {
	switch {
	case s.StudyInstanceUID == "" || s.SeriesInstanceUID == "":
		return fmt.Errorf("%w: study or series UID missing", ErrSource)
	case s.FrameOfReferenceUID == "":
		return fmt.Errorf("%w: FrameOfReferenceUID missing", ErrSource)
	case s.Rows <= 0 || s.Columns <= 0:
		return fmt.Errorf("%w: matrix %d x %d", ErrSource, s.Rows, s.Columns)
	case s.PixelSpacing[0] <= 0 || s.PixelSpacing[1] <= 0:
		return fmt.Errorf("%w: pixel spacing %v", ErrSource, s.PixelSpacing)
	case len(s.Slices) == 0:
		return fmt.Errorf("%w: no slices", ErrSource)
	}
	if n := s.normal(); math.Abs(dot(n, n)-1) > 1e-3 {
		return fmt.Errorf("%w: image orientation %v is not two orthonormal directions", ErrSource, s.ImageOrientationPatient)
	}
	seen := make(map[string]bool, len(s.Slices))
	for _, sl := range s.Slices {
		if sl.SOPClassUID == "" || sl.SOPInstanceUID == "" {
			return fmt.Errorf("%w: slice without SOP class or instance UID", ErrSource)
		}
		if seen[sl.SOPInstanceUID] {
			return fmt.Errorf("%w: SOP instance %s twice", ErrSource, sl.SOPInstanceUID)
		}
		seen[sl.SOPInstanceUID] = true
	}
	return nil
}

// SliceSpacing is the mean distance between neighbouring slice planes, or
// SliceThickness for a single slice.
func (s *Source) SliceSpacing() float64 {
	n := len(s.Slices)
	if n < 2 {
		return s.SliceThickness
	}
	nv := s.normal()
	d := dot(nv, s.Slices[n-1].ImagePositionPatient) - dot(nv, s.Slices[0].ImagePositionPatient)
	return math.Abs(d) / float64(n-1)
}

// ReadSource reads the headers of the files of one single-frame series (no
// pixel data) and returns its description, slices sorted along the slice
// normal. A file that the DICOM library cannot parse, or that belongs to
// another series, study or frame of reference, is an error.
func ReadSource(ctx context.Context, paths []string) (*Source, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("%w: no files", ErrSource)
	}
	var src *Source
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ds, err := parseHeader(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrSource, p, err)
		}
		h, err := sourceFromDataset(&ds)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrSource, p, err)
		}
		if src == nil {
			src = h
			continue
		}
		if err := sameSeries(src, h); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrSource, p, err)
		}
		src.Slices = append(src.Slices, h.Slices...)
	}
	nv := src.normal()
	sort.SliceStable(src.Slices, func(i, j int) bool {
		return dot(nv, src.Slices[i].ImagePositionPatient) < dot(nv, src.Slices[j].ImagePositionPatient)
	})
	if err := src.Validate(); err != nil {
		return nil, err
	}
	return src, nil
}

// maxSourceFile bounds the size of a source file read into memory.
const maxSourceFile = 1 << 30

// parseHeader parses one file without its pixel data, after checkStructure
// has vetted its lengths. The library also panics on some malformed input;
// the panic becomes an error here.
func parseHeader(path string) (ds dicom.Dataset, err error) {
	f, err := os.Open(path)
	if err != nil {
		return ds, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ds, err
	}
	if fi.Size() > maxSourceFile {
		return ds, fmt.Errorf("file of %d bytes is larger than a CT slice can be", fi.Size())
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return ds, err
	}
	if err := checkStructure(b); err != nil {
		return ds, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("DICOM parser panic: %v", r)
		}
	}()
	return dicom.Parse(bytes.NewReader(b), int64(len(b)), nil, dicom.SkipPixelData())
}

func sameSeries(a, b *Source) error {
	switch {
	case a.SeriesInstanceUID != b.SeriesInstanceUID:
		return fmt.Errorf("series %s, expected %s", b.SeriesInstanceUID, a.SeriesInstanceUID)
	case a.StudyInstanceUID != b.StudyInstanceUID:
		return fmt.Errorf("study %s, expected %s", b.StudyInstanceUID, a.StudyInstanceUID)
	case a.FrameOfReferenceUID != b.FrameOfReferenceUID:
		return fmt.Errorf("frame of reference %s, expected %s", b.FrameOfReferenceUID, a.FrameOfReferenceUID)
	case a.Rows != b.Rows || a.Columns != b.Columns:
		return fmt.Errorf("matrix %dx%d, expected %dx%d", b.Rows, b.Columns, a.Rows, a.Columns)
	}
	for i := range a.ImageOrientationPatient {
		if math.Abs(a.ImageOrientationPatient[i]-b.ImageOrientationPatient[i]) > 1e-4 {
			return fmt.Errorf("orientation %v, expected %v", b.ImageOrientationPatient, a.ImageOrientationPatient)
		}
	}
	for i := range a.PixelSpacing {
		if math.Abs(a.PixelSpacing[i]-b.PixelSpacing[i]) > 1e-4 {
			return fmt.Errorf("pixel spacing %v, expected %v", b.PixelSpacing, a.PixelSpacing)
		}
	}
	return nil
}

func sourceFromDataset(ds *dicom.Dataset) (*Source, error) {
	str := func(t tag.Tag) string {
		e, err := ds.FindElementByTag(t)
		if err != nil || e.Value == nil {
			return ""
		}
		v, ok := e.Value.GetValue().([]string)
		if !ok {
			return ""
		}
		return strings.TrimRight(strings.Join(v, `\`), " \x00")
	}
	floats := func(t tag.Tag, n int) ([]float64, error) {
		s := str(t)
		parts := strings.Split(s, `\`)
		if s == "" || len(parts) != n {
			return nil, fmt.Errorf("%v: want %d values, have %q", t, n, s)
		}
		out := make([]float64, n)
		for i, p := range parts {
			f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fmt.Errorf("%v: bad number %q", t, p)
			}
			out[i] = f
		}
		return out, nil
	}
	us := func(t tag.Tag) int {
		e, err := ds.FindElementByTag(t)
		if err != nil || e.Value == nil {
			return 0
		}
		v, ok := e.Value.GetValue().([]int)
		if !ok || len(v) == 0 {
			return 0
		}
		return v[0]
	}
	s := &Source{
		PatientName:                str(tag.PatientName),
		PatientID:                  str(tag.PatientID),
		PatientBirthDate:           str(tag.PatientBirthDate),
		PatientSex:                 str(tag.PatientSex),
		StudyInstanceUID:           str(tag.StudyInstanceUID),
		StudyDate:                  str(tag.StudyDate),
		StudyTime:                  str(tag.StudyTime),
		ReferringPhysicianName:     str(tag.ReferringPhysicianName),
		StudyID:                    str(tag.StudyID),
		AccessionNumber:            str(tag.AccessionNumber),
		SeriesInstanceUID:          str(tag.SeriesInstanceUID),
		FrameOfReferenceUID:        str(tag.FrameOfReferenceUID),
		PositionReferenceIndicator: str(tag.PositionReferenceIndicator),
		SpecificCharacterSet:       str(tag.SpecificCharacterSet),
		Rows:                       us(tag.Rows),
		Columns:                    us(tag.Columns),
	}
	if nf := str(tag.NumberOfFrames); nf != "" && nf != "1" {
		return nil, fmt.Errorf("multi-frame image (%s frames) is not supported", nf)
	}
	iop, err := floats(tag.ImageOrientationPatient, 6)
	if err != nil {
		return nil, err
	}
	copy(s.ImageOrientationPatient[:], iop)
	ps, err := floats(tag.PixelSpacing, 2)
	if err != nil {
		return nil, err
	}
	copy(s.PixelSpacing[:], ps)
	if th, err := floats(tag.SliceThickness, 1); err == nil {
		s.SliceThickness = th[0]
	}
	ipp, err := floats(tag.ImagePositionPatient, 3)
	if err != nil {
		return nil, err
	}
	sl := Slice{SOPClassUID: str(tag.SOPClassUID), SOPInstanceUID: str(tag.SOPInstanceUID)}
	copy(sl.ImagePositionPatient[:], ipp)
	s.Slices = []Slice{sl}
	return s, nil
}

// Grid returns the voxel grid of the source series: i along rows, j down
// columns, k through Slices in their order.
func (s *Source) Grid() volume.Grid {
	r := [3]float64{s.ImageOrientationPatient[0], s.ImageOrientationPatient[1], s.ImageOrientationPatient[2]}
	c := [3]float64{s.ImageOrientationPatient[3], s.ImageOrientationPatient[4], s.ImageOrientationPatient[5]}
	n := s.normal()
	sp := s.SliceSpacing()
	if sp == 0 {
		sp = 1
	}
	if len(s.Slices) > 1 && dot(n, s.Slices[len(s.Slices)-1].ImagePositionPatient) < dot(n, s.Slices[0].ImagePositionPatient) {
		n = [3]float64{-n[0], -n[1], -n[2]}
	}
	return volume.Grid{
		Size:   [3]int{s.Columns, s.Rows, len(s.Slices)},
		Affine: volume.NewAffine(r, c, n, [3]float64{s.PixelSpacing[1], s.PixelSpacing[0], sp}, s.Slices[0].ImagePositionPatient),
	}
}

// labelPlace is where a label volume lies on the source series: the
// source slice of each of its planes and the column and row of its voxel
// (0, 0) in those slices.
type labelPlace struct {
	slices      []int // label plane k → index into Source.Slices
	column, row int
}

// placeLabel finds where grid g lies on the source: each plane k of g on
// the source slice at the same position, and g's voxel (0, 0, k) on a
// pixel of that slice, the same column and row for every plane. It checks
// that g has the source's in-plane geometry. A label covers the source
// grid or a box of it (the analysed box; see analysis.Ear.Label); this
// catches a caller that hands a label of another series or a resampled
// grid.
func (s *Source) placeLabel(g volume.Grid) (labelPlace, error) {
	if g.Size[0] > s.Columns || g.Size[1] > s.Rows {
		return labelPlace{}, fmt.Errorf("%w: label grid %dx%d, source matrix %d columns x %d rows", ErrSource, g.Size[0], g.Size[1], s.Columns, s.Rows)
	}
	if g.Size[2] > len(s.Slices) {
		return labelPlace{}, fmt.Errorf("%w: label grid has %d slices, source %d", ErrSource, g.Size[2], len(s.Slices))
	}
	sp := g.Affine.Spacing()
	tol := 1e-3 * math.Max(sp[0], sp[1])
	if tol < 1e-4 {
		tol = 1e-4
	}
	rowDir, colDir := g.Affine.Direction(0), g.Affine.Direction(1)
	for a := 0; a < 3; a++ {
		if math.Abs(rowDir[a]-s.ImageOrientationPatient[a]) > 1e-4 || math.Abs(colDir[a]-s.ImageOrientationPatient[3+a]) > 1e-4 {
			return labelPlace{}, fmt.Errorf("%w: label grid orientation differs from the source's %v", ErrSource, s.ImageOrientationPatient)
		}
	}
	if math.Abs(sp[0]-s.PixelSpacing[1]) > 1e-4 || math.Abs(sp[1]-s.PixelSpacing[0]) > 1e-4 {
		return labelPlace{}, fmt.Errorf("%w: label grid spacing %v, source pixel spacing %v", ErrSource, sp, s.PixelSpacing)
	}
	// The in-plane steps of the source, along a row (next column) and
	// down a column (next row).
	var colStep, rowStep [3]float64
	for a := range 3 {
		colStep[a] = s.ImageOrientationPatient[a] * s.PixelSpacing[1]
		rowStep[a] = s.ImageOrientationPatient[3+a] * s.PixelSpacing[0]
	}
	pl := labelPlace{slices: make([]int, g.Size[2])}
	used := make([]bool, len(s.Slices))
	for k := range pl.slices {
		p := g.Affine.Apply([3]float64{0, 0, float64(k)})
		found := -1
		for i, sl := range s.Slices {
			if used[i] {
				continue
			}
			d := [3]float64{p[0] - sl.ImagePositionPatient[0], p[1] - sl.ImagePositionPatient[1], p[2] - sl.ImagePositionPatient[2]}
			c := int(math.Round(dot(d, colStep) / dot(colStep, colStep)))
			r := int(math.Round(dot(d, rowStep) / dot(rowStep, rowStep)))
			if k > 0 && (c != pl.column || r != pl.row) {
				continue
			}
			for a := range 3 {
				d[a] -= float64(c)*colStep[a] + float64(r)*rowStep[a]
			}
			if math.Sqrt(dot(d, d)) <= tol+1e-3 {
				found = i
				pl.column, pl.row = c, r
				break
			}
		}
		if found < 0 {
			return labelPlace{}, fmt.Errorf("%w: label plane %d at %v matches no source slice", ErrSource, k, p)
		}
		used[found] = true
		pl.slices[k] = found
	}
	if pl.column < 0 || pl.row < 0 || pl.column+g.Size[0] > s.Columns || pl.row+g.Size[1] > s.Rows {
		return labelPlace{}, fmt.Errorf("%w: label grid %dx%d at column %d, row %d exceeds the source matrix %d columns x %d rows",
			ErrSource, g.Size[0], g.Size[1], pl.column, pl.row, s.Columns, s.Rows)
	}
	return pl, nil
}
