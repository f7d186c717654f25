package dimse_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/dimse/dimsetest"
)

// runTool runs a dcmtk program and fails the test with its output when it
// exits non-zero.
func runTool(t *testing.T, ctx context.Context, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, requireTool(t, name), args...)
	cmd.Env = peerEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// checkReceived compares what the recorder holds with the files' data sets.
func checkReceived(t *testing.T, rec *recorder, paths ...string) {
	t.Helper()
	for _, p := range paths {
		fm, ds := dataSetOf(t, p)
		got, ok := rec.get(fm.MediaStorageSOPInstanceUID)
		if !ok {
			t.Errorf("%s: not received", filepath.Base(p))
			continue
		}
		if got.TransferSyntaxUID != fm.TransferSyntaxUID {
			t.Errorf("%s: received in %s, file is %s", filepath.Base(p), got.TransferSyntaxUID, fm.TransferSyntaxUID)
			continue
		}
		if !bytes.Equal(got.Data, ds) {
			t.Errorf("%s: received data set (%d bytes) differs from the file's (%d bytes)", filepath.Base(p), len(got.Data), len(ds))
		}
	}
}

func TestEchoscuToOurs(t *testing.T) {
	ts := dimsetest.NewServer(&dimse.Server{AETitle: "OTONODE"})
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runTool(t, ctx, "echoscu", "-aec", "OTONODE", "-aet", "ECHOSCU", ts.Host(), ts.Port())
	// A wrong called AE title is rejected, and echoscu says so.
	cmd := exec.CommandContext(ctx, requireTool(t, "echoscu"), "-aec", "NOTME", ts.Host(), ts.Port())
	cmd.Env = peerEnv()
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("echoscu to a wrong AE title succeeded:\n%s", out)
	}
}

func TestStorescuToOurs(t *testing.T) {
	rec := &recorder{}
	ts := dimsetest.NewServer(storageServer(rec))
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("one file", func(t *testing.T) {
		p := corpus(t, signedCT)
		runTool(t, ctx, "storescu", "-aec", "OTONODE", "-aet", "STORESCU", ts.Host(), ts.Port(), p)
		checkReceived(t, rec, p)
	})

	t.Run("folder +sd +r", func(t *testing.T) {
		dir := t.TempDir()
		sub := filepath.Join(dir, "a", "b")
		os.MkdirAll(sub, 0o755)
		var paths []string
		for i, f := range []string{issue141, emriSmall, testSR, scYBR} {
			src := corpus(t, f)
			d := dir
			if i%2 == 1 {
				d = sub
			}
			dst := filepath.Join(d, filepath.Base(src))
			copyFile(t, src, dst)
			paths = append(paths, dst)
		}
		runTool(t, ctx, "storescu", "-aec", "OTONODE", "+sd", "+r", ts.Host(), ts.Port(), dir)
		checkReceived(t, rec, paths...)
	})

	t.Run("storescu --max-pdu 4096", func(t *testing.T) {
		p := corpus(t, overlayMR)
		runTool(t, ctx, "storescu", "-aec", "OTONODE", "--max-pdu", "4096", ts.Host(), ts.Port(), p)
		checkReceived(t, rec, p)
	})

	t.Run("-xs JPEG lossless", func(t *testing.T) {
		p, q := corpus(t, jpegLossless), corpus(t, scJPEGLL)
		runTool(t, ctx, "storescu", "-aec", "OTONODE", "-xs", ts.Host(), ts.Port(), p, q)
		checkReceived(t, rec, p, q)
	})

	t.Run("several associations", func(t *testing.T) {
		files := []string{corpus(t, signedCT), corpus(t, overlayMR), corpus(t, testSR), corpus(t, emriSmall)}
		var wg sync.WaitGroup
		errs := make(chan error, len(files))
		for i, f := range files {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmd := exec.CommandContext(ctx, requireTool(t, "storescu"), "-aec", "OTONODE",
					"-aet", fmt.Sprintf("SCU%d", i), ts.Host(), ts.Port(), f)
				cmd.Env = peerEnv()
				if out, err := cmd.CombinedOutput(); err != nil {
					errs <- fmt.Errorf("storescu %s: %v\n%s", f, err, out)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		checkReceived(t, rec, files...)
	})
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// freePort returns a port that was free a moment ago on 127.0.0.1.
func freePort(t testing.TB) string {
	t.Helper()
	l, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := splitHostPort(l.Addr().String())
	return port
}

// startStorescp runs dcmtk's storescp in bit-preserving mode (files hold
// the data set exactly as received) and returns its address and folder.
func startStorescp(t *testing.T, extra ...string) (addr, dir string) {
	t.Helper()
	bin := requireTool(t, "storescp")
	dir = t.TempDir()
	port := freePort(t)
	args := append([]string{"-aet", "STORESCP", "+B", "+xa", "-od", dir}, extra...)
	args = append(args, port)
	cmd := exec.Command(bin, args...)
	cmd.Env = peerEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("storescp output:\n%s", out.String())
		}
	})
	addr = "127.0.0.1:" + port
	waitListening(t, addr)
	return addr, dir
}

// storedFiles maps SOP instance UID to the data set of each file storescp
// wrote, with its transfer syntax.
func storedFiles(t *testing.T, dir string) map[string]received {
	t.Helper()
	out := map[string]received{}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		fm, ds := dataSetOf(t, p)
		out[fm.MediaStorageSOPInstanceUID] = received{SOPClassUID: fm.MediaStorageSOPClassUID,
			SOPInstanceUID: fm.MediaStorageSOPInstanceUID, TransferSyntaxUID: fm.TransferSyntaxUID, Data: ds}
		return nil
	})
	return out
}

// pushFiles stores files through our SCU on one association.
func pushFiles(t *testing.T, ctx context.Context, addr string, opts dimse.DialOptions, paths ...string) {
	t.Helper()
	for _, p := range paths {
		fm, _ := dataSetOf(t, p)
		opts.Proposals = append(opts.Proposals, dimse.StorageProposals(fm.MediaStorageSOPClassUID, fm.TransferSyntaxUID)...)
	}
	a, err := dimse.Dial(ctx, addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if _, err := a.StoreFile(ctx, p); err != nil {
			a.Abort()
			t.Fatalf("%s: %v", filepath.Base(p), err)
		}
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestOursToStorescp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tests := []struct {
		name  string
		files []string
		extra []string
	}{
		{"uncompressed", []string{ctExplicit, mrImplicit, ctBig, rtplan}, nil},
		{"JPEG lossless kept in its own transfer syntax", []string{jpegLossless, jpegLL70}, nil},
		// Our fragments must fit the peer's Maximum Length Received.
		{"storescp --max-pdu 4096", []string{ctBig}, []string{"--max-pdu", "4096"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, dir := startStorescp(t, tt.extra...)
			var paths []string
			for _, f := range tt.files {
				paths = append(paths, corpus(t, f))
			}
			pushFiles(t, ctx, addr, dimse.DialOptions{CalledAETitle: "STORESCP", MaxPDULength: 16384}, paths...)
			got := storedFiles(t, dir)
			for _, p := range paths {
				fm, ds := dataSetOf(t, p)
				r, ok := got[fm.MediaStorageSOPInstanceUID]
				switch {
				case !ok:
					t.Errorf("%s: storescp has no such instance", filepath.Base(p))
				case r.TransferSyntaxUID != fm.TransferSyntaxUID:
					t.Errorf("%s: stored in %s, sent %s", filepath.Base(p), r.TransferSyntaxUID, fm.TransferSyntaxUID)
				case !bytes.Equal(r.Data, ds):
					t.Errorf("%s: stored data set differs from the sent one", filepath.Base(p))
				}
			}
		})
	}
}
