package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otonode/otonode/scp/config"
)

// lockedBuffer is a bytes.Buffer safe for the supervisor's copier.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSupervisorRestartsAndStops: a worker that crashes is restarted with
// a growing delay, its output is prefixed, and at shutdown a running one
// gets SIGTERM and may finish.
func TestSupervisorRestartsAndStops(t *testing.T) {
	var out lockedBuffer
	crash := &supervisor{cmd: []string{"sh", "-c", "echo started; exit 3"}, restart: 50 * time.Millisecond,
		log: slog.New(slog.DiscardHandler), out: &out}
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	crash.run(ctx)
	// 50 + 100 + 200 ms of delays fit; 400 more do not.
	if n := strings.Count(out.String(), "started"); n < 3 || n > 4 {
		t.Errorf("%d starts in 600 ms:\n%s", n, out.String())
	}
	if !strings.HasPrefix(out.String(), "worker[") {
		t.Errorf("output not prefixed: %q", out.String())
	}

	var out2 lockedBuffer
	graceful := &supervisor{cmd: []string{"sh", "-c", `trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.05; done`},
		restart: time.Second, log: slog.New(slog.DiscardHandler), out: &out2, grace: 5 * time.Second}
	ctx2, cancel2 := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- graceful.run(ctx2) }()
	for !strings.Contains(out2.String(), "ready") {
		time.Sleep(20 * time.Millisecond)
	}
	cancel2()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("supervisor did not stop")
	}
	if !strings.Contains(out2.String(), "got-term") {
		t.Errorf("worker did not get SIGTERM: %q", out2.String())
	}
}

func TestPrepareWorker(t *testing.T) {
	c := config.Default()
	if err := prepareWorker(&c); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.NATS.EmbeddedListen, "127.0.0.1:") {
		t.Errorf("embedded NATS not opened for the worker: %q", c.NATS.EmbeddedListen)
	}
	for _, change := range []func(*config.Config){
		func(c *config.Config) { c.Worker.Disabled = true },
		func(c *config.Config) { c.NATS.URL = "nats://nats:4222" },
	} {
		c := config.Default()
		change(&c)
		if err := prepareWorker(&c); err != nil || c.NATS.EmbeddedListen != "" {
			t.Errorf("embedded listen %q, %v", c.NATS.EmbeddedListen, err)
		}
	}
}
