package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/dimse/dimsetest"
)

// countingStore is a C-STORE handler that counts what it receives.
type countingStore struct {
	mu sync.Mutex
	n  map[string]int64
}

func (c *countingStore) ServeDIMSE(w dimse.ResponseWriter, r *dimse.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		w.WriteStatus(dimse.StatusProcessingFailure)
		return
	}
	c.mu.Lock()
	c.n[r.SOPInstanceUID()] = n
	c.mu.Unlock()
	w.WriteStatus(dimse.StatusSuccess)
}

func corpusFile(t *testing.T, rel string) string {
	_, here, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(here), "..", "..", "..", "shared", "testdata", "dicom-corpus", rel)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return p
}

func TestEchoAndPush(t *testing.T) {
	store := &countingStore{n: map[string]int64{}}
	mux := dimse.NewServeMux()
	mux.Handle(dimse.CStoreRQField, "", store)
	ts := dimsetest.NewServer(&dimse.Server{AETitle: "NODE", Handler: mux, Syntaxes: []dimse.Syntax{{
		TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian, dimse.JPEGLosslessSV1}}}})
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var out, errb bytes.Buffer
	if err := runEcho(ctx, []string{"--host", ts.Host(), "--port", ts.Port(), "--called-aet", "NODE"}, &out, &errb); err != nil {
		t.Fatalf("echo: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "success") {
		t.Fatalf("echo said %q", out.String())
	}
	if err := runEcho(ctx, []string{"--host", ts.Host(), "--port", ts.Port(), "--called-aet", "WRONG"}, &out, &errb); !errors.Is(err, dimse.ErrCalledAETitleNotRecognized) {
		t.Fatalf("echo to a wrong AE: %v", err)
	}

	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	for i, rel := range []string{
		"pydicom/src/pydicom/data/test_files/CT_small.dcm",
		"pydicom/src/pydicom/data/test_files/MR_small_implicit.dcm",
		"pydicom-data/data_store/data/JPGLosslessP14SV1_1s_1f_8b.dcm",
	} {
		b, err := os.ReadFile(corpusFile(t, rel))
		if err != nil {
			t.Fatal(err)
		}
		d := dir
		if i > 0 {
			d = filepath.Join(dir, "sub")
		}
		os.WriteFile(filepath.Join(d, filepath.Base(rel)), b, 0o644)
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not DICOM"), 0o644)

	out.Reset()
	errb.Reset()
	// Flags after the paths, as in the usage line.
	err := runPush(ctx, []string{dir, "--host", ts.Host(), "--port", ts.Port(), "--aet", "ME", "--called-aet", "NODE"}, &out, &errb)
	if err != nil {
		t.Fatalf("push: %v\n%s", err, errb.String())
	}
	if len(store.n) != 3 {
		t.Fatalf("server got %d instances, want 3; stdout %q", len(store.n), out.String())
	}
	if !strings.Contains(errb.String(), "3/3 files") || !strings.Contains(errb.String(), "skipping") {
		t.Fatalf("no progress bar or skip note on stderr: %q", errb.String())
	}
	if err := runPush(ctx, []string{"--host", ts.Host()}, &out, &errb); !errors.Is(err, errUsage) {
		t.Fatalf("push without paths: %v", err)
	}
}
