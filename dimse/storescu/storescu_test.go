package storescu_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/dimse/dimsetest"
	"github.com/otonode/otonode/dimse/storescu"
)

// writeInstance writes a minimal Part-10 file of a made-up SOP class.
func writeInstance(t *testing.T, path, sopClass, uid string) {
	var b bytes.Buffer
	dimse.WriteFileMeta(&b, dimse.FileMeta{MediaStorageSOPClassUID: sopClass, MediaStorageSOPInstanceUID: uid,
		TransferSyntaxUID: dimse.ExplicitVRLittleEndian})
	b.Write([]byte{0x08, 0, 0x16, 0, 'U', 'I', 4, 0, '1', '.', '2', 0})
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// More SOP classes than one association's 128 contexts hold: Push opens
// as many associations as needed and stores everything.
func TestPushSplitsAssociations(t *testing.T) {
	dir := t.TempDir()
	const n = 70 // two contexts each (explicit and implicit VR LE)
	for i := 0; i < n; i++ {
		writeInstance(t, filepath.Join(dir, fmt.Sprintf("f%02d.dcm", i)), fmt.Sprintf("1.2.826.0.1.3680043.9.7.%d", i), fmt.Sprintf("2.25.%d", i+1))
	}
	os.WriteFile(filepath.Join(dir, "README"), []byte("not DICOM"), 0o644)
	var assocs, stored atomic.Int64
	mux := dimse.NewServeMux()
	mux.HandleFunc(dimse.CStoreRQField, "", func(w dimse.ResponseWriter, r *dimse.Request) {
		io.Copy(io.Discard, r.Body)
		stored.Add(1)
		w.WriteStatus(dimse.StatusSuccess)
	})
	ts := dimsetest.NewServer(&dimse.Server{Handler: mux,
		Syntaxes: []dimse.Syntax{{TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}}},
		Accept:   func(*dimse.AAssociateRQ, net.Addr) *dimse.RejectError { assocs.Add(1); return nil }})
	defer ts.Close()
	files, skipped, err := storescu.Scan([]string{dir})
	if err != nil || len(files) != n || len(skipped) != 1 {
		t.Fatalf("Scan: %d files, %d skipped, %v", len(files), len(skipped), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var last storescu.Progress
	res, err := storescu.Push(ctx, ts.Addr, dimse.DialOptions{}, files, func(p storescu.Progress) { last = p })
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != n || stored.Load() != n || len(res.Failed) != 0 {
		t.Fatalf("stored %d (server %d), failed %v", res.Stored, stored.Load(), res.Failed)
	}
	if assocs.Load() != 2 {
		t.Fatalf("%d associations, want 2", assocs.Load())
	}
	if last.Done != n || last.Total != n || last.Bytes != last.TotalBytes {
		t.Fatalf("last progress %+v", last)
	}
}

// PushParallel spreads the files over n associations that run at once and
// reports the whole push's progress.
func TestPushParallel(t *testing.T) {
	dir := t.TempDir()
	const n = 24
	for i := 0; i < n; i++ {
		writeInstance(t, filepath.Join(dir, fmt.Sprintf("f%02d.dcm", i)), "1.2.840.10008.5.1.4.1.1.2", fmt.Sprintf("2.25.%d", i+1))
	}
	var assocs, stored, inFlight, peak atomic.Int64
	mux := dimse.NewServeMux()
	mux.HandleFunc(dimse.CStoreRQField, "", func(w dimse.ResponseWriter, r *dimse.Request) {
		cur := inFlight.Add(1)
		for {
			p := peak.Load()
			if cur <= p || peak.CompareAndSwap(p, cur) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond) // a slow, durable receiver
		io.Copy(io.Discard, r.Body)
		stored.Add(1)
		inFlight.Add(-1)
		w.WriteStatus(dimse.StatusSuccess)
	})
	ts := dimsetest.NewServer(&dimse.Server{Handler: mux,
		Syntaxes: []dimse.Syntax{{TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}}},
		Accept:   func(*dimse.AAssociateRQ, net.Addr) *dimse.RejectError { assocs.Add(1); return nil }})
	defer ts.Close()
	files, _, err := storescu.Scan([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var last storescu.Progress
	res, err := storescu.PushParallel(ctx, ts.Addr, dimse.DialOptions{}, files, 4, func(p storescu.Progress) { last = p })
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != n || stored.Load() != n || assocs.Load() != 4 {
		t.Fatalf("stored %d (server %d) over %d associations", res.Stored, stored.Load(), assocs.Load())
	}
	if peak.Load() < 2 {
		t.Errorf("at most %d instance in flight: the associations did not overlap", peak.Load())
	}
	if last.Done != n || last.Total != n || last.Bytes != last.TotalBytes {
		t.Fatalf("last progress %+v", last)
	}
}
