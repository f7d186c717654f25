package scp

import (
	"context"
	"encoding/json"
	"log/slog"
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
		if p.Due(now, s.Policy) != "" {
			due = true
			last[p.SeriesInstanceUID] = p.LastInstanceAt
		} else if d := p.Deadline(s.Policy); d.Before(next) {
			next = d
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
