package scp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otonode/otonode/scp/events"
	"github.com/otonode/otonode/store/index"
)

// Outbox adapts the index's outbox to what events.Publisher takes.
type Outbox struct{ Index *index.Index }

// PendingOutbox implements events.Outbox.
func (o Outbox) PendingOutbox(ctx context.Context, limit int) ([]events.OutboxMessage, error) {
	rows, err := o.Index.PendingOutbox(ctx, limit)
	out := make([]events.OutboxMessage, len(rows))
	for i, r := range rows {
		out[i] = events.OutboxMessage{ID: r.ID, Subject: r.Subject, MsgID: r.MsgID, Data: r.Data}
	}
	return out, err
}

// MarkOutboxSent implements events.Outbox.
func (o Outbox) MarkOutboxSent(ctx context.Context, ids []int64) error {
	return o.Index.MarkOutboxSent(ctx, ids)
}

// Reconciler re-publishes queued revisions that no worker claimed within
// After: a message the broker lost (or a stream someone purged) does not
// lose the series. It publishes the revision's job again and restarts the
// revision's clock under the series lock, so each revision is re-published
// at most once per After.
//
// The copy needs a message id of its own: JetStream remembers ids for the
// duplicate window even after the message is gone, so the revision's id
// would make the copy a no-op. The id is the revision's plus the time the
// revision last changed, so a crash between publishing and the transition
// repeats the same id (stored once). When the first job was not lost, a
// worker sees two; its claim on (series, revision, model) drops the
// second. (The copy cannot go through the outbox: the index keeps one
// outbox row per message id.)
type Reconciler struct {
	Index    *index.Index
	JS       jetstream.JetStream
	After    time.Duration
	Topology events.Topology
	Source   events.Source
	Metrics  *Metrics
	Logger   *slog.Logger
	Now      func() time.Time
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Round re-publishes what is overdue and updates the queue-depth gauge.
func (r *Reconciler) Round(ctx context.Context) (int, error) {
	now := r.now()
	queued, err := r.Index.SeriesInState(ctx, index.Queued, now)
	if err != nil {
		return 0, err
	}
	r.Metrics.QueueDepth.Set(float64(len(queued)))
	n := 0
	for _, se := range queued {
		if now.Sub(se.UpdatedAt) < r.After {
			continue
		}
		m, err := WorkMessage(r.Topology, r.Source, se)
		if err != nil {
			return n, err
		}
		msg := nats.NewMsg(m.Subject)
		msg.Data = m.Data
		id := RetryID(se.SeriesInstanceUID, se.Revision, se.UpdatedAt)
		if _, err := r.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(id)); err != nil {
			return n, fmt.Errorf("scp: re-publish %s: %w", m.MsgID, err)
		}
		err = r.Index.Transition(ctx, index.Transition{SeriesInstanceUID: se.SeriesInstanceUID, Revision: se.Revision,
			From: []index.State{index.Queued}, To: index.Queued, Reason: se.Reason}, r.now())
		if errors.Is(err, index.ErrState) || errors.Is(err, index.ErrNotFound) {
			continue // claimed or overtaken meanwhile; the claim makes the copy harmless
		}
		if err != nil {
			return n, err
		}
		n++
		r.Metrics.Republished.Inc()
		r.Logger.Warn("queued series not claimed in time, re-published", "series_instance_uid", se.SeriesInstanceUID,
			"revision", se.Revision, "queued_for", now.Sub(se.UpdatedAt).Round(time.Second))
	}
	return n, nil
}

// RetryID is the message id of a job the reconciler re-publishes.
func RetryID(seriesUID string, revision int, changed time.Time) string {
	return fmt.Sprintf("%s/retry-%d", events.MsgID(seriesUID, revision), changed.UnixMicro())
}

// Run reconciles until ctx ends.
func (r *Reconciler) Run(ctx context.Context) error {
	every := r.After / 4
	if every > 30*time.Second {
		every = 30 * time.Second
	}
	if every < 100*time.Millisecond {
		every = 100 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if _, err := r.Round(ctx); err != nil && ctx.Err() == nil {
			r.Logger.Error("reconciler round", "err", err)
		}
	}
}

// MarkDeadLetter is the dead-letter mover's callback: the revision failed.
func MarkDeadLetter(x *index.Index, log *slog.Logger) func(context.Context, events.DeadLetter) error {
	return func(ctx context.Context, dl events.DeadLetter) error {
		if dl.Job == nil {
			return nil
		}
		reason := "dead letter (" + dl.Kind + ")"
		if dl.Reason != "" {
			reason += ": " + dl.Reason
		}
		err := x.Transition(ctx, index.Transition{SeriesInstanceUID: dl.Job.SeriesInstanceUID, Revision: dl.Job.Revision,
			From: []index.State{index.Queued, index.Analysing}, To: index.Failed, Reason: reason}, time.Now())
		if errors.Is(err, index.ErrState) || errors.Is(err, index.ErrNotFound) {
			return nil
		}
		if err == nil {
			log.Warn("series failed", "series_instance_uid", dl.Job.SeriesInstanceUID, "revision", dl.Job.Revision, "reason", reason)
		}
		return err
	}
}
