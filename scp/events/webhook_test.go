package events

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestWebhook: only flagged events are POSTed, signed; an endpoint that fails
// gets the event again (same message id) until it answers 2xx, and an event
// it acknowledged is not sent twice.
func TestWebhook(t *testing.T) {
	e, nc, js := embedded(t, t.TempDir())
	defer e.Shutdown()
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topo := Topology{Prefix: "hook"}
	if err := topo.EnsureStreams(ctx, js, StreamOptions{}); err != nil {
		t.Fatal(err)
	}

	type post struct {
		event, id, sig, body string
	}
	var mu sync.Mutex
	var posts []post
	failFirst := 2
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		posts = append(posts, post{r.Header.Get(HeaderWebhookEvent), r.Header.Get(HeaderWebhookMsgID), r.Header.Get(HeaderWebhookSignature), string(b)})
		if failFirst > 0 {
			failFirst--
			http.Error(w, "radiology system restarting", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	h := &Webhook{JS: js, Topology: topo, URL: srv.URL, Secret: "s3cret", RetryBase: 50 * time.Millisecond}
	hctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- h.Run(hctx) }()
	// The consumer takes only events that arrive after it exists.
	waitFor(t, 5*time.Second, func() bool {
		_, err := js.Consumer(ctx, topo.EventsStream(), "webhook")
		return err == nil
	})

	flagged := `{"series_instance_uid":"1.2.3","status":"flagged"}`
	if _, err := js.Publish(ctx, topo.AnalysisDoneSubject(), []byte(`{"series_instance_uid":"1.2.3","status":"done"}`), jetstream.WithMsgID("a/done")); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, topo.AnalysisFlaggedSubject(), []byte(flagged), jetstream.WithMsgID("a/flagged")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(posts) >= 3 })
	time.Sleep(300 * time.Millisecond) // room for a wrong extra delivery
	stop()
	<-done

	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 3 {
		t.Fatalf("%d POSTs, want 3 (two refused, one accepted): %+v", len(posts), posts)
	}
	for _, p := range posts {
		if p.event != "flagged" || p.id != "a/flagged" || p.body != flagged {
			t.Errorf("POST %+v, want the flagged event with its message id", p)
		}
		if p.sig != Sign("s3cret", []byte(flagged)) {
			t.Errorf("signature %q does not verify", p.sig)
		}
	}
}

func TestWebhookEvents(t *testing.T) {
	if _, err := (&Webhook{Events: []string{"flagged", "exploded"}}).subjects(); err == nil {
		t.Fatal("an unknown event kind was accepted")
	}
	if got := (&Webhook{}).delay(20); got != 10*time.Minute {
		t.Fatalf("delay after 20 deliveries %v, want the 10 min cap", got)
	}
	if got := (&Webhook{RetryBase: time.Second}).delay(3); got != 4*time.Second {
		t.Fatalf("third delay %v, want 4s", got)
	}
}

func waitFor(t *testing.T, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
