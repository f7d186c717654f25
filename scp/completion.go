package scp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/otonode/otonode/scp/events"
	"github.com/otonode/otonode/store/index"
)

// Scheduler completes series revisions when a rule says so. Its timers are
// the database's timestamps: at every round it reads the receiving
// revisions, completes the due ones and sleeps until the earliest
// deadline, so after a restart (or on another node sharing PostgreSQL) it
// picks up exactly where the last one stopped.
type Scheduler struct {
	Index  *index.Index
	Policy index.Policy
	// MaxSleep bounds a wait, so revisions another node records are seen
	// (default 1 s).
	MaxSleep time.Duration
	// OnComplete runs after each round that completed something (wake the
	// publisher and selection).
	OnComplete func([]index.Completion)
	Metrics    *Metrics
	Logger     *slog.Logger
	Now        func() time.Time

	waker
}

// Round completes what is due now and returns when to look next.
func (s *Scheduler) Round(ctx context.Context) (time.Time, error) {
	maxSleep := s.MaxSleep
	if maxSleep <= 0 {
		maxSleep = time.Second
	}
	now := clock(s.Now)
	next := now.Add(maxSleep)
	pend, err := s.Index.Pending(ctx)
	if err != nil {
		return next, err
	}
	due := false
	last := map[string]time.Time{}
	for _, p := range pend {
		if p.Due(now, s.Policy) == "" {
			if d := p.Deadline(s.Policy); d.Before(next) {
				next = d
			}
			continue
		}
		skipped, err := s.skip(ctx, p, now)
		if err != nil {
			return next, err
		}
		if !skipped {
			due = true
			last[p.SeriesInstanceUID] = p.LastInstanceAt
		}
	}
	if !due {
		return next, nil
	}
	done, err := s.Index.CompleteDue(ctx, now, s.Policy)
	for _, c := range done {
		lat := now.Sub(last[c.SeriesInstanceUID])
		s.Metrics.Completions.WithLabelValues(c.Reason).Inc()
		s.Metrics.CompletionLatency.WithLabelValues(c.Reason).Observe(lat.Seconds())
		s.Logger.Info("series complete", "series_instance_uid", c.SeriesInstanceUID, "revision", c.Revision,
			"reason", c.Reason, "instances", c.Instances, "after_last_instance", lat.Round(time.Millisecond))
	}
	if len(done) > 0 && s.OnComplete != nil {
		s.OnComplete(done)
	}
	return now, err // look again at once: completing took time
}

// Why a due revision is not completed (the label of Metrics.Skipped).
const (
	SkipResult   = "result"    // objects otonode made, coming back from its worker
	SkipNonImage = "non-image" // SR, KOS, SEG, PR and the like from elsewhere
)

// nonImageModalities are the Modality values (PS3.3 C.7.3.1.1.1) of
// series without an image volume to analyse.
var nonImageModalities = map[string]bool{
	"SR": true, "KO": true, "PR": true, "SEG": true, "DOC": true, "REG": true, "FID": true, "PLAN": true,
	"RTSTRUCT": true, "RTPLAN": true, "RTRECORD": true, "AU": true, "ECG": true, "HD": true, "RWV": true,
	"M3D": true,
}

// skip ends a due revision that can never be analysed without completing
// it: the node's own SEG, SR and KOS coming back from the worker, and
// series of a non-image modality. Completing them would announce a
// series-complete event that nothing wants and have selection log each
// returning result as "not analysed". The revision goes straight to
// not-analysed, with no outbox row; the metric and the log say why.
func (s *Scheduler) skip(ctx context.Context, p index.Pending, now time.Time) (bool, error) {
	se, err := s.Index.Series(ctx, p.SeriesInstanceUID)
	if err != nil {
		return false, err
	}
	mod := strings.ToUpper(strings.TrimSpace(se.Modality))
	if !nonImageModalities[mod] {
		return false, nil
	}
	label, why := SkipNonImage, fmt.Sprintf("non-image modality %s", mod)
	ins, err := s.Index.Instances(ctx, p.SeriesInstanceUID)
	if err != nil {
		return false, err
	}
	results := 0
	for _, in := range ins {
		if in.Result {
			results++
		}
	}
	if results > 0 && results == len(ins) {
		label, why = SkipResult, fmt.Sprintf("otonode result (%s)", mod)
	}
	err = s.Index.Transition(ctx, index.Transition{SeriesInstanceUID: p.SeriesInstanceUID, Revision: p.Revision,
		From: []index.State{index.Receiving}, To: index.NotAnalysed, Reason: why}, now)
	if errors.Is(err, index.ErrState) || errors.Is(err, index.ErrNotFound) {
		return true, nil // another node decided it meanwhile
	}
	if err != nil {
		return false, err
	}
	s.Metrics.Skipped.WithLabelValues(label).Inc()
	s.Logger.Info("series not completed", "series_instance_uid", p.SeriesInstanceUID, "revision", p.Revision,
		"reason", why, "instances", p.SeriesInstances)
	return true, nil
}

// Run completes series until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-s.c():
		}
		next, err := s.Round(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.Logger.Error("completion round", "err", err)
			next = clock(s.Now).Add(time.Second)
		}
		t.Stop()
		d := next.Sub(clock(s.Now))
		if d < 0 {
			d = 0
		}
		t.Reset(d)
	}
}

// AnnouncementID is the message id of a revision's series-complete event.
// The index keeps outbox message ids unique across subjects, and the work
// job of the same revision has events.MsgID, so the event's id differs.
func AnnouncementID(seriesUID string, revision int) string {
	return events.MsgID(seriesUID, revision) + "/complete"
}

// Announcer builds the series-complete event of a completion, written to
// the outbox in the completion's transaction.
func Announcer(topo events.Topology, src events.Source) func(index.Completion) (index.Message, error) {
	return func(c index.Completion) (index.Message, error) {
		data, err := json.Marshal(events.SeriesComplete{
			StudyInstanceUID: c.StudyInstanceUID, SeriesInstanceUID: c.SeriesInstanceUID,
			Revision: c.Revision, Instances: c.Instances, Reason: c.Reason, CompletedAt: c.CompletedAt,
			Source: src,
		})
		return index.Message{Subject: topo.SeriesCompleteSubject(), MsgID: AnnouncementID(c.SeriesInstanceUID, c.Revision),
			Data: data}, err
	}
}
