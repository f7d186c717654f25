package events

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// memOutbox is an outbox held in memory, standing in for the database in
// these tests of the publisher alone.
type memOutbox struct {
	mu   sync.Mutex
	rows []OutboxMessage
	sent map[int64]bool
}

func (o *memOutbox) add(subject, msgID, data string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rows = append(o.rows, OutboxMessage{ID: int64(len(o.rows) + 1), Subject: subject, MsgID: msgID, Data: []byte(data)})
}

func (o *memOutbox) PendingOutbox(_ context.Context, limit int) ([]OutboxMessage, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []OutboxMessage
	for _, r := range o.rows {
		if !o.sent[r.ID] && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func (o *memOutbox) MarkOutboxSent(_ context.Context, ids []int64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sent == nil {
		o.sent = map[int64]bool{}
	}
	for _, id := range ids {
		o.sent[id] = true
	}
	return nil
}

func (o *memOutbox) unsent() int {
	n, _ := o.PendingOutbox(context.Background(), 1<<30)
	return len(n)
}

func embedded(t *testing.T, dir string) (*Embedded, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	e, err := StartEmbedded(EmbeddedOptions{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := e.Connect()
	if err != nil {
		e.Shutdown()
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return e, nc, js
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// publishAndCheck runs the publisher over an outbox with a duplicate row and
// checks that the work stream holds each series revision once.
func publishAndCheck(t *testing.T, js jetstream.JetStream, topo Topology) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := topo.EnsureStreams(ctx, js, StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := topo.EnsureStreams(ctx, js, StreamOptions{}); err != nil {
		t.Fatalf("second EnsureStreams: %v", err)
	}
	ob := &memOutbox{}
	ob.add(topo.WorkSubject(), MsgID("1.2.3", 1), `{"series_instance_uid":"1.2.3","revision":1}`)
	ob.add(topo.WorkSubject(), MsgID("1.2.3", 2), `{"series_instance_uid":"1.2.3","revision":2}`)
	// The same revision again, as after a crash between publish and mark.
	ob.add(topo.WorkSubject(), MsgID("1.2.3", 1), `{"series_instance_uid":"1.2.3","revision":1}`)
	ob.add(topo.SeriesCompleteSubject(), MsgID("1.2.3", 1), `{}`)
	p := &Publisher{JS: js, Outbox: ob, Batch: 3, Interval: time.Hour}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	p.Notify()
	for ob.unsent() > 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("outbox not drained: %d rows left", ob.unsent())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	<-done
	if n := streamMsgs(t, js, topo.WorkStream()); n != 2 {
		t.Errorf("work stream holds %d messages, want 2", n)
	}
	if n := streamMsgs(t, js, topo.EventsStream()); n != 1 {
		t.Errorf("events stream holds %d messages, want 1", n)
	}
}

func TestPublisherEmbedded(t *testing.T) {
	dir := t.TempDir()
	e, nc, js := embedded(t, dir)
	publishAndCheck(t, js, Topology{})
	nc.Close()
	e.Shutdown()

	// The messages survive a restart of the server on the same directory.
	e, nc, js = embedded(t, dir)
	defer e.Shutdown()
	defer nc.Close()
	if n := streamMsgs(t, js, Topology{}.WorkStream()); n != 2 {
		t.Fatalf("after restart the work stream holds %d messages, want 2", n)
	}
}

// TestPublisherExternal runs against the NATS server of the machine
// (127.0.0.1:4222, or $NATS_URL), with stream names of its own.
func TestPublisherExternal(t *testing.T) {
	url := os.Getenv("NATS_URL")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("NATS at %s: %v", url, err)
		}
		t.Skipf("NATS at %s: %v", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	topo := Topology{Prefix: fmt.Sprintf("otonodetest%d", rand.Uint32())}
	t.Cleanup(func() {
		ctx := context.Background()
		for _, s := range []string{topo.WorkStream(), topo.EventsStream(), topo.DeadLetterStream(), topo.AdvisoryStream()} {
			js.DeleteStream(ctx, s)
		}
	})
	publishAndCheck(t, js, topo)
}

func TestTopologyNames(t *testing.T) {
	names := []string{Topology{}.WorkStream(), Topology{}.EventsStream(), Topology{}.DeadLetterStream(), Topology{}.AdvisoryStream()}
	if !slices.Equal(names, []string{"OTONODE_WORK", "OTONODE_EVENTS", "OTONODE_DLQ", "OTONODE_ADVISORIES"}) {
		t.Fatalf("stream names %v", names)
	}
	if s := (Topology{Prefix: "site2"}).AnalysisFlaggedSubject(); s != "site2.events.analysis.flagged" {
		t.Fatalf("subject %q", s)
	}
	if id := MsgID("1.2.840.1", 3); id != "1.2.840.1/3" {
		t.Fatalf("msg id %q", id)
	}
}
