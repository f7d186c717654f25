package worker

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otonode/otonode/scp/events"
)

// deadLetter stores a copy of a job the worker is about to terminate in the
// dead-letter stream: in a work-queue stream Term removes the message, so
// the node's mover finds nothing to move (go-libraries.md §6). The message
// id is the mover's, so a copy is stored once whoever writes it.
func (w *Worker) deadLetter(ctx context.Context, msg jetstream.Msg, reason string) {
	md, err := msg.Metadata()
	if err != nil {
		w.Logger.Warn("dead letter not written: no metadata", "err", err)
		return
	}
	out := nats.NewMsg(w.Topology.DeadLetterSubject("terminated"))
	out.Data = msg.Data()
	out.Header.Set(events.HeaderReason, reason)
	out.Header.Set(events.HeaderDeliveries, strconv.FormatUint(md.NumDelivered, 10))
	out.Header.Set(events.HeaderStreamSeq, strconv.FormatUint(md.Sequence.Stream, 10))
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	id := fmt.Sprintf("dlq/%s/%d", w.Topology.WorkStream(), md.Sequence.Stream)
	if _, err := w.JS.PublishMsg(pctx, out, jetstream.WithMsgID(id)); err != nil {
		w.Logger.Warn("dead letter not written", "err", err, "stream_seq", md.Sequence.Stream)
	}
}
