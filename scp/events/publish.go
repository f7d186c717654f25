package events

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// OutboxMessage is one row of the database outbox: a message written in the
// same transaction as the state change it announces.
type OutboxMessage struct {
	ID      int64  // the row's key, handed back to MarkSent
	Subject string // NATS subject
	MsgID   string // JetStream de-duplication id (see MsgID)
	Data    []byte // JSON payload
}

// Outbox is what the publisher needs of the database.
type Outbox interface {
	// PendingOutbox returns up to limit unsent rows, oldest first.
	PendingOutbox(ctx context.Context, limit int) ([]OutboxMessage, error)
	// MarkOutboxSent records that the rows reached the broker.
	MarkOutboxSent(ctx context.Context, ids []int64) error
}

// Publisher moves outbox rows to JetStream. A row is marked sent only after
// JetStream acknowledged it (stored, and with the embedded server synced to
// disk); a crash in between publishes it again, and the message id makes the
// second copy a no-op.
type Publisher struct {
	JS     jetstream.JetStream
	Outbox Outbox
	// Interval is how often the outbox is polled without a Notify (default
	// 1 s); several nodes sharing a database find each other's rows this way.
	Interval time.Duration
	Batch    int // rows per round (default 100)
	Logger   *slog.Logger

	once sync.Once
	wake chan struct{}
}

// Notify wakes the publisher after a transaction wrote outbox rows, so a
// completed series reaches the broker without waiting for the next poll.
func (p *Publisher) Notify() {
	select {
	case p.wakeChan() <- struct{}{}:
	default:
	}
}

func (p *Publisher) wakeChan() chan struct{} {
	p.once.Do(func() { p.wake = make(chan struct{}, 1) })
	return p.wake
}

// Run publishes until ctx is done. Errors of one round are logged and the
// round is retried; Run returns only ctx's error.
func (p *Publisher) Run(ctx context.Context) error {
	interval := p.Interval
	if interval <= 0 {
		interval = time.Second
	}
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wake := p.wakeChan()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for {
			n, err := p.PublishPending(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				log.Warn("outbox publish failed, will retry", "err", err)
				break
			}
			if n == 0 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-t.C:
		}
	}
}

// PublishPending publishes one batch of outbox rows and returns how many
// were sent.
func (p *Publisher) PublishPending(ctx context.Context) (int, error) {
	batch := p.Batch
	if batch <= 0 {
		batch = 100
	}
	rows, err := p.Outbox.PendingOutbox(ctx, batch)
	if err != nil {
		return 0, fmt.Errorf("events: read outbox: %w", err)
	}
	var sent []int64
	for _, r := range rows {
		m := nats.NewMsg(r.Subject)
		m.Data = r.Data
		if _, err := p.JS.PublishMsg(ctx, m, jetstream.WithMsgID(r.MsgID)); err != nil {
			if len(sent) > 0 {
				if merr := p.Outbox.MarkOutboxSent(ctx, sent); merr != nil {
					return 0, fmt.Errorf("events: mark outbox sent: %w", merr)
				}
			}
			return len(sent), fmt.Errorf("events: publish %s (%s): %w", r.Subject, r.MsgID, err)
		}
		sent = append(sent, r.ID)
	}
	if len(sent) > 0 {
		if err := p.Outbox.MarkOutboxSent(ctx, sent); err != nil {
			return 0, fmt.Errorf("events: mark outbox sent: %w", err)
		}
	}
	return len(sent), nil
}
