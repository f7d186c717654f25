package conformance

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otonode/otonode/internal/testenv"
)

// faultTTA is the fault tests' augmentation: one pass. They test what the
// node does around an analysis, not its uncertainty, and one pass is a
// quarter of the e2e's CPU.
const faultTTA = "identity"

// analysed is what a worker made of the fault tests' phantom, to compare a
// remote worker's result with a local one's.
type analysed struct {
	ear, helicotrema, ovalWindow, roundWindow string
	volume                                    float64
	seg, sr                                   string // SOP Instance UIDs in the PACS
	segPixels                                 string // SHA-256 of the SEG's Pixel Data
}

// TestWorkerAndExportFaults is issue 9's fault acceptance against Orthanc
// as the PACS, on one normal phantom:
//
//   - the local worker is killed (SIGKILL) in the middle of the analysis:
//     the supervisor restarts it, the job comes back after the worker's
//     ack wait, the new worker takes the expired claim and analyses again;
//   - the node is killed while an export batch is on the wire (a proxy in
//     front of Orthanc passes the first C-STORE response and holds the
//     rest): after a restart the batch goes again once its lease is over;
//
// and in the end Orthanc holds each source instance once and exactly one
// SEG and one SR. Then a remote worker (its own data directory, input by
// C-GET from the node) analyses the same phantom for another node and must
// make the same SEG and SR.
func TestWorkerAndExportFaults(t *testing.T) {
	start := time.Now()
	bin := buildOtonode(t)
	ortLib := onnxRuntime(t)
	model := calibratedModel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "case")
	run(t, ctx, bin, "phantom", "case", "--seed", "11", "--out", dir, "--size", "128")
	study, series := seriesOf(t, dir)
	instances, err := filepath.Glob(filepath.Join(dir, "dicom", "*"))
	if err != nil || len(instances) == 0 {
		t.Fatalf("phantom has no DICOM files: %v", err)
	}
	t.Logf("built and generated in %v", time.Since(start).Round(time.Second))

	var local *analysed
	t.Run("killed worker and export", func(t *testing.T) {
		start := time.Now()
		local = killedWorkerAndExport(t, ctx, bin, ortLib, model, dir, study, series, len(instances))
		t.Logf("took %v (2 shared cores)", time.Since(start).Round(time.Second))
	})
	t.Run("remote worker", func(t *testing.T) {
		start := time.Now()
		remote := remoteWorker(t, ctx, bin, ortLib, model, dir, study, series)
		t.Logf("took %v (2 shared cores)", time.Since(start).Round(time.Second))
		if local == nil {
			t.Fatal("no local result to compare with")
		}
		sameAnalysis(t, *local, *remote)
	})
}

func killedWorkerAndExport(t *testing.T, ctx context.Context, bin, ortLib, model, dir, study, series string, sources int) *analysed {
	pacs := startOrthanc(t)
	proxy := startCutProxy(t, pacs.dicomPort, 1)
	dsn := testenv.Postgres(t, "otonode_fault")
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// A short ack wait brings the killed worker's job back soon; a short
	// lease the cut batch; the export timeout outlasts the test's kill.
	node := startServe(t, bin, serveOptions{dsn: dsn, pacs: pacs, model: model, ortLib: ortLib, tta: faultTTA,
		pacsPort: proxy.port, objects: "all",
		worker: []string{"ack_wait: 9s"},
		export: []string{"lease: 4s", "batch_size: 20", "timeout: 2m"}})
	run(t, ctx, bin, "push", "--quiet", "--host", "127.0.0.1", "--port", fmt.Sprint(node.dicomPort),
		"--aet", "SCANNER", "--called-aet", node.aet, filepath.Join(dir, "dicom"))

	// Kill the worker as soon as the revision is analysing: one pass over
	// this phantom takes only 1-2 s on a fast, idle machine, so waiting any
	// longer could let the analysis finish before the kill.
	waitUntil(t, ctx, "the revision being analysed", func() (bool, error) {
		var state string
		err := db.QueryRowContext(ctx, `SELECT s.state FROM series_state s JOIN series se
			ON se.series_instance_uid = s.series_instance_uid AND se.current_revision = s.revision
			WHERE s.series_instance_uid = $1`, series).Scan(&state)
		if err == sql.ErrNoRows {
			return false, nil
		}
		return state == "analysing", err
	})
	pid := workerPID(t, node)
	var done int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM analyses WHERE series_instance_uid = $1`, series).Scan(&done); err != nil || done != 0 {
		t.Fatalf("analysis rows before the kill: %d, %v; the kill must land in the middle of the analysis", done, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t.Logf("worker pid %d killed in the middle of the analysis", pid)

	rows := waitAnalysis(t, ctx, db, series)
	if len(rows) != 1 || rows[0].ear != "R" || rows[0].status != "done" {
		t.Errorf("analysis rows %+v, want one done row for the right ear", rows)
	}
	var attempt int
	var worker string
	if err := db.QueryRowContext(ctx, `SELECT attempt, worker FROM claims WHERE series_instance_uid = $1`, series).Scan(&attempt, &worker); err != nil {
		t.Fatal(err)
	}
	if attempt != 2 || strings.HasSuffix(worker, fmt.Sprintf("/%d", pid)) {
		t.Errorf("claim attempt %d by %s; want the second attempt, by another worker than the killed pid %d", attempt, worker, pid)
	}

	// The results reach the node; the exporter's first batch is cut.
	select {
	case <-proxy.stalled:
	case <-ctx.Done():
		t.Fatalf("no export association reached the PACS: %v", ctx.Err())
	}
	if err := node.proc.Kill(); err != nil {
		t.Fatal(err)
	}
	<-node.exited
	var cut []string
	rs, err := db.QueryContext(ctx, `SELECT sop_instance_uid FROM exports WHERE state = 'pending' AND next_attempt_at > $1`,
		time.Now().UnixMicro())
	if err != nil {
		t.Fatal(err)
	}
	for rs.Next() {
		var sop string
		rs.Scan(&sop)
		cut = append(cut, sop)
	}
	rs.Close()
	if len(cut) == 0 {
		t.Fatal("no export row leased when the node was killed: the batch was not cut")
	}
	t.Logf("node killed with %d objects of the cut batch unconfirmed", len(cut))

	restarted := time.Now()
	launchServe(t, node, node.dir, ortLib)
	waitUntil(t, ctx, "every export sent", func() (bool, error) {
		var open, all int
		err := db.QueryRowContext(ctx, `SELECT COUNT(*) FILTER (WHERE state <> 'sent'), COUNT(*) FROM exports`).Scan(&open, &all)
		return err == nil && all >= sources+2 && open == 0, err
	})
	for _, sop := range cut {
		var attempts int
		var sent int64
		if err := db.QueryRowContext(ctx, `SELECT attempts, sent_at FROM exports WHERE sop_instance_uid = $1`, sop).Scan(&attempts, &sent); err != nil {
			t.Fatal(err)
		}
		if attempts != 1 || time.UnixMicro(sent).Before(restarted) {
			t.Errorf("cut object %s: %d attempts, sent at %v; want one attempt, after the restart at %v", sop, attempts,
				time.UnixMicro(sent), restarted)
		}
	}
	got := pacsInstances(t, ctx, pacs, study)
	if len(got["CT"]) != sources || len(got["SEG"]) != 1 || len(got["SR"]) != 1 || len(got["KO"]) > 1 {
		t.Errorf("Orthanc holds %s; want the %d source instances, one SEG and one SR", describe(got), sources)
	}
	var stats struct{ CountInstances int }
	if err := pacs.call(ctx, "GET", "/statistics", nil, &stats); err != nil {
		t.Fatal(err)
	}
	if want := len(got["CT"]) + len(got["SEG"]) + len(got["SR"]) + len(got["KO"]); stats.CountInstances != want {
		t.Errorf("Orthanc counts %d instances, the study %d", stats.CountInstances, want)
	}
	return result(t, ctx, db, pacs, series, got)
}

func remoteWorker(t *testing.T, ctx context.Context, bin, ortLib, model, dir, study, series string) *analysed {
	pacs := startOrthanc(t)
	dsn := testenv.Postgres(t, "otonode_fault")
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	node := startServe(t, bin, serveOptions{dsn: dsn, pacs: pacs, model: model, ortLib: ortLib, tta: faultTTA,
		worker: []string{"disabled: true"}})
	// The remote worker shares the node's database and NATS, nothing else:
	// its own data directory, and no access to the node's files.
	wdir := t.TempDir()
	cfg := fmt.Sprintf(`data_dir: %s
database: %q
nats:
  url: %s
  prefix: %s
worker:
  id: remote-worker
  model: %s
  ort_lib: %s
  tta: %s
  instances_dir: "-"
  node: %s@127.0.0.1:%d
log:
  level: debug
`, filepath.Join(wdir, "data"), dsn, node.natsURL, node.topology.Prefix, model, ortLib, faultTTA, node.aet, node.dicomPort)
	path := filepath.Join(wdir, "worker.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := startWorker(t, bin, path, wdir)
	run(t, ctx, bin, "push", "--quiet", "--host", "127.0.0.1", "--port", fmt.Sprint(node.dicomPort),
		"--aet", "SCANNER", "--called-aet", node.aet, filepath.Join(dir, "dicom"))
	rows := waitAnalysis(t, ctx, db, series)
	if len(rows) != 1 || rows[0].ear != "R" || rows[0].status != "done" {
		t.Errorf("analysis rows %+v, want one done row for the right ear", rows)
	}
	var by string
	if err := db.QueryRowContext(ctx, `SELECT worker FROM analyses WHERE series_instance_uid = $1`, series).Scan(&by); err != nil || by != "remote-worker" {
		t.Errorf("analysed by %q (%v), want remote-worker", by, err)
	}
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "series retrieved by C-GET") {
		t.Errorf("the remote worker's log does not say it retrieved the series by C-GET")
	}
	got := waitPACS(t, ctx, pacs, study, "SEG", "SR")
	if len(got["SEG"]) != 1 || len(got["SR"]) != 1 || len(got["CT"]) != 0 {
		t.Errorf("Orthanc holds %s; want one SEG and one SR (results only)", describe(got))
	}
	return result(t, ctx, db, pacs, series, got)
}

// startWorker runs `otonode worker --config path` until the test ends and
// returns its log file.
func startWorker(t *testing.T, bin, path, dir string) string {
	t.Helper()
	logPath := filepath.Join(dir, "worker.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "worker", "--config", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	dieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Error("otonode worker did not stop within 30 s of SIGTERM")
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("otonode worker log (tail):\n%s", tail(string(b), 8000))
		}
	})
	return logPath
}

// workerPID finds the `otonode worker` child of the node.
func workerPID(t *testing.T, node *serveProc) int {
	t.Helper()
	for pid, args := range childProcesses(node.proc.Pid) {
		if len(args) > 1 && args[1] == "worker" {
			return pid
		}
	}
	t.Fatalf("otonode serve (pid %d) has no worker child", node.proc.Pid)
	return 0
}

// waitUntil polls cond every 200 ms until it holds, fails, or ctx ends.
func waitUntil(t *testing.T, ctx context.Context, what string, cond func() (bool, error)) {
	t.Helper()
	for {
		ok, err := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last error %v)", what, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// pacsInstances returns the Orthanc instance ids of a study by modality.
func pacsInstances(t *testing.T, ctx context.Context, pacs *orthanc, study string) map[string][]string {
	t.Helper()
	series, err := pacs.studySeries(ctx, study)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, s := range series {
		m := s.MainDicomTags["Modality"]
		out[m] = append(out[m], s.Instances...)
	}
	return out
}

// waitPACS waits until the study holds an instance of each modality.
func waitPACS(t *testing.T, ctx context.Context, pacs *orthanc, study string, modalities ...string) map[string][]string {
	t.Helper()
	var got map[string][]string
	waitUntil(t, ctx, strings.Join(modalities, " and ")+" in Orthanc", func() (bool, error) {
		got = pacsInstances(t, ctx, pacs, study)
		return !slices.ContainsFunc(modalities, func(m string) bool { return len(got[m]) == 0 }), nil
	})
	// Anything else of the analysis arrives with them; give a duplicate
	// the moment to show up.
	time.Sleep(2 * time.Second)
	return pacsInstances(t, ctx, pacs, study)
}

func describe(got map[string][]string) string {
	var parts []string
	for m, ids := range got {
		parts = append(parts, fmt.Sprintf("%d %s", len(ids), m))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// result reads the analysis row and the SEG and SR in Orthanc.
func result(t *testing.T, ctx context.Context, db *sql.DB, pacs *orthanc, series string, got map[string][]string) *analysed {
	t.Helper()
	var a analysed
	var vol sql.NullFloat64
	if err := db.QueryRowContext(ctx, `SELECT ear, volume_mm3, helicotrema, oval_window, round_window FROM analyses
		WHERE series_instance_uid = $1 ORDER BY ear LIMIT 1`, series).Scan(&a.ear, &vol, &a.helicotrema, &a.ovalWindow, &a.roundWindow); err != nil {
		t.Fatal(err)
	}
	a.volume = vol.Float64
	if len(got["SEG"]) == 0 || len(got["SR"]) == 0 {
		t.Fatalf("Orthanc holds %s, no SEG and SR to compare", describe(got))
	}
	for _, k := range []struct {
		modality string
		uid      *string
	}{{"SEG", &a.seg}, {"SR", &a.sr}} {
		tags, err := pacs.tags(ctx, got[k.modality][0])
		if err != nil {
			t.Fatal(err)
		}
		*k.uid = str(tags, "SOPInstanceUID")
	}
	req, err := http.NewRequestWithContext(ctx, "GET", pacs.url+"/instances/"+got["SEG"][0]+"/content/7fe0-0010", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("SEG pixel data from Orthanc: %s, %v", resp.Status, err)
	}
	a.segPixels = hex.EncodeToString(h.Sum(nil))
	return &a
}

// sameAnalysis compares a remote worker's result with a local one's: the
// same objects (UIDs derive from the series, revision and model), the same
// segmentation and measurements.
func sameAnalysis(t *testing.T, local, remote analysed) {
	t.Helper()
	if remote.seg != local.seg || remote.sr != local.sr {
		t.Errorf("remote SEG/SR %s/%s, local %s/%s", remote.seg, remote.sr, local.seg, local.sr)
	}
	if remote.ear != local.ear || math.Abs(remote.volume-local.volume) > 1e-6*local.volume {
		t.Errorf("remote ear %s %.6f mm³, local ear %s %.6f mm³", remote.ear, remote.volume, local.ear, local.volume)
	}
	if remote.helicotrema != local.helicotrema || remote.ovalWindow != local.ovalWindow || remote.roundWindow != local.roundWindow {
		t.Errorf("remote landmarks %s | %s | %s, local %s | %s | %s", remote.helicotrema, remote.ovalWindow, remote.roundWindow,
			local.helicotrema, local.ovalWindow, local.roundWindow)
	}
	if remote.segPixels != local.segPixels {
		t.Errorf("remote SEG pixel data (SHA-256 %s) differs from the local one's (%s)", remote.segPixels, local.segPixels)
	}
}
