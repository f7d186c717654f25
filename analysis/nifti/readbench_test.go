package nifti

import (
	"bufio"
	"compress/gzip"
	"io"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestReadBench times ReadFile on a large NIfTI file against the floor of
// any reader, inflating the same file to nowhere, in the same run:
//
//	OTONODE_BENCH=1 OTONODE_BENCH_NIFTI=ct.nii.gz go test -run '^TestReadBench$' -v ./analysis/nifti
//
// (e.g. the ct.nii.gz of `otonode phantom case --variant flatpanel --size 512,512,400`).
// Not part of CI.
func TestReadBench(t *testing.T) {
	path := os.Getenv("OTONODE_BENCH_NIFTI")
	if os.Getenv("OTONODE_BENCH") == "" || path == "" {
		t.Skip("benchmark: set OTONODE_BENCH=1 and OTONODE_BENCH_NIFTI=FILE to run")
	}
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	measure := func(f func() error) (wall, used time.Duration) {
		c0, t0 := cpu(), time.Now()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		return time.Since(t0), cpu() - c0
	}
	inflate := func() error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		br := bufio.NewReaderSize(f, 1<<16)
		var r io.Reader = br
		if m, err := br.Peek(2); err == nil && m[0] == 0x1f && m[1] == 0x8b {
			zr, err := gzip.NewReader(br)
			if err != nil {
				return err
			}
			r = zr
		}
		_, err = io.Copy(io.Discard, r)
		return err
	}
	var voxels int
	read := func() error {
		v, _, err := ReadFile(path)
		if err == nil {
			voxels = len(v.Data)
		}
		return err
	}
	pw, pc := measure(inflate)
	rw, rc := measure(read)
	t.Logf("%s, %d voxels: ReadFile %.2f s wall, %.2f s CPU; peer (inflate to io.Discard) %.2f s wall, %.2f s CPU; ReadFile/peer CPU %.2f×",
		path, voxels, rw.Seconds(), rc.Seconds(), pw.Seconds(), pc.Seconds(), rc.Seconds()/pc.Seconds())
}
