package dimse_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/dimse/dimsetest"
	"github.com/otonode/otonode/dimse/storescu"
)

// makeSeries writes n copies of a 512×512 CT slice from the corpus, each
// with its own SOP Instance UID (same length, so nothing else moves).
func makeSeries(b *testing.B, dir string, n int) {
	b.Helper()
	src, err := os.ReadFile(corpus(b, signedCT))
	if err != nil {
		b.Fatal(err)
	}
	const uid = "1.2.276.0.7230010.3.1.4.2831176407.21662.1434973336.499421"
	if bytes.Count(src, []byte(uid)) != 2 {
		b.Fatalf("expected the SOP Instance UID twice (meta and data set) in %s", signedCT)
	}
	for i := 0; i < n; i++ {
		newUID := fmt.Sprintf("%s%06d", uid[:len(uid)-6], 100000+i)
		out := bytes.ReplaceAll(src, []byte(uid), []byte(newUID))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("ct%03d.dcm", i)), out, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// fileStore is a C-STORE handler that writes each instance as a Part-10
// file, as storescp does (no fsync on either side).
type fileStore struct{ dir string }

func (s fileStore) ServeDIMSE(w dimse.ResponseWriter, r *dimse.Request) {
	f, err := os.Create(filepath.Join(s.dir, r.SOPInstanceUID()+".dcm"))
	if err != nil {
		w.WriteStatus(dimse.StatusOutOfResources)
		return
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	err = dimse.WriteFileMeta(bw, dimse.FileMeta{MediaStorageSOPClassUID: r.SOPClassUID(),
		MediaStorageSOPInstanceUID: r.SOPInstanceUID(), TransferSyntaxUID: r.TransferSyntaxUID(),
		SourceApplicationEntityTitle: r.Association.CallingAETitle})
	if err == nil {
		_, err = io.Copy(bw, r.Body)
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		w.WriteStatus(dimse.StatusOutOfResources)
		return
	}
	w.WriteStatus(dimse.StatusSuccess)
}

// BenchmarkStore400CT stores the same 400 CT slices of 512×512 through
// dcmtk storescu → storescp and through our SCU → our SCP, both with a
// maximum PDU of 16384 and both receivers writing files, and reports both
// times and their ratio (ours / dcmtk; the target is ≤ 1). Run with
//
//	go test -run '^$' -bench Store400CT -benchtime 1x ./dimse/
func BenchmarkStore400CT(b *testing.B) {
	const n, maxPDU = 400, 16384
	storescuBin, storescpBin := requireTool(b, "storescu"), requireTool(b, "storescp")
	in := b.TempDir()
	makeSeries(b, in, n)
	ctx := context.Background()
	var dcmtkTotal, oursTotal time.Duration
	runDcmtk := func() time.Duration {
		out := b.TempDir()
		defer os.RemoveAll(out)
		port := freePort(b)
		scp := exec.Command(storescpBin, "-aet", "STORESCP", "--max-pdu", fmt.Sprint(maxPDU), "-od", out, port)
		scp.Env = peerEnv()
		if err := scp.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { scp.Process.Kill(); scp.Wait() }()
		waitListening(b, "127.0.0.1:"+port)
		start := time.Now()
		scu := exec.Command(storescuBin, "-aec", "STORESCP", "--max-pdu", fmt.Sprint(maxPDU), "+sd", "127.0.0.1", port, in)
		scu.Env = peerEnv()
		if msg, err := scu.CombinedOutput(); err != nil {
			b.Fatalf("storescu: %v\n%s", err, msg)
		}
		d := time.Since(start)
		if got, _ := filepath.Glob(filepath.Join(out, "*")); len(got) != n {
			b.Fatalf("storescp wrote %d files, want %d", len(got), n)
		}
		return d
	}
	runOurs := func() time.Duration {
		out := b.TempDir()
		defer os.RemoveAll(out)
		mux := dimse.NewServeMux()
		mux.Handle(dimse.CStoreRQField, "", fileStore{out})
		ts := dimsetest.NewServer(&dimse.Server{AETitle: "OTONODE", Handler: mux, MaxPDULength: maxPDU,
			Syntaxes: []dimse.Syntax{{TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}}}})
		defer ts.Close()
		start := time.Now()
		files, _, err := storescu.Scan([]string{in})
		if err != nil {
			b.Fatal(err)
		}
		res, err := storescu.Push(ctx, ts.Addr, dimse.DialOptions{CalledAETitle: "OTONODE", MaxPDULength: maxPDU}, files, nil)
		if err != nil || res.Stored != n {
			b.Fatalf("push: stored %d, %v", res.Stored, err)
		}
		d := time.Since(start)
		if got, _ := filepath.Glob(filepath.Join(out, "*")); len(got) != n {
			b.Fatalf("our SCP wrote %d files, want %d", len(got), n)
		}
		return d
	}
	for i := 0; i < b.N; i++ {
		// Alternate who goes first, so that neither always meets the
		// other's disk write-back.
		var dcmtk, ours time.Duration
		if i%2 == 0 {
			dcmtk, ours = runDcmtk(), runOurs()
		} else {
			ours, dcmtk = runOurs(), runDcmtk()
		}
		dcmtkTotal += dcmtk
		oursTotal += ours
		b.Logf("run %d: dcmtk storescu→storescp %v, otonode SCU→SCP %v, ratio %.2f", i, dcmtk, ours, ours.Seconds()/dcmtk.Seconds())
	}
	b.ReportMetric(dcmtkTotal.Seconds()/float64(b.N), "dcmtk-s/op")
	b.ReportMetric(oursTotal.Seconds()/float64(b.N), "ours-s/op")
	b.ReportMetric(oursTotal.Seconds()/dcmtkTotal.Seconds(), "ratio")
}
