package series

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/otonode/otonode/analysis/volume"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/frame"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// writeBigSeries writes n 512×512 signed 16-bit CT slices (0.099 mm
// isotropic, as the paper's flat-panel scans) into dir.
func writeBigSeries(b testing.TB, dir string, n int) []string {
	b.Helper()
	var paths []string
	for k := 0; k < n; k++ {
		s := baseSpec(k)
		s.Rows, s.Cols = 512, 512
		s.Spacing = [2]float64{0.099, 0.099}
		s.IPP = [3]float64{-25, -25, 0.099 * float64(k)}
		s.Pixels = make([]uint16, 512*512)
		for i := range s.Pixels {
			x, y := i%512-256, i/512-256
			v := -1000 + int(1800*math.Exp(-float64(x*x+y*y)/20000)) + (i*7919+k*31)%50
			s.Pixels[i] = uint16(int16(v + 1024)) // stored = HU + 1024
		}
		paths = append(paths, writeCT(b, dir, fmt.Sprintf("s%04d.dcm", k), s))
	}
	return paths
}

// peerLoad is what one would write with the DICOM library alone: parse
// every file fully (its native pixel decoding), sort by position along the
// normal, rescale. It does none of the checks.
func peerLoad(paths []string) (*volume.Volume[float32], error) {
	type slice struct {
		z    float64
		pix  []uint16
		a, b float64
	}
	var ss []slice
	var rows, cols int
	for _, p := range paths {
		ds, err := dicom.ParseFile(p, nil)
		if err != nil {
			return nil, err
		}
		es := elems(ds.Elements)
		pos := es.floats(tag.ImagePositionPatient)
		info := es.find(tag.PixelData).Value.GetValue().(dicom.PixelDataInfo)
		nf, ok := info.Frames[0].NativeData.(*frame.NativeFrame[uint16])
		if !ok {
			return nil, fmt.Errorf("unexpected frame type %T", info.Frames[0].NativeData)
		}
		rows, cols = es.int(tag.Rows, 0), es.int(tag.Columns, 0)
		ss = append(ss, slice{z: pos[2], pix: nf.RawData, a: es.float(tag.RescaleSlope, 1), b: es.float(tag.RescaleIntercept, 0)})
	}
	slices.SortFunc(ss, func(x, y slice) int {
		if x.z < y.z {
			return -1
		}
		return 1
	})
	v := volume.New[float32](volume.Grid{Size: [3]int{cols, rows, len(ss)}, Affine: volume.Identity})
	for k, s := range ss {
		for i, x := range s.pix {
			v.Data[k*rows*cols+i] = float32(float64(int16(x))*s.a + s.b)
		}
	}
	return v, nil
}

// BenchmarkAssemble400 loads a generated 512×512×400 series with the
// package and with the library-only peer, and reports both and the ratio.
// Run: go test -run XXX -bench Assemble400 -benchtime 3x ./analysis/series
func BenchmarkAssemble400(b *testing.B) {
	paths := writeBigSeries(b, b.TempDir(), 400)
	ctx := context.Background()
	measure := func(f func() error) time.Duration {
		runtime.GC()
		t0 := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	var scan, f32, i16, peer time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		scan += measure(func() error { _, err := Scan(ctx, paths, Options{}); return err })
		f32 += measure(func() error { _, _, err := Load(ctx, paths, Options{}); return err })
		i16 += measure(func() error {
			l, err := Scan(ctx, paths, Options{})
			if err == nil {
				_, err = Decode[int16](ctx, l)
			}
			return err
		})
		peer += measure(func() error { _, err := peerLoad(paths); return err })
	}
	n := float64(b.N)
	ms := func(d time.Duration) float64 { return float64(d.Milliseconds()) / n }
	b.ReportMetric(ms(scan), "scan-ms")
	b.ReportMetric(ms(f32), "load-f32-ms")
	b.ReportMetric(ms(i16), "load-i16-ms")
	b.ReportMetric(ms(peer), "peer-ms")
	b.ReportMetric(float64(peer)/float64(f32), "peer/load-f32")
	b.Logf("400 slices 512×512, GOMAXPROCS %d: header scan %.0f ms, load float32 %.0f ms, load int16 %.0f ms, library-only peer %.0f ms (%.1f× slower than ours)",
		runtime.GOMAXPROCS(0), ms(scan), ms(f32), ms(i16), ms(peer), float64(peer)/float64(f32))
}
