// Package series assembles a CT volume from the DICOM instances of one
// series: a header scan without pixel data, a sort along the slice normal,
// geometry checks that refuse with a named Reason, then pixel decoding and
// rescaling to Hounsfield units.
//
// What is accepted:
//   - CT Image Storage (one file per slice), Enhanced CT and Legacy
//     Converted Enhanced CT (multi-frame, geometry and rescale from the
//     per-frame or shared functional groups); several files may be mixed
//     as long as they belong to one series.
//   - Transfer syntaxes: implicit/explicit little endian, explicit big
//     endian, deflate, JPEG lossless (.57, .70) and RLE. JPEG-LS, JPEG 2000,
//     HTJ2K and lossy JPEG are refused with ReasonUnsupportedSyntax and a
//     sentence saying how to transcode.
//   - Monochrome 8- or 16-bit pixels, signed or unsigned, any Bits Stored
//     (values are masked at High Bit and sign-extended).
//
// Geometry: voxel (i, j, k) is column i, row j of the k-th slice in
// ascending order along the slice normal (row × column direction). The
// affine's k column is the measured step between slices. A gantry-tilted
// stack (step not along the normal) is kept as a sheared but exact grid
// by default (TiltShear), up to MaxTiltDeg; TiltRefuse refuses it.
//
// The DICOM library (suyashkumar/dicom) runs under recover(): malformed
// files are refused with ReasonUnreadable, never a crash. It parses the
// headers only, up to Pixel Data: the package's own walk of each file's
// element lengths (which refuses lengths past the end of the file) notes
// where the pixel value or its fragments lie, and Decode reads them from
// there straight into the volume, one frame at a time through per-worker
// buffers. Loading a series therefore takes little more memory than the
// volume itself (413 MiB for a 512×512×400 float32 volume, see
// TestLoadBench). Deflated files are the exception: the library inflates
// and parses them whole.
package series

import (
	"context"
	"runtime"
	"slices"
	"sync"
)

// TiltPolicy says what to do with a gantry-tilted stack.
type TiltPolicy int

const (
	// TiltShear keeps the acquired slices on a sheared grid (no resampling).
	TiltShear TiltPolicy = iota
	// TiltRefuse refuses any stack tilted beyond TiltToleranceDeg.
	TiltRefuse
)

func (p TiltPolicy) String() string {
	if p == TiltRefuse {
		return "refuse"
	}
	return "shear"
}

// Options tune the checks. Zero fields take the documented defaults.
type Options struct {
	MinSlices               int        // default 3
	SpacingTolerance        float64    // relative deviation of a slice step, default 0.02 (2 %)
	OrientationToleranceDeg float64    // default 0.5°
	TiltToleranceDeg        float64    // below this a stack counts as untilted, default 0.1°
	MaxTiltDeg              float64    // steepest tilt accepted with TiltShear, default 30°
	Tilt                    TiltPolicy // default TiltShear
	Workers                 int        // parallel file reads, default GOMAXPROCS
	MaxFileBytes            int64      // larger files are refused, default 4 GiB
	MaxVoxels               int        // larger volumes are refused, default 2^30
}

func (o Options) withDefaults() Options {
	if o.MinSlices <= 0 {
		o.MinSlices = 3
	}
	if o.MinSlices < 2 {
		o.MinSlices = 2 // one slice has no spacing
	}
	if o.SpacingTolerance <= 0 {
		o.SpacingTolerance = 0.02
	}
	if o.OrientationToleranceDeg <= 0 {
		o.OrientationToleranceDeg = 0.5
	}
	if o.TiltToleranceDeg <= 0 {
		o.TiltToleranceDeg = 0.1
	}
	if o.MaxTiltDeg <= 0 {
		o.MaxTiltDeg = 30
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.MaxVoxels <= 0 {
		o.MaxVoxels = 1 << 30
	}
	if o.MaxFileBytes <= 0 {
		o.MaxFileBytes = 4 << 30
	}
	return o
}

// Scan reads the headers of the given files (no pixel data) and checks
// that they form one regular CT stack.
func Scan(ctx context.Context, paths []string, opts Options) (*Layout, error) {
	o := opts.withDefaults()
	paths = slices.Compact(slices.Sorted(slices.Values(paths)))
	if len(paths) == 0 {
		return nil, refuse(ReasonNoInstances, "", "no files given")
	}
	ins := make([]*instance, len(paths))
	err := forEach(ctx, len(paths), o.Workers, func(i int) error {
		in, err := scanHeader(paths[i], o.MaxFileBytes)
		ins[i] = in
		return err
	})
	if err != nil {
		return nil, err
	}
	l, err := layout(ins, o)
	if err != nil {
		return nil, err
	}
	l.workers = o.Workers
	return l, nil
}

// forEach runs f(0..n-1) on up to workers goroutines and returns the error
// of the lowest index that failed, so refusals do not depend on scheduling.
func forEach(ctx context.Context, n, workers int, f func(i int) error) error {
	return forEachWorker(ctx, n, workers, func(_, i int) error { return f(i) })
}

// forEachWorker is forEach that also tells f which worker (0..workers-1)
// runs it, so that each worker can reuse its own buffers.
func forEachWorker(ctx context.Context, n, workers int, f func(w, i int) error) error {
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = f(w, i)
			}
		}()
	}
	var ctxErr error
feed:
	for i := 0; i < n; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
			ctxErr = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	if ctxErr != nil {
		return ctxErr
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
