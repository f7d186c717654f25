package series

import (
	"errors"
	"fmt"
)

// Reason names why a series cannot be assembled. The values are stable
// strings: they go into reports, logs and DICOM status comments.
type Reason string

const (
	ReasonNoInstances       Reason = "no-instances"
	ReasonUnreadable        Reason = "unreadable"          // not DICOM, truncated, parser failure
	ReasonNotCT             Reason = "not-ct"              // SOP class or modality is not CT
	ReasonMixedSeries       Reason = "mixed-series"        // more than one Series Instance UID
	ReasonMissingGeometry   Reason = "missing-geometry"    // no position, orientation or spacing
	ReasonMixedOrientation  Reason = "mixed-orientation"   // Image Orientation (Patient) differs
	ReasonMixedPixelSpacing Reason = "mixed-pixel-spacing" // Pixel Spacing differs
	ReasonMixedMatrix       Reason = "mixed-matrix"        // Rows, Columns or pixel format differ
	ReasonDuplicateSlices   Reason = "duplicate-slices"    // two slices at one position
	ReasonMissingSlices     Reason = "missing-slices"      // gaps that are whole multiples of the step
	ReasonNonUniformSpacing Reason = "non-uniform-spacing" // steps differ beyond the tolerance
	ReasonGantryTilt        Reason = "gantry-tilt"         // tilted stack refused by policy or too steep
	ReasonTooFewSlices      Reason = "too-few-slices"      // fewer than Options.MinSlices
	ReasonUnsupportedSyntax Reason = "unsupported-transfer-syntax"
	ReasonUnsupportedPixels Reason = "unsupported-pixel-format" // colour, BitsAllocated not 8/16, …
	ReasonCorruptPixelData  Reason = "corrupt-pixel-data"
	ReasonValueOutOfRange   Reason = "value-out-of-range" // rescaled values do not fit the output type
)

// Error is returned for every refusal; match it with errors.As and look at
// Reason, or use errors.Is(err, ReasonX).
type Error struct {
	Reason Reason
	Path   string // the instance concerned, when one is
	Detail string
	Err    error // underlying cause, if any
}

func (e *Error) Error() string {
	s := "series: " + string(e.Reason)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Path != "" {
		s += " (" + e.Path + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, series.ReasonGantryTilt) work.
func (e *Error) Is(target error) bool {
	r, ok := target.(Reason)
	return ok && r == e.Reason
}

// Error lets a Reason be used as an errors.Is target.
func (r Reason) Error() string { return string(r) }

func refuse(r Reason, path, format string, args ...any) *Error {
	return &Error{Reason: r, Path: path, Detail: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the reason of a refusal, or "" for other errors.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}
