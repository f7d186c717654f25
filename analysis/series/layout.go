package series

import (
	"math"
	"slices"
	"sort"

	"github.com/otonode/otonode/analysis/volume"
)

// Slice is one plane of the assembled volume: index k of the grid.
type Slice struct {
	Path           string
	Frame          int // 0-based frame within the file (0 for single-frame CT)
	SOPInstanceUID string
	InstanceNumber int
	Position       [3]float64 // Image Position (Patient), mm LPS
	RescaleSlope   float64
	RescaleInter   float64
}

// Layout is the outcome of the header scan: the grid and, for every k,
// where its pixels are. It holds no pixel data.
type Layout struct {
	Grid              volume.Grid
	Slices            []Slice
	SeriesInstanceUID string
	StudyInstanceUID  string
	SOPClassUID       string
	SliceThickness    float64 // as stated by the instances (0 if absent)
	// TiltDegrees is the angle between the slice step and the slice
	// normal. A tilted stack is kept as it was acquired: the affine's k
	// column is the true step, so the grid is sheared but exact (no
	// interpolation at load time; the crop resampling absorbs it).
	TiltDegrees float64
	// PixelPadding says that voxels equal to PixelPaddingHU are not image
	// (the area outside the reconstruction circle, say): analyses should
	// leave them out of intensity statistics. Taken from the first
	// instance's Pixel Padding Value, rescaled like the pixels.
	PixelPadding   bool
	PixelPaddingHU float64

	instances map[string]*instance
	workers   int
}

type sliceRef struct {
	in    *instance
	frame int
	s     float64 // position along the slice normal
}

func dot3(a, b [3]float64) float64 { return a[0]*b[0] + a[1]*b[1] + a[2]*b[2] }
func sub3(a, b [3]float64) [3]float64 {
	return [3]float64{a[0] - b[0], a[1] - b[1], a[2] - b[2]}
}
func scale3(a [3]float64, s float64) [3]float64 { return [3]float64{a[0] * s, a[1] * s, a[2] * s} }
func norm3(a [3]float64) float64                { return math.Sqrt(dot3(a, a)) }
func cross3(a, b [3]float64) [3]float64 {
	return [3]float64{a[1]*b[2] - a[2]*b[1], a[2]*b[0] - a[0]*b[2], a[0]*b[1] - a[1]*b[0]}
}

func angleDeg(a, b [3]float64) float64 {
	c := dot3(a, b) / (norm3(a) * norm3(b))
	return math.Acos(math.Max(-1, math.Min(1, c))) * 180 / math.Pi
}

// layout checks that the instances form one regular stack and builds the grid.
func layout(ins []*instance, o Options) (*Layout, error) {
	if len(ins) == 0 {
		return nil, refuse(ReasonNoInstances, "", "no instances given")
	}
	ref := ins[0]
	var refs []sliceRef
	for _, in := range ins {
		if in.seriesUID != ref.seriesUID {
			return nil, refuse(ReasonMixedSeries, in.path, "Series Instance UID %s differs from %s", in.seriesUID, ref.seriesUID)
		}
		if in.rows != ref.rows || in.cols != ref.cols {
			return nil, refuse(ReasonMixedMatrix, in.path, "%d×%d pixels, others have %d×%d", in.cols, in.rows, ref.cols, ref.rows)
		}
		for f := range in.frames {
			refs = append(refs, sliceRef{in: in, frame: f})
		}
	}
	g0 := ref.frames[0]
	row := [3]float64{g0.iop[0], g0.iop[1], g0.iop[2]}
	col := [3]float64{g0.iop[3], g0.iop[4], g0.iop[5]}
	if nr, nc := norm3(row), norm3(col); nr < 0.5 || nc < 0.5 || math.Abs(dot3(row, col)/(nr*nc)) > 0.01 {
		return nil, refuse(ReasonMissingGeometry, ref.path, "Image Orientation (Patient) %v is not two orthogonal directions", g0.iop)
	}
	row, col = scale3(row, 1/norm3(row)), scale3(col, 1/norm3(col))
	normal := cross3(row, col)
	normal = scale3(normal, 1/norm3(normal))

	for i := range refs {
		r := &refs[i]
		g := r.in.frames[r.frame]
		rw := [3]float64{g.iop[0], g.iop[1], g.iop[2]}
		cl := [3]float64{g.iop[3], g.iop[4], g.iop[5]}
		if a, b := angleDeg(rw, row), angleDeg(cl, col); a > o.OrientationToleranceDeg || b > o.OrientationToleranceDeg {
			return nil, refuse(ReasonMixedOrientation, r.in.path, "frame %d is turned by %.2f° (rows) and %.2f° (columns) against the first instance", r.frame+1, a, b)
		}
		for c := 0; c < 2; c++ {
			if math.Abs(g.spacing[c]-g0.spacing[c]) > 1e-3*g0.spacing[c] {
				return nil, refuse(ReasonMixedPixelSpacing, r.in.path, "Pixel Spacing %v, first instance has %v", g.spacing, g0.spacing)
			}
		}
		r.s = dot3(g.ipp, normal)
	}
	if n := ref.rows * ref.cols * len(refs); n > o.MaxVoxels {
		return nil, refuse(ReasonUnsupportedPixels, "", "%d×%d×%d voxels exceed the limit of %d", ref.cols, ref.rows, len(refs), o.MaxVoxels)
	}
	if len(refs) < o.MinSlices {
		return nil, refuse(ReasonTooFewSlices, "", "%d slices, at least %d needed", len(refs), o.MinSlices)
	}
	sort.SliceStable(refs, func(a, b int) bool { return refs[a].s < refs[b].s })

	steps := make([]float64, len(refs)-1)
	for i := range steps {
		steps[i] = refs[i+1].s - refs[i].s
	}
	sorted := slices.Clone(steps)
	slices.Sort(sorted)
	nominal := sorted[len(sorted)/2]
	minPixel := math.Min(g0.spacing[0], g0.spacing[1])
	for i, d := range steps {
		if d < 1e-3*minPixel {
			return nil, refuse(ReasonDuplicateSlices, refs[i+1].in.path, "two slices at %.4f mm along the normal", refs[i].s)
		}
	}
	tol := o.SpacingTolerance * nominal
	var missing int
	irregular := -1
	for i, d := range steps {
		if math.Abs(d-nominal) <= tol {
			continue
		}
		m := math.Round(d / nominal)
		if m >= 2 && math.Abs(d-m*nominal) <= tol*m {
			missing += int(m) - 1
			continue
		}
		irregular = i
		break
	}
	if irregular >= 0 {
		return nil, refuse(ReasonNonUniformSpacing, refs[irregular+1].in.path,
			"step of %.4f mm where most are %.4f mm (tolerance %.1f%%)", steps[irregular], nominal, 100*o.SpacingTolerance)
	}
	if missing > 0 {
		return nil, refuse(ReasonMissingSlices, "", "%d slices missing from a stack of %.4f mm steps", missing, nominal)
	}

	// The step vector between consecutive slices, from the whole stack.
	p0 := refs[0].in.frames[refs[0].frame].ipp
	last := refs[len(refs)-1].in.frames[refs[len(refs)-1].frame].ipp
	step := scale3(sub3(last, p0), 1/float64(len(refs)-1))
	along := dot3(step, normal)
	inPlane := sub3(step, scale3(normal, along))
	tilt := math.Atan2(norm3(inPlane), along) * 180 / math.Pi
	// Every slice must sit on the line first + k·step, within a tenth of a
	// pixel across the plane and the spacing tolerance along the normal.
	for k, r := range refs {
		p := r.in.frames[r.frame].ipp
		d := sub3(p, sub3(p0, scale3(step, -float64(k))))
		dn := dot3(d, normal)
		dp := norm3(sub3(d, scale3(normal, dn)))
		if dp > 0.1*minPixel+1e-4 || math.Abs(dn) > tol+1e-4 {
			return nil, refuse(ReasonNonUniformSpacing, r.in.path,
				"slice %d is %.3f mm off the line through the stack", k, math.Hypot(dn, dp))
		}
	}
	sliceCol := scale3(normal, along)
	if tilt > o.TiltToleranceDeg {
		if o.Tilt == TiltRefuse || tilt > o.MaxTiltDeg {
			return nil, refuse(ReasonGantryTilt, "", "slices are stacked %.2f° off their normal (policy %s, limit %.1f°)", tilt, o.Tilt, o.MaxTiltDeg)
		}
		sliceCol = step
	} else {
		tilt = 0
	}

	var a volume.Affine
	for r := 0; r < 3; r++ {
		a[r][0] = row[r] * g0.spacing[1] // Pixel Spacing[1] is between columns
		a[r][1] = col[r] * g0.spacing[0] // Pixel Spacing[0] is between rows
		a[r][2] = sliceCol[r]
		a[r][3] = p0[r]
	}
	l := &Layout{
		Grid:              volume.Grid{Size: [3]int{ref.cols, ref.rows, len(refs)}, Affine: a},
		SeriesInstanceUID: ref.seriesUID,
		StudyInstanceUID:  ref.studyUI,
		SOPClassUID:       ref.sopClass,
		SliceThickness:    g0.thickness,
		TiltDegrees:       tilt,
		PixelPadding:      ref.padding != nil,
		instances:         make(map[string]*instance, len(ins)),
	}
	if ref.padding != nil {
		l.PixelPaddingHU = float64(*ref.padding)*g0.slope + g0.intercept
	}
	for _, in := range ins {
		l.instances[in.path] = in
	}
	l.Slices = make([]Slice, len(refs))
	for k, r := range refs {
		g := r.in.frames[r.frame]
		l.Slices[k] = Slice{
			Path: r.in.path, Frame: r.frame, SOPInstanceUID: r.in.sopInstance,
			InstanceNumber: r.in.instanceNumber, Position: g.ipp,
			RescaleSlope: g.slope, RescaleInter: g.intercept,
		}
	}
	return l, nil
}
