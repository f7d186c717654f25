package files

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// deviceFlushes returns a function that reads the number of flush
// requests completed by the disk that holds dir (/sys/block/*/stat, field
// 16), or nil where dir is not on a block device with a volatile write
// cache that counts them.
func deviceFlushes(t *testing.T, dir string) func() int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		// Flushes are counted for the whole disk, the partition's parent.
		real, err := filepath.EvalSymlinks(sys)
		if err != nil {
			return nil
		}
		sys = filepath.Dir(real)
	}
	read := func() int64 {
		b, err := os.ReadFile(filepath.Join(sys, "stat"))
		f := strings.Fields(string(b))
		if err != nil || len(f) < 17 {
			return -1
		}
		n, err := strconv.ParseInt(f[15], 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	// A disk without a volatile write cache is sent no flushes at all.
	wc, err := os.ReadFile(filepath.Join(sys, "queue", "write_cache"))
	if read() < 0 || err != nil || strings.TrimSpace(string(wc)) != "write back" {
		return nil
	}
	return read
}

// TestPutFlushesDevice checks that every durable Put reaches the disk
// through its volatile cache: the device completes at least one flush per
// instance (others' flushes only add to the count), with records written
// by direct I/O and through the page cache alike.
func TestPutFlushesDevice(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprintf("plain=%v", plain), func(t *testing.T) {
			dir := t.TempDir()
			flushes := deviceFlushes(t, dir)
			if flushes == nil {
				t.Skip("the test directory is not on a block device with a write-back cache that counts flushes")
			}
			l, err := Open(context.Background(), dir, Options{FS: brokenFS{plain: plain, only: "none"}})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if got := l.j.all[0].direct != nil; got == plain {
				t.Fatalf("direct I/O %v, want %v", got, !plain)
			}
			const n = 50
			before := flushes()
			for i := range n {
				sop := fmt.Sprintf("1.2.3.77.%d", i+1)
				if _, err := l.Put(context.Background(), bytes.NewReader(sizedDataSet(t, sop, 64<<10)), meta(sop), locateFixed); err != nil {
					t.Fatal(err)
				}
			}
			if d := flushes() - before; d < n {
				t.Errorf("%d device flushes for %d durable instances", d, n)
			}
		})
	}
}
