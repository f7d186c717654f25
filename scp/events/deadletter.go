package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of a dead letter.
const (
	HeaderReason     = "Otonode-Reason"
	HeaderDeliveries = "Otonode-Deliveries"
	HeaderStreamSeq  = "Otonode-Stream-Seq"
)

// DeadLetter is a job that will not be retried.
type DeadLetter struct {
	Kind       string // "max_deliveries" or "terminated"
	Reason     string
	Deliveries uint64
	StreamSeq  uint64
	Job        *SeriesComplete // nil when the original is gone (see Mover)
}

// advisory is the part of JetStream's max-deliveries and terminated
// advisories the mover reads.
type advisory struct {
	Type       string `json:"type"`
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
	Reason     string `json:"reason"`
}

const (
	advisoryMaxDeliver = "io.nats.jetstream.advisory.v1.max_deliver"
	advisoryTerminated = "io.nats.jetstream.advisory.v1.terminated"
)

// Mover moves work that reached MaxDeliver out of the work-queue stream into
// the dead-letter stream, and tells the node so it can mark the series
// failed. JetStream leaves such a message in a work-queue stream forever,
// and a worker that crashed on its last attempt cannot move it, so the node
// does, driven by the advisories that the advisory stream captured (none is
// lost while the node is down).
//
// A terminated message is already gone from a work-queue stream when the
// advisory arrives; the worker that terminated it wrote the dead letter and
// the failure itself, so for those the mover reports only what the advisory
// says.
type Mover struct {
	JS       jetstream.JetStream
	Topology Topology
	// Durable is the name of the mover's consumer on the advisory stream
	// (default "dead-letter-mover"); nodes sharing it share the work.
	Durable string
	// OnDeadLetter is called once the dead letter is stored and before the
	// advisory is acknowledged; an error makes the advisory come back.
	OnDeadLetter func(ctx context.Context, dl DeadLetter) error
	Logger       *slog.Logger
}

// Run moves dead letters until ctx is done.
func (m *Mover) Run(ctx context.Context) error {
	durable := m.Durable
	if durable == "" {
		durable = "dead-letter-mover"
	}
	log := m.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cons, err := m.JS.CreateOrUpdateConsumer(ctx, m.Topology.AdvisoryStream(), jetstream.ConsumerConfig{
		Durable:   durable,
		AckPolicy: jetstream.AckExplicitPolicy,
		AckWait:   30 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("events: dead-letter consumer: %w", err)
	}
	for {
		batch, err := cons.Fetch(10, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Warn("dead-letter fetch failed", "err", err)
			time.Sleep(time.Second)
			continue
		}
		for msg := range batch.Messages() {
			if err := m.handle(ctx, msg); err != nil {
				log.Warn("dead letter not moved, will retry", "err", err)
				msg.NakWithDelay(5 * time.Second)
				continue
			}
			msg.Ack()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (m *Mover) handle(ctx context.Context, msg jetstream.Msg) error {
	var adv advisory
	if err := json.Unmarshal(msg.Data(), &adv); err != nil {
		return nil // not an advisory we understand: nothing to move
	}
	dl := DeadLetter{StreamSeq: adv.StreamSeq, Deliveries: adv.Deliveries}
	switch adv.Type {
	case advisoryMaxDeliver:
		dl.Kind = "max_deliveries"
		dl.Reason = fmt.Sprintf("gave up after %d deliveries", adv.Deliveries)
	case advisoryTerminated:
		dl.Kind = "terminated"
		dl.Reason = adv.Reason
		if dl.Reason == "" {
			dl.Reason = "terminated by a worker"
		}
	default:
		return nil
	}
	work, err := m.JS.Stream(ctx, m.Topology.WorkStream())
	if err != nil {
		return fmt.Errorf("work stream: %w", err)
	}
	orig, err := work.GetMsg(ctx, adv.StreamSeq)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		// Moved already (a retry of this advisory) or removed by Term.
	case err != nil:
		return fmt.Errorf("get job %d: %w", adv.StreamSeq, err)
	default:
		var job SeriesComplete
		if json.Unmarshal(orig.Data, &job) == nil {
			dl.Job = &job
		}
		out := nats.NewMsg(m.Topology.DeadLetterSubject(dl.Kind))
		out.Data = orig.Data
		out.Header.Set(HeaderReason, dl.Reason)
		out.Header.Set(HeaderDeliveries, strconv.FormatUint(dl.Deliveries, 10))
		out.Header.Set(HeaderStreamSeq, strconv.FormatUint(dl.StreamSeq, 10))
		if _, err := m.JS.PublishMsg(ctx, out, jetstream.WithMsgID(fmt.Sprintf("dlq/%s/%d", m.Topology.WorkStream(), adv.StreamSeq))); err != nil {
			return fmt.Errorf("store dead letter %d: %w", adv.StreamSeq, err)
		}
		if err := work.DeleteMsg(ctx, adv.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("delete job %d: %w", adv.StreamSeq, err)
		}
	}
	if m.OnDeadLetter != nil {
		if err := m.OnDeadLetter(ctx, dl); err != nil {
			return err
		}
	}
	return nil
}
