// Package ops serves a process's operations endpoints: /healthz (the
// process runs), /readyz (it can do its work: each readiness check passes)
// and /metrics (Prometheus). Every otonode process, node or worker, has them.
package ops

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one dependency is usable; nil means ready.
type Check func(ctx context.Context) error

// Handler serves the endpoints. Register checks before serving.
type Handler struct {
	Registry *prometheus.Registry
	// CheckTimeout bounds each readiness check (default 2 s).
	CheckTimeout time.Duration

	mu     sync.Mutex
	checks map[string]Check
}

// NewHandler returns a handler with a fresh registry that already holds the
// Go runtime and process collectors.
func NewHandler() *Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Handler{Registry: reg}
}

// AddCheck registers a readiness check under a name shown in /readyz.
func (h *Handler) AddCheck(name string, c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.checks == nil {
		h.checks = map[string]Check{}
	}
	h.checks[name] = c
}

// ServeHTTP routes /healthz, /readyz and /metrics.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	case "/readyz":
		h.ready(w, r)
	case "/metrics":
		promhttp.HandlerFor(h.Registry, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (h *Handler) ready(w http.ResponseWriter, r *http.Request) {
	timeout := h.CheckTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	h.mu.Lock()
	names := make([]string, 0, len(h.checks))
	for n := range h.checks {
		names = append(names, n)
	}
	checks := make(map[string]Check, len(h.checks))
	for n, c := range h.checks {
		checks[n] = c
	}
	h.mu.Unlock()
	sort.Strings(names)
	status := map[string]string{}
	code := http.StatusOK
	for _, n := range names {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		err := checks[n](ctx)
		cancel()
		if err != nil {
			status[n] = err.Error()
			code = http.StatusServiceUnavailable
		} else {
			status[n] = "ok"
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(status)
}
