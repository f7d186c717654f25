package worker

import (
	"context"
	"fmt"

	"github.com/otonode/otonode/analysis"
	"github.com/otonode/otonode/results"
	"github.com/otonode/otonode/store/index"
)

// superseded returns the SEG and SR of earlier revisions of the series
// that reached the node: the new SR names the SRs as replaced, and a
// rejection note (IOCM) asks PACS to hide all of them.
func (w *Worker) superseded(ctx context.Context, series string, revision int) ([]results.Reference, error) {
	old, err := w.Index.SupersededResults(ctx, series, revision)
	if err != nil {
		return nil, err
	}
	refs := make([]results.Reference, 0, len(old))
	for _, o := range old {
		refs = append(refs, results.Reference{StudyInstanceUID: o.StudyInstanceUID, SeriesInstanceUID: o.ResultSeriesUID,
			SOPClassUID: o.SOPClassUID, SOPInstanceUID: o.SOPInstanceUID})
	}
	return refs, nil
}

// srsOf keeps the SR references.
func srsOf(refs []results.Reference) []results.Reference {
	var out []results.Reference
	for _, r := range refs {
		if r.SOPClassUID == results.Comprehensive3DSRStorage {
			out = append(out, r)
		}
	}
	return out
}

// keyObjects makes the Key Object Selection documents that go with the
// results: "For Peer Review" when an ear is flagged, and the IOCM
// rejection note ("Rejected for Quality Reasons") for the results of
// earlier revisions this analysis supersedes.
func (w *Worker) keyObjects(src *results.Source, res *analysis.Result, seg *results.SEG, sr *results.SR,
	rejected []results.Reference, revision int, base index.ResultObject, rw *results.Writer) ([]object, error) {
	var out []object
	for _, e := range res.Ears {
		if !e.Flag.Raised {
			continue
		}
		k, err := rw.FlagKOS(src, res, seg, sr)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrPermanent, err)
		}
		out = append(out, object{with(base, k.SOPInstanceUID, results.KeyObjectSelectionStorage, index.KindKOSFlag), k.File})
		break
	}
	if len(rejected) > 0 {
		k, err := rw.RejectionKOS(src, rejected, fmt.Sprintf("Superseded by the analysis of revision %d of the series.", revision))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrPermanent, err)
		}
		out = append(out, object{with(base, k.SOPInstanceUID, results.KeyObjectSelectionStorage, index.KindKOSRejection), k.File})
	}
	return out, nil
}
