package scp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/scp/events"
	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/index"
)

// TestCrash runs the built binary, pushes four series over parallel
// associations, kills the node with SIGKILL at a random moment and starts
// it again: every instance that got a success status is on disk with its
// bytes and indexed, every series completes, and each series revision is
// announced exactly once. The restarted node then stops cleanly on
// SIGTERM.
func TestCrash(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) { crash(t, db) })
	}
}

func crash(t *testing.T, db string) {
	bin := otonodeBinary(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	var extra []string
	dsn := ""
	if db == "postgres" {
		dsn = newPostgres(t)
		extra = []string{"--database", dsn}
	}
	args, dicomAddr, httpAddr, natsAddr := serveArgs(t, data)
	args = append(args, extra...)
	p := startProc(t, append([]string{bin}, args...), dicomAddr, httpAddr, natsAddr)

	root := uidRoot()
	const perSeries = 250
	var series []seriesSpec
	for i := range 4 {
		series = append(series, seriesSpec{Study: fmt.Sprintf("%s.%d", root, i+1), Series: fmt.Sprintf("%s.%d.1", root, i+1),
			Number: 1, N: perSeries, Thickness: "0.6", Kernel: "BONE"})
	}
	var mu sync.Mutex
	acked := map[string][]byte{} // SOP instance UID → data set
	var wg sync.WaitGroup
	for _, s := range series {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			a, err := dimse.Dial(ctx, dicomAddr, dimse.DialOptions{CallingAETitle: "CT1", CalledAETitle: "OTONODE",
				Proposals: dimse.StorageProposals(ctImage), DIMSETimeout: 10 * time.Second})
			if err != nil {
				return
			}
			for i := range s.N {
				sop, ds := s.dataSet(i)
				if _, err := a.Store(ctx, dimse.Instance{SOPClassUID: ctImage, SOPInstanceUID: sop, TransferSyntaxUID: explicit,
					DataSet: bytes.NewReader(ds)}); err != nil {
					return // the node died
				}
				mu.Lock()
				acked[sop] = ds
				mu.Unlock()
			}
			a.Release(ctx)
		}()
	}
	time.Sleep(time.Duration(200+rand.IntN(1300)) * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	wg.Wait()
	mu.Lock()
	n := len(acked)
	mu.Unlock()
	t.Logf("killed after %d acknowledged instances", n)
	if n == 0 {
		t.Fatal("nothing acknowledged before the kill; the test proves nothing")
	}

	// Restart on the same data; the timers resume from the database.
	args, dicomAddr, httpAddr, natsAddr = serveArgs(t, data)
	args = append(args, extra...)
	p = startProc(t, append([]string{bin}, args...), dicomAddr, httpAddr, natsAddr)
	sent := map[string]bool{}
	for sop := range acked {
		for _, s := range series {
			if len(sop) > len(s.Series) && sop[:len(s.Series)+1] == s.Series+"." {
				sent[s.Series] = true
			}
		}
	}
	for uid := range sent {
		eventually(t, 20*time.Second, func() error {
			resp, err := http.Get("http://" + httpAddr + "/series/" + uid)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var st SeriesState
			json.NewDecoder(resp.Body).Decode(&st)
			if st.State == "" || st.State == string(index.Receiving) || st.State == string(index.Complete) {
				return fmt.Errorf("series %s: %+v", uid, st)
			}
			return nil
		})
	}
	// Exactly one announcement per completed revision.
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	want := map[string]int{}
	for uid := range sent {
		want[AnnouncementID(uid, 1)] = 1
	}
	checkStream(t, js, events.Topology{}.EventsStream(), AnnouncementID, want)
	nc.Close()

	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: exit %v\n%s", err, tail(p.log(), 20))
	}

	// Every acknowledged instance is indexed and on disk, byte for byte.
	ctx := context.Background()
	var x *index.Index
	if dsn != "" {
		x, err = index.OpenPostgres(ctx, dsn)
	} else {
		x, err = index.OpenSQLite(ctx, filepath.Join(data, "index.db"))
	}
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	fs, err := files.Open(ctx, filepath.Join(data, "instances"), files.Options{})
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for uid := range sent {
		inst, err := x.Instances(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range inst {
			ds, ok := acked[in.SOPInstanceUID]
			if !ok {
				continue // stored, but the response was lost with the process
			}
			found++
			r, err := fs.Open(ctx, in.Location)
			if err != nil {
				t.Fatal(err)
			}
			off, _ := files.MetaHeaderLen(r)
			got := make([]byte, len(ds)+1)
			k, _ := r.ReadAt(got, off)
			r.Close()
			if !bytes.Equal(got[:k], ds) {
				t.Errorf("instance %s differs on disk", in.SOPInstanceUID)
			}
		}
	}
	if found != n {
		t.Fatalf("%d of %d acknowledged instances indexed", found, n)
	}
}

// TestGracefulShutdown: after SIGTERM the node refuses new associations,
// lets the running one store its remaining instances, and exits 0 once it
// is released.
func TestGracefulShutdown(t *testing.T) {
	bin := otonodeBinary(t)
	args, dicomAddr, httpAddr, natsAddr := serveArgs(t, filepath.Join(t.TempDir(), "data"))
	p := startProc(t, append([]string{bin}, args...), dicomAddr, httpAddr, natsAddr)
	ctx := context.Background()
	root := uidRoot()
	s := seriesSpec{Study: root + ".1", Series: root + ".2", Number: 1, N: 3, Thickness: "0.6"}
	opts := dimse.DialOptions{CallingAETitle: "CT1", CalledAETitle: "OTONODE", Proposals: dimse.StorageProposals(ctImage),
		ARTIMTimeout: 3 * time.Second}
	a, err := dimse.Dial(ctx, dicomAddr, opts)
	if err != nil {
		t.Fatal(err)
	}
	store := func(i int) error {
		sop, ds := s.dataSet(i)
		_, err := a.Store(ctx, dimse.Instance{SOPClassUID: ctImage, SOPInstanceUID: sop, TransferSyntaxUID: explicit,
			DataSet: bytes.NewReader(ds)})
		return err
	}
	if err := store(0); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	eventually(t, 5*time.Second, func() error {
		b, err := dimse.Dial(ctx, dicomAddr, opts)
		if err == nil {
			b.Release(ctx)
			return fmt.Errorf("new association accepted during shutdown")
		}
		return nil
	})
	for i := 1; i < s.N; i++ {
		if err := store(i); err != nil {
			t.Fatalf("in-flight association cut: %v", err)
		}
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, tail(p.log(), 20))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("node did not exit after the last association ended")
	}
}

// TestCompleteCommand drives `otonode complete` against a running
// `otonode serve`.
func TestCompleteCommand(t *testing.T) {
	bin := otonodeBinary(t)
	args, dicomAddr, httpAddr, natsAddr := serveArgs(t, filepath.Join(t.TempDir(), "data"))
	args = append(args, "--completion.quiet_period", "1h", "--completion.inactivity", "1h")
	p := startProc(t, append([]string{bin}, args...), dicomAddr, httpAddr, natsAddr)
	ctx := context.Background()
	root := uidRoot()
	s := seriesSpec{Study: root + ".1", Series: root + ".2", Number: 1, N: 2, Thickness: "0.6"}
	a, err := dimse.Dial(ctx, dicomAddr, dimse.DialOptions{CallingAETitle: "CT1", CalledAETitle: "OTONODE",
		Proposals: dimse.StorageProposals(ctImage)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range s.N {
		sop, ds := s.dataSet(i)
		if _, err := a.Store(ctx, dimse.Instance{SOPClassUID: ctImage, SOPInstanceUID: sop, TransferSyntaxUID: explicit,
			DataSet: bytes.NewReader(ds)}); err != nil {
			t.Fatal(err)
		}
	}
	a.Release(ctx)
	out, err := exec.Command(bin, "complete", "--node", httpAddr, s.Series).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "revision 1 complete (2 instances)") {
		t.Fatalf("complete: %v: %s", err, out)
	}
	out, err = exec.Command(bin, "complete", "--node", httpAddr, s.Series).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "409") {
		t.Fatalf("second complete: %v: %s", err, out)
	}
	out, err = exec.Command(bin, "complete", "--node", httpAddr).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("no UID: %v: %s", err, out)
	}
	p.stop(t, syscall.SIGTERM)
}
