package ops

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	h := NewHandler()
	stored := prometheus.NewCounter(prometheus.CounterOpts{Name: "otonode_instances_stored_total", Help: "instances stored"})
	h.Registry.MustRegister(stored)
	stored.Add(3)
	dbErr := errors.New("database: connection refused")
	var dbDown bool
	h.AddCheck("database", func(context.Context) error {
		if dbDown {
			return dbErr
		}
		return nil
	})
	srv := httptest.NewServer(h)
	defer srv.Close()

	if code, body := get(t, srv.URL+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz %d %q", code, body)
	}
	if code, body := get(t, srv.URL+"/readyz"); code != 200 || !strings.Contains(body, `"database":"ok"`) {
		t.Errorf("readyz %d %q", code, body)
	}
	dbDown = true
	if code, body := get(t, srv.URL+"/readyz"); code != 503 || !strings.Contains(body, "connection refused") {
		t.Errorf("readyz with the database down: %d %q", code, body)
	}
	code, body := get(t, srv.URL+"/metrics")
	if code != 200 || !strings.Contains(body, "otonode_instances_stored_total 3") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("metrics %d, body lacks the counter or the Go collector", code)
	}
	if code, _ := get(t, srv.URL+"/nope"); code != 404 {
		t.Errorf("unknown path %d", code)
	}
}
