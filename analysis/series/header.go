package series

import (
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// SOP classes assembled as CT volumes.
const (
	sopCT               = "1.2.840.10008.5.1.4.1.1.2"
	sopEnhancedCT       = "1.2.840.10008.5.1.4.1.1.2.1"
	sopLegacyEnhancedCT = "1.2.840.10008.5.1.4.1.1.2.2"
)

// instance is what the header scan learned about one file.
type instance struct {
	path                         string
	ts                           string
	sopClass, sopInstance        string
	modality, seriesUID, studyUI string
	instanceNumber               int
	rows, cols                   int
	bitsAllocated, bitsStored    int
	highBit, pixelRepresentation int
	samplesPerPixel              int
	photometric                  string
	numberOfFrames               int
	gantryTilt                   float64
	padding                      *int // Pixel Padding Value, stored units
	frames                       []frameGeom
	pixel                        pixelData // where the pixels are (not for deflate)
}

// frameGeom is the geometry and rescale of one frame (one slice).
type frameGeom struct {
	ipp         [3]float64
	iop         [6]float64
	spacing     [2]float64 // Pixel Spacing: between rows, between columns
	thickness   float64
	slope       float64
	intercept   float64
	hasGeometry bool
}

// elems gives typed access to a data set or a sequence item.
type elems []*dicom.Element

func (es elems) find(t tag.Tag) *dicom.Element {
	for _, e := range es {
		if e.Tag == t {
			return e
		}
	}
	return nil
}

func (es elems) str(t tag.Tag) string {
	e := es.find(t)
	if e == nil {
		return ""
	}
	if s, ok := e.Value.GetValue().([]string); ok && len(s) > 0 {
		return strings.TrimRight(strings.TrimSpace(s[0]), "\x00")
	}
	return ""
}

// floats reads DS, IS, US/SS/UL/SL, FL/FD values alike.
func (es elems) floats(t tag.Tag) []float64 {
	e := es.find(t)
	if e == nil {
		return nil
	}
	switch v := e.Value.GetValue().(type) {
	case []string:
		out := make([]float64, 0, len(v))
		for _, s := range v {
			f, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimRight(s, "\x00")), 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return nil
			}
			out = append(out, f)
		}
		return out
	case []int:
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	case []float64:
		return v
	}
	return nil
}

func (es elems) int(t tag.Tag, def int) int {
	f := es.floats(t)
	if len(f) == 0 || f[0] != math.Trunc(f[0]) || math.Abs(f[0]) > math.MaxInt32 {
		return def
	}
	return int(f[0])
}

func (es elems) float(t tag.Tag, def float64) float64 {
	if f := es.floats(t); len(f) > 0 {
		return f[0]
	}
	return def
}

func (es elems) items(t tag.Tag) []elems {
	e := es.find(t)
	if e == nil {
		return nil
	}
	seq, ok := e.Value.GetValue().([]*dicom.SequenceItemValue)
	if !ok {
		return nil
	}
	out := make([]elems, len(seq))
	for i, it := range seq {
		out[i], _ = it.GetValue().([]*dicom.Element)
	}
	return out
}

// first returns the first item of a sequence inside any of the given
// functional-group items, searched in order (per-frame before shared).
func first(groups []elems, seq tag.Tag) elems {
	for _, g := range groups {
		if g == nil {
			continue
		}
		if it := g.items(seq); len(it) > 0 {
			return it[0]
		}
	}
	return nil
}

// parseSafely runs the DICOM library under recover(): it panics on some
// malformed input, and a bad file must be refused, not crash the node.
// With limit > 0 only the first limit bytes of the file are parsed.
func parseSafely(path string, limit int64, opts ...dicom.ParseOption) (ds dicom.Dataset, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("DICOM parser panic: %v", r)
		}
	}()
	if limit <= 0 {
		return dicom.ParseFile(path, nil, opts...)
	}
	f, err := os.Open(path)
	if err != nil {
		return dicom.Dataset{}, err
	}
	defer f.Close()
	return dicom.Parse(io.LimitReader(f, limit), limit, nil, opts...)
}

// scanHeader reads one file without its pixel data.
func scanHeader(path string, maxBytes int64) (*instance, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{Reason: ReasonUnreadable, Path: path, Err: err}
	}
	st, err := f.Stat()
	if err == nil && st.Size() > maxBytes {
		f.Close()
		return nil, refuse(ReasonUnreadable, path, "file of %d bytes exceeds the limit of %d", st.Size(), maxBytes)
	}
	ts, err := readTransferSyntax(f)
	f.Close()
	if err != nil && err != errNoMeta {
		return nil, &Error{Reason: ReasonUnreadable, Path: path, Detail: "file meta", Err: err}
	}
	if ts != "" {
		if ok, why := syntaxSupport(ts); !ok {
			return nil, refuse(ReasonUnsupportedSyntax, path, "%s", why)
		}
	}
	pixel, err := checkLengths(path, ts)
	if err != nil {
		return nil, &Error{Reason: ReasonUnreadable, Path: path, Detail: "element lengths", Err: err}
	}
	// The header ends where Pixel Data starts: the library need not see
	// the pixels at all (nothing the scan needs comes after them).
	ds, err := parseSafely(path, pixel.tagOffset, dicom.SkipPixelData(), dicom.AllowMissingMetaElementGroupLength(), dicom.AllowUnknownSpecificCharacterSet())
	if err != nil {
		return nil, &Error{Reason: ReasonUnreadable, Path: path, Err: err}
	}
	es := elems(ds.Elements)
	if ts == "" {
		ts = es.str(tag.TransferSyntaxUID)
		if ts == "" {
			ts = tsImplicitLE // no meta: the library inferred a little-endian syntax
		}
	}
	in := &instance{
		path:                path,
		ts:                  ts,
		sopClass:            es.str(tag.SOPClassUID),
		sopInstance:         es.str(tag.SOPInstanceUID),
		modality:            es.str(tag.Modality),
		seriesUID:           es.str(tag.SeriesInstanceUID),
		studyUI:             es.str(tag.StudyInstanceUID),
		instanceNumber:      es.int(tag.InstanceNumber, 0),
		rows:                es.int(tag.Rows, 0),
		cols:                es.int(tag.Columns, 0),
		bitsAllocated:       es.int(tag.BitsAllocated, 0),
		bitsStored:          es.int(tag.BitsStored, 0),
		highBit:             es.int(tag.HighBit, -1),
		pixelRepresentation: es.int(tag.PixelRepresentation, 0),
		samplesPerPixel:     es.int(tag.SamplesPerPixel, 1),
		photometric:         es.str(tag.PhotometricInterpretation),
		numberOfFrames:      es.int(tag.NumberOfFrames, 1),
		gantryTilt:          es.float(tag.GantryDetectorTilt, 0),
		pixel:               pixel,
	}
	if in.sopClass == "" {
		in.sopClass = es.str(tag.MediaStorageSOPClassUID)
	}
	if p := es.floats(tag.PixelPaddingValue); len(p) > 0 {
		// Read as US in implicit VR (the dictionary's first VR); the
		// value follows Pixel Representation (PS3.3 C.7.5.1.1.2).
		v := int(p[0])
		if es.int(tag.PixelRepresentation, 0) == 1 && v > math.MaxInt16 {
			v -= 1 << 16
		}
		in.padding = &v
	}
	switch in.sopClass {
	case sopCT, sopEnhancedCT, sopLegacyEnhancedCT:
	default:
		return nil, refuse(ReasonNotCT, path, "SOP Class UID %q is not a CT image", in.sopClass)
	}
	if in.modality != "" && in.modality != "CT" {
		return nil, refuse(ReasonNotCT, path, "Modality is %q", in.modality)
	}
	if in.numberOfFrames < 1 || in.numberOfFrames > 1<<16 {
		return nil, refuse(ReasonUnreadable, path, "Number of Frames %d", in.numberOfFrames)
	}
	if err := in.checkPixelFormat(); err != nil {
		return nil, err
	}
	if in.sopClass == sopCT {
		in.frames = []frameGeom{frameOf(es, nil)}
		if in.numberOfFrames != 1 {
			return nil, refuse(ReasonUnsupportedPixels, path, "CT Image with %d frames", in.numberOfFrames)
		}
	} else {
		shared := first([]elems{es}, tag.SharedFunctionalGroupsSequence)
		perFrame := es.items(tag.PerFrameFunctionalGroupsSequence)
		if len(perFrame) != in.numberOfFrames {
			return nil, refuse(ReasonMissingGeometry, path, "%d per-frame functional group items for %d frames", len(perFrame), in.numberOfFrames)
		}
		in.frames = make([]frameGeom, in.numberOfFrames)
		for i, pf := range perFrame {
			in.frames[i] = frameOf(es, []elems{pf, shared})
		}
	}
	for i, fg := range in.frames {
		if !fg.hasGeometry {
			return nil, refuse(ReasonMissingGeometry, path, "frame %d lacks Image Position/Orientation (Patient) or Pixel Spacing", i+1)
		}
	}
	return in, nil
}

// frameOf collects geometry and rescale either from the top level (classic
// CT) or from functional groups (enhanced CT), falling back to the top level.
func frameOf(top elems, groups []elems) frameGeom {
	fg := frameGeom{slope: 1}
	src := func(seq tag.Tag) elems {
		if groups == nil {
			return top
		}
		if it := first(groups, seq); it != nil {
			return it
		}
		return top
	}
	pos := src(tag.PlanePositionSequence).floats(tag.ImagePositionPatient)
	ori := src(tag.PlaneOrientationSequence).floats(tag.ImageOrientationPatient)
	meas := src(tag.PixelMeasuresSequence)
	sp := meas.floats(tag.PixelSpacing)
	fg.thickness = meas.float(tag.SliceThickness, 0)
	resc := src(tag.PixelValueTransformationSequence)
	fg.slope = resc.float(tag.RescaleSlope, 1)
	fg.intercept = resc.float(tag.RescaleIntercept, 0)
	if len(pos) == 3 && len(ori) == 6 && len(sp) == 2 && sp[0] > 0 && sp[1] > 0 {
		copy(fg.ipp[:], pos)
		copy(fg.iop[:], ori)
		copy(fg.spacing[:], sp)
		fg.hasGeometry = true
	}
	return fg
}

func (in *instance) checkPixelFormat() error {
	if in.rows <= 0 || in.cols <= 0 || in.rows > 1<<14 || in.cols > 1<<14 {
		return refuse(ReasonUnsupportedPixels, in.path, "Rows×Columns %d×%d", in.rows, in.cols)
	}
	if in.samplesPerPixel != 1 || (in.photometric != "MONOCHROME2" && in.photometric != "MONOCHROME1") {
		return refuse(ReasonUnsupportedPixels, in.path, "%d samples per pixel, %q: CT must be monochrome", in.samplesPerPixel, in.photometric)
	}
	if in.bitsAllocated != 8 && in.bitsAllocated != 16 {
		return refuse(ReasonUnsupportedPixels, in.path, "Bits Allocated %d (8 or 16 supported)", in.bitsAllocated)
	}
	if in.bitsStored == 0 {
		in.bitsStored = in.bitsAllocated
	}
	if in.highBit < 0 {
		in.highBit = in.bitsStored - 1
	}
	if in.bitsStored < 1 || in.bitsStored > in.bitsAllocated || in.highBit < in.bitsStored-1 || in.highBit >= in.bitsAllocated {
		return refuse(ReasonUnsupportedPixels, in.path, "Bits Stored %d, High Bit %d, Bits Allocated %d", in.bitsStored, in.highBit, in.bitsAllocated)
	}
	if in.pixelRepresentation != 0 && in.pixelRepresentation != 1 {
		return refuse(ReasonUnsupportedPixels, in.path, "Pixel Representation %d", in.pixelRepresentation)
	}
	return nil
}
