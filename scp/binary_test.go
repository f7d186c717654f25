package scp

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// otonodeBinary builds cmd/otonode once per test run.
func otonodeBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "otonode-bin-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "otonode")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/otonode/otonode/cmd/otonode")
		var out []byte
		out, buildErr = cmd.CombinedOutput()
		if buildErr != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", buildErr, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is a running `otonode serve`.
type proc struct {
	cmd     *exec.Cmd
	dicom   string
	http    string
	natsURL string
	stderr  *bytes.Buffer
	mu      *sync.Mutex
	exited  chan error
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

type lockedBuf struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedBuf) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(b)
}

// serveArgs are the flags of a test node on fresh loopback ports.
func serveArgs(t testing.TB, dataDir string) (args []string, dicomAddr, httpAddr, natsAddr string) {
	dp, hp, np := freePort(t), freePort(t), freePort(t)
	dicomAddr = fmt.Sprintf("127.0.0.1:%d", dp)
	httpAddr = fmt.Sprintf("127.0.0.1:%d", hp)
	natsAddr = fmt.Sprintf("127.0.0.1:%d", np)
	args = []string{"serve", "--data_dir", dataDir, "--dicom.host", "127.0.0.1", "--dicom.port", fmt.Sprint(dp),
		"--http.listen", httpAddr, "--nats.embedded_listen", natsAddr, "--completion.quiet_period", "500ms",
		"--completion.inactivity", "1500ms", "--completion.study_settle", "300ms", "--selection.min_instances", "2",
		"--storage.min_free_bytes", "0",
		// The ingest tests count the node's own messages and files: no
		// analysis worker, no demo export folder.
		"--worker.disabled", "true", "--export.demo_folder", "off"}
	return args, dicomAddr, httpAddr, natsAddr
}

// startProc runs argv (the binary first, or a tracer and the binary) and
// waits for the node's "otonode serving" line.
func startProc(t testing.TB, argv []string, dicomAddr, httpAddr, natsAddr string) *proc {
	t.Helper()
	p := &proc{dicom: dicomAddr, http: httpAddr, natsURL: "nats://" + natsAddr, stderr: &bytes.Buffer{}, mu: &sync.Mutex{},
		exited: make(chan error, 1)}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stderr = lockedBuf{p.mu, p.stderr}
	p.cmd.WaitDelay = 2 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			select {
			case <-p.exited:
			case <-time.After(5 * time.Second):
			}
		}
	})
	end := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.log(), "otonode serving") {
		select {
		case err := <-p.exited:
			t.Fatalf("otonode exited: %v\n%s", err, p.log())
		default:
		}
		if time.Now().After(end) {
			t.Fatalf("otonode did not start:\n%s", p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

func (p *proc) stop(t testing.TB, sig syscall.Signal) error {
	p.cmd.Process.Signal(sig)
	select {
	case err := <-p.exited:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("otonode did not stop:\n%s", p.log())
	}
	return nil
}

// TestDurabilityOrderStrace traces `otonode serve` storing one instance
// and checks, in the system calls, the order "instance written to a
// segment (its record header last) → segment fdatasynced → index committed
// (written to SQLite's WAL; the index is not flushed per commit: Reindex
// rebuilds it from the durable files after a power cut) → C-STORE-RSP
// written to the socket". The instance file itself is written and made
// durable in the background (store/files: journal; store's strace test
// checks that order).
func TestDurabilityOrderStrace(t *testing.T) {
	straceBin := lookTool(t, "strace")
	bin := otonodeBinary(t)
	dir := t.TempDir()
	args, dicomAddr, httpAddr, natsAddr := serveArgs(t, filepath.Join(dir, "data"))
	traceFile := filepath.Join(dir, "trace.txt")
	p := startProc(t, append([]string{bin}, args...), dicomAddr, httpAddr, natsAddr)
	// Attach to the running node (every thread), so that SIGTERM reaches
	// the node itself and strace ends with it.
	st := exec.Command(straceBin, "-f", "-yy", "-s", "4", "-o", traceFile, "-p", fmt.Sprint(p.cmd.Process.Pid),
		"-e", "trace=fsync,fdatasync,link,linkat,rename,renameat,renameat2,write,writev,pwrite64,sendto,sendmsg")
	var stErr bytes.Buffer
	st.Stderr = &stErr
	if err := st.Start(); err != nil {
		t.Fatal(err)
	}
	stDone := make(chan error, 1)
	go func() { stDone <- st.Wait() }()
	t.Cleanup(func() { st.Process.Kill() })
	time.Sleep(time.Second) // strace attaches to each thread

	root := uidRoot()
	s := seriesSpec{Study: root + ".1", Series: root + ".2", Number: 1, N: 1, Thickness: "0.6"}
	sop, ds := s.dataSet(0)
	ctx := context.Background()
	a, err := dimse.Dial(ctx, dicomAddr, dimse.DialOptions{CallingAETitle: "CT1", CalledAETitle: "OTONODE",
		Proposals: dimse.StorageProposals(ctImage)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Store(ctx, dimse.Instance{SOPClassUID: ctImage, SOPInstanceUID: sop, TransferSyntaxUID: explicit,
		DataSet: bytes.NewReader(ds)}); err != nil {
		t.Fatal(err)
	}
	a.Release(ctx)
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.log())
	}
	select {
	case <-stDone:
	case <-time.After(10 * time.Second):
		t.Fatalf("strace did not end: %s", stErr.String())
	}
	trace, err := os.ReadFile(traceFile)
	if err != nil {
		t.Fatal(err)
	}
	order, err := durabilityOrder(string(trace), sop, dicomAddr)
	if err != nil {
		t.Fatalf("%v\ntrace:\n%s", err, tail(string(trace), 60))
	}
	t.Logf("order: %s", order)
}

var reSyscall = regexp.MustCompile(`^\d+\s+(\w+)\((\d+)<(.*?)>[,)]`)

// durabilityOrder finds the steps in an strace -f -yy -s 4 log and checks
// their order; it returns the line numbers as a description.
func durabilityOrder(trace, sop, dicomAddr string) (string, error) {
	lines := strings.Split(trace, "\n")
	sock := ":" + dicomAddr[strings.LastIndex(dicomAddr, ":")+1:] + "->"
	record, segSync, walWrite, rsp := -1, -1, -1, -1
	for i, l := range lines {
		m := reSyscall.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		call, path := m[1], m[3]
		isSync := call == "fsync" || call == "fdatasync"
		switch {
		case call == "pwrite64" && record < 0 && strings.HasSuffix(path, ".seg") && strings.Contains(l, `"OTOR"`):
			record = i
		case isSync && record >= 0 && segSync < 0 && strings.HasSuffix(path, ".seg"):
			segSync = i
		case (call == "pwrite64" || call == "write") && segSync >= 0 && walWrite < 0 && strings.Contains(path, "index.db-wal"):
			walWrite = i
		case rsp < 0 && (call == "write" || call == "writev" || call == "sendto" || call == "sendmsg") &&
			strings.Contains(path, sock) && strings.Contains(l, `"\4`):
			rsp = i
		}
	}
	desc := fmt.Sprintf("segment record line %d, segment fdatasync %d, index WAL write %d, C-STORE-RSP %d",
		record+1, segSync+1, walWrite+1, rsp+1)
	if record < 0 || segSync < 0 || walWrite < 0 || rsp < 0 {
		return desc, fmt.Errorf("a step is missing: %s", desc)
	}
	if !(record < segSync && segSync < walWrite && walWrite < rsp) {
		return desc, fmt.Errorf("wrong order: %s", desc)
	}
	return desc, nil
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// TestDurabilityOrderParser makes sure the trace check can fail: the
// response before the index commit is caught.
func TestDurabilityOrderParser(t *testing.T) {
	good := []string{
		`10 pwrite64(19</d/instances/seg/00000000.seg>, "\0\0\0\0"..., 262144, 4608) = 262144`,
		`10 pwrite64(19</d/instances/seg/00000000.seg>, "OTOR"..., 512, 4096) = 512`,
		`10 fdatasync(19</d/instances/seg/00000000.seg>) = 0`,
		`10 pwrite64(8</d/index.db-wal>, "\0\0\0\2"..., 4120, 32) = 4120`,
		`11 write(18<TCP:[127.0.0.1:4000->127.0.0.1:5000]>, "\4\0\0\0"..., 134) = 134`,
	}
	if _, err := durabilityOrder(strings.Join(good, "\n"), "1.2.3", "127.0.0.1:4000"); err != nil {
		t.Fatal(err)
	}
	bad := []string{good[0], good[1], good[2], good[4], good[3]}
	if _, err := durabilityOrder(strings.Join(bad, "\n"), "1.2.3", "127.0.0.1:4000"); err == nil {
		t.Fatal("response before the index commit passed")
	}
	noSync := []string{good[0], good[1], good[3], good[4]}
	if _, err := durabilityOrder(strings.Join(noSync, "\n"), "1.2.3", "127.0.0.1:4000"); err == nil {
		t.Fatal("missing segment fdatasync passed")
	}
}
