package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/otonode/otonode/store/files"
)

// RetentionPolicy says what happens to source instances once their series
// is analysed (done, failed or not analysed). Results are always kept.
type RetentionPolicy struct {
	// DeleteSourcesAfter deletes source instance files this long after
	// their series ended; zero keeps them.
	DeleteSourcesAfter time.Duration
}

// RetentionReport counts what one run removed.
type RetentionReport struct {
	Deleted int
	Bytes   int64
}

// ApplyRetention runs the policy once; the node calls it periodically. A
// file already gone (a crash after removal, before the index was updated)
// counts as removed.
func ApplyRetention(ctx context.Context, idx Index, fs Files, pol RetentionPolicy, now time.Time) (RetentionReport, error) {
	var rep RetentionReport
	if pol.DeleteSourcesAfter <= 0 {
		return rep, nil
	}
	for {
		batch, err := idx.ExpiredSources(ctx, now.Add(-pol.DeleteSourcesAfter), 500)
		if err != nil {
			return rep, err
		}
		for _, in := range batch {
			if in.Result {
				return rep, fmt.Errorf("store: retention was offered result %s", in.SOPInstanceUID)
			}
			if err := fs.Remove(ctx, in.Location); err != nil && !errors.Is(err, files.ErrNotFound) {
				return rep, fmt.Errorf("store: retention: %w", err)
			}
			if err := idx.MarkDeleted(ctx, in.SOPInstanceUID, in.Version, now); err != nil {
				return rep, err
			}
			rep.Deleted++
			rep.Bytes += in.Size
		}
		if len(batch) < 500 {
			return rep, nil
		}
	}
}
