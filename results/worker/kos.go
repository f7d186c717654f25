package worker

import (
	"context"

	"github.com/otonode/otonode/analysis"
	"github.com/otonode/otonode/results"
	"github.com/otonode/otonode/scp/events"
	"github.com/otonode/otonode/store/index"
)

// keyObjects makes the Key Object Selection documents that go with the
// results: none yet (the KOS writer is being added to package results).
func (w *Worker) keyObjects(ctx context.Context, job events.SeriesComplete, src *results.Source, res *analysis.Result,
	seg *results.SEG, sr *results.SR, base index.ResultObject, rw *results.Writer) ([]object, error) {
	return nil, nil
}
