package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otonode/otonode/internal/testenv"
)

// orthanc is a real Orthanc PACS on free ports, stopped at cleanup.
type orthanc struct {
	aet       string
	dicomPort int
	url       string
}

func startOrthanc(t *testing.T) *orthanc {
	t.Helper()
	bin := testenv.Tool(t, "Orthanc")
	// A free port may be taken by another process before Orthanc binds it
	// (the machine runs other tests): try again on new ports.
	for try := 1; ; try++ {
		o, out, err := launchOrthanc(t, bin)
		if err == nil {
			return o
		}
		if try == 3 || !strings.Contains(out, "already in use") {
			t.Fatalf("Orthanc did not come up: %v\n%s", err, tail(out, 6000))
		}
		t.Logf("Orthanc lost a port to another process (%v); trying new ports", err)
	}
}

// launchOrthanc starts Orthanc on free ports and waits until it answers,
// or returns its output when it does not.
func launchOrthanc(t *testing.T, bin string) (*orthanc, string, error) {
	dir := t.TempDir()
	o := &orthanc{aet: "ORTHANC", dicomPort: freePort(t)}
	hport := freePort(t)
	o.url = fmt.Sprintf("http://127.0.0.1:%d", hport)
	cfg := map[string]any{"Name": "CONFTEST", "StorageDirectory": dir, "IndexDirectory": dir,
		"DicomAet": o.aet, "DicomPort": o.dicomPort, "HttpPort": hport, "RemoteAccessAllowed": false,
		"AuthenticationEnabled": false, "DicomCheckCalledAet": false, "UnknownSopClassAccepted": true,
		"DicomAlwaysAllowStore": true, "DicomAlwaysAllowEcho": true, "Plugins": []string{}, "StableAge": 60}
	b, _ := json.Marshal(cfg)
	path := filepath.Join(dir, "orthanc.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, path)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	dieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		cmd.Process.Kill()
		<-exited
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(o.url + "/system")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Cleanup(func() {
					stop()
					if t.Failed() {
						t.Logf("Orthanc output (tail):\n%s", tail(out.String(), 3000))
					}
				})
				return o, "", nil
			}
		}
		select {
		case <-exited:
			return nil, out.String(), fmt.Errorf("Orthanc exited")
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return nil, out.String(), fmt.Errorf("no answer after 30 s: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer that a process writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// call does one REST call and decodes the JSON answer into v (if not nil).
func (o *orthanc) call(ctx context.Context, method, path string, body, v any) error {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, o.url+path, rd)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("orthanc %s %s: %s: %s", method, path, resp.Status, raw)
	}
	if v != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			return fmt.Errorf("orthanc %s %s: %w", method, path, err)
		}
	}
	return nil
}

// orthancSeries is a series as Orthanc lists it.
type orthancSeries struct {
	ID            string            `json:"ID"`
	Instances     []string          `json:"Instances"`
	MainDicomTags map[string]string `json:"MainDicomTags"`
}

// studySeries returns the series Orthanc holds of a study (none when it
// does not know the study yet).
func (o *orthanc) studySeries(ctx context.Context, studyUID string) ([]orthancSeries, error) {
	var found []struct{ ID, Type string }
	if err := o.call(ctx, "POST", "/tools/lookup", studyUID, &found); err != nil {
		return nil, err
	}
	for _, f := range found {
		if f.Type != "Study" {
			continue
		}
		var series []orthancSeries
		err := o.call(ctx, "GET", "/studies/"+f.ID+"/series", nil, &series)
		return series, err
	}
	return nil, nil
}

// tags returns an instance's tags in Orthanc's simplified JSON.
func (o *orthanc) tags(ctx context.Context, instanceID string) (map[string]any, error) {
	var v map[string]any
	err := o.call(ctx, "GET", "/instances/"+instanceID+"/simplified-tags", nil, &v)
	return v, err
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
