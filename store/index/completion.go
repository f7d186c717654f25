package index

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Reasons a series revision is complete.
const (
	ReasonReleased      = "released"       // association released, then a quiet period
	ReasonInactivity    = "inactivity"     // no instance for the inactivity timeout
	ReasonExpectedCount = "expected-count" // the data announced the count and it arrived
	ReasonExplicit      = "explicit"       // CLI or API
)

// Policy configures series completion.
type Policy struct {
	// QuietPeriod after the association release with no new instance
	// (default 2 s).
	QuietPeriod time.Duration
	// InactivityTimeout for senders that keep associations open (default
	// 30 s).
	InactivityTimeout time.Duration
	// Announce builds the outbox message written with a completion; nil
	// uses DefaultAnnouncement.
	Announce func(Completion) (Message, error)
}

func (p Policy) withDefaults() Policy {
	if p.QuietPeriod <= 0 {
		p.QuietPeriod = 2 * time.Second
	}
	if p.InactivityTimeout <= 0 {
		p.InactivityTimeout = 30 * time.Second
	}
	if p.Announce == nil {
		p.Announce = DefaultAnnouncement
	}
	return p
}

// Pending is a series revision still receiving instances, with what the
// completion rules look at.
type Pending struct {
	SeriesInstanceUID string
	StudyInstanceUID  string
	Revision          int
	LastInstanceAt    time.Time
	ReleasedAt        time.Time // zero: no release since the revision opened
	InstanceCount     int       // of this revision
	SeriesInstances   int       // distinct SOP instances of the whole series
	ExpectedCount     int       // 0: the data did not say
}

// Due returns the reason p is complete at now, or "" when it is not.
func (p Pending) Due(now time.Time, pol Policy) string {
	pol = pol.withDefaults()
	switch {
	case p.Revision == 1 && p.ExpectedCount > 0 && p.SeriesInstances >= p.ExpectedCount:
		// Only the first revision: late instances are debounced by time.
		return ReasonExpectedCount
	case !p.ReleasedAt.IsZero() && !p.ReleasedAt.Before(p.LastInstanceAt) && now.Sub(p.ReleasedAt) >= pol.QuietPeriod:
		return ReasonReleased
	case now.Sub(p.LastInstanceAt) >= pol.InactivityTimeout:
		return ReasonInactivity
	}
	return ""
}

// Deadline is when p becomes due by a timer if nothing else happens.
func (p Pending) Deadline(pol Policy) time.Time {
	pol = pol.withDefaults()
	d := p.LastInstanceAt.Add(pol.InactivityTimeout)
	if !p.ReleasedAt.IsZero() && !p.ReleasedAt.Before(p.LastInstanceAt) {
		if r := p.ReleasedAt.Add(pol.QuietPeriod); r.Before(d) {
			d = r
		}
	}
	return d
}

const pendingQuery = `SELECT s.series_instance_uid, se.study_instance_uid, s.revision, s.last_instance_at, s.released_at,
	s.instance_count, se.instance_count, se.expected_count
	FROM series_state s JOIN series se ON se.series_instance_uid = s.series_instance_uid
	WHERE s.state = 'receiving' AND se.current_revision = s.revision`

func scanPending(sc interface{ Scan(...any) error }) (Pending, error) {
	var p Pending
	var last int64
	var rel, exp sql.NullInt64
	if err := sc.Scan(&p.SeriesInstanceUID, &p.StudyInstanceUID, &p.Revision, &last, &rel,
		&p.InstanceCount, &p.SeriesInstances, &exp); err != nil {
		return p, err
	}
	p.LastInstanceAt = fromMicros(last)
	p.ReleasedAt = fromNullMicros(rel)
	p.ExpectedCount = int(exp.Int64)
	return p, nil
}

// Pending lists the revisions still receiving, so the node can arm its
// timers (for example after a restart) from Deadline.
func (x *Index) Pending(ctx context.Context) ([]Pending, error) {
	rows, err := x.db.QueryContext(ctx, pendingQuery+` ORDER BY s.last_instance_at`)
	if err != nil {
		return nil, fmt.Errorf("index: pending: %w", err)
	}
	defer rows.Close()
	var out []Pending
	for rows.Next() {
		p, err := scanPending(rows)
		if err != nil {
			return nil, fmt.Errorf("index: pending: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Completion is a series revision that became complete.
type Completion struct {
	SeriesInstanceUID string
	StudyInstanceUID  string
	Revision          int
	Reason            string
	Instances         int // distinct SOP instances of the series
	CompletedAt       time.Time
	OutboxID          int64
}

// Message is an outbox row to be: a NATS subject, the JetStream message id
// that de-duplicates it, and the payload.
type Message struct {
	Subject string
	MsgID   string
	Data    []byte
}

// DefaultAnnouncement is the series-complete message when the caller gives
// none: UIDs, counts and the reason, never patient data.
func DefaultAnnouncement(c Completion) (Message, error) {
	data, err := json.Marshal(struct {
		StudyInstanceUID  string    `json:"study_instance_uid"`
		SeriesInstanceUID string    `json:"series_instance_uid"`
		Revision          int       `json:"revision"`
		Instances         int       `json:"instances"`
		Reason            string    `json:"reason"`
		CompletedAt       time.Time `json:"completed_at"`
	}{c.StudyInstanceUID, c.SeriesInstanceUID, c.Revision, c.Instances, c.Reason, c.CompletedAt})
	return Message{
		Subject: "otonode.events.series.complete",
		MsgID:   fmt.Sprintf("%s/%d", c.SeriesInstanceUID, c.Revision),
		Data:    data,
	}, err
}

// CompleteDue completes every revision that is due at now, each in its own
// transaction that re-checks the rule under the series lock and writes the
// outbox row. Several nodes may call it at once: each completion happens
// once.
func (x *Index) CompleteDue(ctx context.Context, now time.Time, pol Policy) ([]Completion, error) {
	pol = pol.withDefaults()
	// Candidates only; the decision is taken again under the lock.
	pend, err := x.Pending(ctx)
	if err != nil {
		return nil, err
	}
	var out []Completion
	for _, p := range pend {
		if p.Due(now, pol) == "" {
			continue
		}
		c, ok, err := x.complete(ctx, p.SeriesInstanceUID, now, pol, "")
		if err != nil {
			return out, err
		}
		if ok {
			out = append(out, c)
		}
	}
	return out, nil
}

// Complete completes the receiving revision of a series now, whatever the
// timers say (`otonode complete`, an HTTP call). It returns ErrState when
// the current revision is not receiving.
func (x *Index) Complete(ctx context.Context, seriesUID string, now time.Time, pol Policy) (Completion, error) {
	c, ok, err := x.complete(ctx, seriesUID, now, pol.withDefaults(), ReasonExplicit)
	if err != nil {
		return Completion{}, err
	}
	if !ok {
		return Completion{}, fmt.Errorf("%w: series %s is not receiving", ErrState, seriesUID)
	}
	return c, nil
}

// complete does one completion under the series lock; reason "" means
// "if due by the rules".
func (x *Index) complete(ctx context.Context, seriesUID string, now time.Time, pol Policy, reason string) (Completion, bool, error) {
	var c Completion
	done := false
	err := x.tx(ctx, func(tx *sql.Tx) error {
		if _, err := x.lockSeries(ctx, tx, seriesUID); err != nil {
			return err
		}
		p, err := scanPending(tx.QueryRowContext(ctx, x.q(pendingQuery+` AND s.series_instance_uid = ?`), seriesUID))
		if errors.Is(err, sql.ErrNoRows) {
			return nil // not receiving any more: someone else completed it
		}
		if err != nil {
			return fmt.Errorf("index: read series state: %w", err)
		}
		why := reason
		if why == "" {
			if why = p.Due(now, pol); why == "" {
				return nil // an instance arrived since the candidate list
			}
		}
		c = Completion{SeriesInstanceUID: p.SeriesInstanceUID, StudyInstanceUID: p.StudyInstanceUID,
			Revision: p.Revision, Reason: why, Instances: p.SeriesInstances, CompletedAt: now.UTC()}
		if _, err := tx.ExecContext(ctx, x.q(`UPDATE series_state SET state = ?, reason = ?, completed_at = ?, updated_at = ?
			WHERE series_instance_uid = ? AND revision = ?`), Complete, why, micros(now), micros(now), seriesUID, p.Revision); err != nil {
			return fmt.Errorf("index: complete: %w", err)
		}
		m, err := pol.Announce(c)
		if err != nil {
			return fmt.Errorf("index: announce completion: %w", err)
		}
		if c.OutboxID, err = x.addOutbox(ctx, tx, m, now); err != nil {
			return err
		}
		done = true
		return nil
	})
	return c, done && err == nil, err
}

// Transition is a state change of one series revision, optionally with an
// outbox message written in the same transaction.
type Transition struct {
	SeriesInstanceUID string
	Revision          int
	From              []State // the change happens only from one of these
	To                State
	Reason            string
	Message           *Message
}

// Transition applies t under the series lock. It returns ErrState when the
// revision is not in one of t.From, ErrNotFound when it does not exist.
func (x *Index) Transition(ctx context.Context, t Transition, now time.Time) error {
	return x.tx(ctx, func(tx *sql.Tx) error {
		if _, err := x.lockSeries(ctx, tx, t.SeriesInstanceUID); err != nil {
			return err
		}
		var cur State
		err := tx.QueryRowContext(ctx, x.q(`SELECT state FROM series_state WHERE series_instance_uid = ? AND revision = ?`),
			t.SeriesInstanceUID, t.Revision).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: series %s revision %d", ErrNotFound, t.SeriesInstanceUID, t.Revision)
		}
		if err != nil {
			return fmt.Errorf("index: read state: %w", err)
		}
		allowed := false
		for _, f := range t.From {
			allowed = allowed || f == cur
		}
		if !allowed {
			return fmt.Errorf("%w: series %s revision %d is %s, not %v", ErrState, t.SeriesInstanceUID, t.Revision, cur, t.From)
		}
		if err := x.setState(ctx, tx, t.SeriesInstanceUID, t.Revision, t.To, t.Reason, now); err != nil {
			return err
		}
		if t.Message != nil {
			if _, err := x.addOutbox(ctx, tx, *t.Message, now); err != nil {
				return err
			}
		}
		return nil
	})
}
