package results

import (
	"testing"
	"time"

	"github.com/otonode/otonode/analysis"
	"github.com/otonode/otonode/analysis/volume"
)

// BenchmarkSEG writes the SEG of a 512 x 512 x 400 series whose segment
// spans every slice: the largest SEG the issue expects (~13 MB).
// Run with: go test -run '^$' -bench SEG ./results
func BenchmarkSEG(b *testing.B) {
	const rows, cols, slices = 512, 512, 400
	src := &Source{
		StudyInstanceUID: "1.2.3", SeriesInstanceUID: "1.2.3.4", FrameOfReferenceUID: "1.2.3.5",
		ImageOrientationPatient: axial, PixelSpacing: [2]float64{0.3, 0.3}, SliceThickness: 0.3,
		Rows: rows, Columns: cols,
	}
	uids := HashUIDs{Seed: "bench"}
	for k := 0; k < slices; k++ {
		src.Slices = append(src.Slices, Slice{SOPClassUID: ctImageStorage, SOPInstanceUID: uids.UID(itoa(k)), ImagePositionPatient: [3]float64{0, 0, 0.3 * float64(k)}})
	}
	lab := volume.New[uint8](src.Grid())
	for i := range lab.Data {
		if i%7 == 0 {
			lab.Data[i] = 1
		}
	}
	res := &analysis.Result{Status: "done", Model: analysis.Model{Name: "bench", Version: "1"},
		Ears: []analysis.Ear{{Laterality: analysis.Right, Label: lab}}}
	w := &Writer{UIDs: uids, Now: time.Unix(0, 0)}
	b.SetBytes(int64(rows * cols * slices))
	b.ResetTimer()
	var size int
	for b.Loop() {
		seg, err := w.SEG(src, res)
		if err != nil {
			b.Fatal(err)
		}
		size = len(seg.File)
	}
	b.ReportMetric(float64(size)/1e6, "MB/file")
}
