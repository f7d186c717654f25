package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Webhook headers: the event's subject and JetStream message id (the same id
// on every retry, so a receiver can drop a copy), and the HMAC-SHA256 of the
// body under the shared secret when one is configured.
const (
	HeaderWebhookEvent     = "Otonode-Event"
	HeaderWebhookMsgID     = "Otonode-Msg-Id"
	HeaderWebhookSignature = "Otonode-Signature"
)

// Webhook POSTs analysis events (by default only "flagged") to an HTTP
// endpoint as JSON, as a durable consumer of the events stream: an event is
// acknowledged only after the endpoint answered 2xx, so one that is down
// gets every event once it is back, retried with growing delays. Radiology
// systems that do not read NATS learn of flagged cases this way.
type Webhook struct {
	JS       jetstream.JetStream
	Topology Topology
	URL      string
	// Secret, when set, signs each body: Otonode-Signature is
	// "sha256=" + hex(HMAC-SHA256(Secret, body)).
	Secret string
	// Events are the kinds sent: done, flagged, failed (default flagged).
	Events []string
	// Durable names the consumer (default "webhook"); nodes sharing it
	// share the deliveries.
	Durable string
	Client  *http.Client // default: 10 s timeout
	// RetryBase is the delay after the first failed POST, doubled per
	// delivery up to RetryMax (defaults 5 s and 10 min).
	RetryBase, RetryMax time.Duration
	Logger              *slog.Logger
}

func (h *Webhook) subjects() ([]string, error) {
	kinds := h.Events
	if len(kinds) == 0 {
		kinds = []string{"flagged"}
	}
	var out []string
	for _, k := range kinds {
		switch k {
		case "done":
			out = append(out, h.Topology.AnalysisDoneSubject())
		case "flagged":
			out = append(out, h.Topology.AnalysisFlaggedSubject())
		case "failed":
			out = append(out, h.Topology.AnalysisFailedSubject())
		default:
			return nil, fmt.Errorf("events: webhook event %q is not done, flagged or failed", k)
		}
	}
	return out, nil
}

// Run delivers events until ctx is done.
func (h *Webhook) Run(ctx context.Context) error {
	subjects, err := h.subjects()
	if err != nil {
		return err
	}
	durable := h.Durable
	if durable == "" {
		durable = "webhook"
	}
	log := h.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// New subscribers start with what arrives from now on: a webhook added
	// to a node with a month of events must not replay them all.
	cons, err := h.JS.CreateOrUpdateConsumer(ctx, h.Topology.EventsStream(), jetstream.ConsumerConfig{
		Durable:        durable,
		FilterSubjects: subjects,
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        time.Minute,
	})
	if err != nil {
		return fmt.Errorf("events: webhook consumer: %w", err)
	}
	for {
		batch, err := cons.Fetch(10, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Warn("webhook fetch failed", "err", err)
			time.Sleep(time.Second)
			continue
		}
		for msg := range batch.Messages() {
			if err := h.post(ctx, msg); err != nil {
				n := uint64(1)
				if md, err := msg.Metadata(); err == nil {
					n = md.NumDelivered
				}
				delay := h.delay(n)
				log.Warn("webhook POST failed, will retry", "url", h.URL, "subject", msg.Subject(),
					"series_instance_uid", seriesOf(msg.Data()), "delivery", n, "retry_in", delay, "err", err)
				msg.NakWithDelay(delay)
				continue
			}
			msg.Ack()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (h *Webhook) delay(delivery uint64) time.Duration {
	base, max := h.RetryBase, h.RetryMax
	if base <= 0 {
		base = 5 * time.Second
	}
	if max <= 0 {
		max = 10 * time.Minute
	}
	d := base
	for i := uint64(1); i < delivery && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

func (h *Webhook) post(ctx context.Context, msg jetstream.Msg) error {
	client := h.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(msg.Data()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderWebhookEvent, msg.Subject()[strings.LastIndexByte(msg.Subject(), '.')+1:])
	req.Header.Set(HeaderWebhookMsgID, msg.Headers().Get(jetstream.MsgIDHeader))
	if h.Secret != "" {
		req.Header.Set(HeaderWebhookSignature, Sign(h.Secret, msg.Data()))
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s answered %s", h.URL, resp.Status)
	}
	return nil
}

// Sign is the Otonode-Signature value of body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// seriesOf pulls the series UID out of an event for the log line.
func seriesOf(data []byte) string {
	var ev struct {
		SeriesInstanceUID string `json:"series_instance_uid"`
	}
	json.Unmarshal(data, &ev)
	return ev.SeriesInstanceUID
}
