package store

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/index"
)

// crashChild stores instances from four goroutines (four associations)
// until it is killed, printing "ACK sop" after each success: the moment the
// SCP would send its response.
func crashChild(dir string, round int) int {
	ctx := context.Background()
	fs, err := files.Open(ctx, filepath.Join(dir, "data"), files.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	x, err := index.OpenSQLite(ctx, filepath.Join(dir, "index.db"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	g := &Ingest{Files: fs, Index: x}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				series := fmt.Sprintf("1.7.%d.%d", round, w)
				sop := fmt.Sprintf("%s.%d", series, i+1)
				if _, err := g.Store(ctx, bytes.NewReader(dataSet("1.7", series, sop, i)), meta(sop)); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				os.Stdout.WriteString("ACK " + sop + "\n")
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return 0
}

// TestCrash kills a storing process with SIGKILL at random moments, three
// times over the same data directory: every acknowledged instance is on
// disk with its bytes and indexed, and no staging file survives a restart.
func TestCrash(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var acked []string
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "OTONODE_CRASH_CHILD="+dir, "OTONODE_CRASH_ROUND="+strconv.Itoa(round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		// Kill after a random number of acknowledgements, mid-stream.
		n := 20 + rand.IntN(60)
		for sc.Scan() {
			if sop, ok := strings.CutPrefix(sc.Text(), "ACK "); ok {
				acked = append(acked, sop)
				if n--; n == 0 {
					time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
					cmd.Process.Signal(syscall.SIGKILL)
				}
			}
		}
		cmd.Wait()
		if n > 0 {
			t.Fatalf("round %d: child ended before the kill: %s", round, stderr.String())
		}
	}
	// Restart: staging files go, every acknowledged instance is there.
	fs, err := files.Open(ctx, filepath.Join(dir, "data"), files.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "data", "tmp")); len(ents) != 0 {
		t.Errorf("%d staging files after restart", len(ents))
	}
	x, err := index.OpenSQLite(ctx, filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	for _, sop := range acked {
		ok, err := x.HasInstance(ctx, sop, 1)
		if err != nil || !ok {
			t.Errorf("acknowledged %s not indexed (%v)", sop, err)
		}
		parts := strings.Split(sop, ".")
		series := strings.Join(parts[:len(parts)-1], ".")
		i, _ := strconv.Atoi(parts[len(parts)-1])
		b, err := os.ReadFile(filepath.Join(dir, "data", "1.7", series, sop+".dcm"))
		if err != nil || !bytes.HasSuffix(b, dataSet("1.7", series, sop, i-1)) {
			t.Errorf("acknowledged %s: file %v", sop, err)
		}
	}
	g := &Ingest{Files: fs, Index: x}
	rep, err := g.Reindex(ctx, time.Time{})
	if err != nil || rep.Unreadable != 0 || rep.Indexed > 12 {
		t.Errorf("reindex after the crashes: %+v %v", rep, err)
	}
	t.Logf("%d acknowledged instances over 3 kills; reindex %+v", len(acked), rep)
}
