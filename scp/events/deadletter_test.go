package events

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestMoverMaxDeliveries(t *testing.T) {
	e, nc, js := embedded(t, t.TempDir())
	defer e.Shutdown()
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topo := Topology{}
	if err := topo.EnsureStreams(ctx, js, StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	job := SeriesComplete{SeriesInstanceUID: "1.2.3.4", Revision: 1, Instances: 3, Reason: "released"}
	data, _ := json.Marshal(job)
	if _, err := js.Publish(ctx, topo.WorkSubject(), data, jetstream.WithMsgID(MsgID(job.SeriesInstanceUID, job.Revision))); err != nil {
		t.Fatal(err)
	}
	workers, err := js.CreateOrUpdateConsumer(ctx, topo.WorkStream(), jetstream.ConsumerConfig{
		Durable: "workers", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	// A worker that fails every attempt.
	for range 2 {
		b, err := workers.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range b.Messages() {
			m.Nak()
		}
	}
	// Workers keep pulling; the server notices the exhausted message then.
	if b, err := workers.Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond)); err == nil {
		for m := range b.Messages() {
			t.Fatalf("message delivered a third time: %s", m.Data())
		}
	}
	var mu sync.Mutex
	var got []DeadLetter
	mv := &Mover{JS: js, Topology: topo, OnDeadLetter: func(_ context.Context, dl DeadLetter) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, dl)
		return nil
	}}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mv.Run(runCtx) }()
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("no dead letter reported")
		case <-time.After(20 * time.Millisecond):
		}
	}
	stop()
	<-done
	if len(got) != 1 || got[0].Kind != "max_deliveries" || got[0].Job == nil || got[0].Job.SeriesInstanceUID != "1.2.3.4" {
		t.Fatalf("dead letters %+v", got)
	}
	if n := streamMsgs(t, js, topo.WorkStream()); n != 0 {
		t.Errorf("work stream still holds %d messages", n)
	}
	if n := streamMsgs(t, js, topo.DeadLetterStream()); n != 1 {
		t.Errorf("dead-letter stream holds %d messages, want 1", n)
	}
	dlq, _ := js.Stream(ctx, topo.DeadLetterStream())
	m, err := dlq.GetLastMsgForSubject(ctx, topo.DeadLetterSubject("max_deliveries"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(HeaderDeliveries) != "2" || string(m.Data) != string(data) {
		t.Errorf("dead letter headers %v data %s", m.Header, m.Data)
	}
}
