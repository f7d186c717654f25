package export

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otonode/otonode/store/index"
)

// orthanc is a real PACS: Orthanc from its Debian package, on ports of its
// own, taking only the storage SOP classes it knows.
type orthanc struct {
	t          *testing.T
	dir        string
	dicom, web int
	cmd        *exec.Cmd
}

func newOrthanc(t *testing.T) *orthanc {
	t.Helper()
	need(t, "Orthanc")
	o := &orthanc{t: t, dir: t.TempDir(), dicom: freePort(t), web: freePort(t)}
	cfg := map[string]any{"Name": "EXPORTTEST", "StorageDirectory": filepath.Join(o.dir, "db"), "IndexDirectory": filepath.Join(o.dir, "db"),
		"DicomAet": "ORTHANC", "DicomPort": o.dicom, "HttpPort": o.web, "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
		"DicomCheckCalledAet": false, "UnknownSopClassAccepted": false, "DicomAlwaysAllowStore": true, "Plugins": []string{},
		"StableAge": 60}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(o.dir, "orthanc.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.stop)
	return o
}

func (o *orthanc) start() {
	o.t.Helper()
	o.cmd = exec.Command("Orthanc", filepath.Join(o.dir, "orthanc.json"))
	log, err := os.Create(filepath.Join(o.dir, "orthanc.log"))
	if err != nil {
		o.t.Fatal(err)
	}
	o.cmd.Stdout, o.cmd.Stderr = log, log
	if err := o.cmd.Start(); err != nil {
		o.t.Fatal(err)
	}
	waitFor(o.t, "Orthanc to answer", 30*time.Second, func() bool {
		var sys map[string]any
		return o.get("/system", &sys) == nil
	})
}

// stop ends Orthanc (a PACS going down for maintenance).
func (o *orthanc) stop() {
	if o.cmd == nil || o.cmd.Process == nil {
		return
	}
	o.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { o.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		o.cmd.Process.Kill()
		<-done
	}
	o.cmd = nil
}

func (o *orthanc) get(path string, v any) error {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", o.web, path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// instances returns the SOP Instance UIDs Orthanc holds.
func (o *orthanc) instances() []string {
	o.t.Helper()
	var ids []string
	if err := o.get("/instances", &ids); err != nil {
		o.t.Fatal(err)
	}
	var out []string
	for _, id := range ids {
		var tags map[string]any
		if err := o.get("/instances/"+id+"/simplified-tags", &tags); err != nil {
			o.t.Fatal(err)
		}
		out = append(out, fmt.Sprint(tags["SOPInstanceUID"]))
	}
	slices.Sort(out)
	return out
}

// TestExportToOrthanc: a real PACS receives the results; an object of a SOP
// class it refuses (in association negotiation) is retried on later
// associations and ends dead without holding up the others; Orthanc stopped while a result is exported gets it once
// it is back.
func TestExportToOrthanc(t *testing.T) {
	each(t, func(t *testing.T, open func() *index.Index) {
		ctx := context.Background()
		idx := open()
		n := newNode(t, idx)
		s := n.scene("1.2.826.0.1.7.4")
		refused := "1.2.826.0.1.7.4.6.1"
		n.result(s.source, refused, "1.2.826.0.1.7.99.1", index.KindKOSFlag, true) // a SOP class no PACS knows
		pacs := newOrthanc(t)
		pacs.start()
		d := Destination{Name: "orthanc", AETitle: "ORTHANC", Addr: fmt.Sprintf("127.0.0.1:%d", pacs.dicom), CallingAETitle: "OTONODE",
			AllowNotForDiagnosis: true}
		opt := Options{Destinations: []Destination{d}, MaxAttempts: 2, BackoffBase: 10 * time.Millisecond,
			BackoffMax: 20 * time.Millisecond, Timeout: 5 * time.Second}
		var logs logBuffer
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("exporter log:\n%s", logs.String())
			}
		})
		ex, err := New(idx, n.files, opt, nil, logs.logger())
		if err != nil {
			t.Fatal(err)
		}
		if err := ex.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		want := []string{s.sr, s.seg}
		slices.Sort(want)
		if got := pacs.instances(); !slices.Equal(got, want) {
			t.Fatalf("Orthanc holds %v, want %v", got, want)
		}
		waitFor(t, "the refused instance to die", 10*time.Second, func() bool {
			ex.Pass(ctx)
			dead, _ := idx.Exports(ctx, index.ExportFilter{State: index.ExportDead})
			return len(dead) == 1
		})
		dead, _ := idx.Exports(ctx, index.ExportFilter{State: index.ExportDead})
		if dead[0].SOPInstanceUID != refused || dead[0].Attempts != 2 || !strings.Contains(dead[0].LastError, "no accepted presentation context") {
			t.Errorf("dead %+v", dead[0])
		}
		t.Logf("Orthanc refused with: %s", dead[0].LastError)

		// Orthanc goes down; a new result waits and arrives after it is back.
		pacs.stop()
		late := "1.2.826.0.1.7.4.5.1"
		n.result(s.source, late, srStorage, index.KindSR, true)
		if err := ex.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		rows, _ := idx.Exports(ctx, index.ExportFilter{State: index.ExportPending})
		if len(rows) != 1 || rows[0].SOPInstanceUID != late || rows[0].Attempts != 1 {
			t.Fatalf("while Orthanc is down: %+v", rows)
		}
		pacs.start()
		waitFor(t, "the late result after Orthanc returned", 10*time.Second, func() bool {
			ex.Pass(ctx)
			sent, _ := idx.Exports(ctx, index.ExportFilter{State: index.ExportSent})
			return len(sent) == 3
		})
		want = append(want, late)
		slices.Sort(want)
		if got := pacs.instances(); !slices.Equal(got, want) {
			t.Errorf("Orthanc holds %v, want %v", got, want)
		}
	})
}
