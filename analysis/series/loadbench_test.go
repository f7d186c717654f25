package series

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"
)

// The loading benchmark is not part of CI: it reads a few hundred MB and
// takes tens of seconds. Run it with
//
//	OTONODE_BENCH=1 [OTONODE_BENCH_SERIES=DIR] go test -run '^TestLoadBench$' -v ./analysis/series
//
// DIR is a folder of one CT series (e.g. the dicom/ folder of
// `otonode phantom case --variant flatpanel --size 512,512,400`); without
// it a 512×512×400 series is written to a temporary folder first.
//
// Every path runs in its own process (this test binary, re-executed), so
// that peak RSS is the path's own and no path inherits another's heap.

// loadStage is one measured stage of one path.
type loadStage struct {
	Name      string  `json:"name"`
	Seconds   float64 `json:"s"`
	CPU       float64 `json:"cpu_s"`       // user + system CPU time of the process
	PeakRSSMB float64 `json:"peak_rss_mb"` // VmHWM during the stage alone, MiB
	HeapMB    float64 `json:"heap_mb"`     // Go heap in use after the stage, MiB
	AllocMB   float64 `json:"alloc_mb"`    // allocated during the stage (kept or garbage), MiB
}

// loadRun is what one child process reports.
type loadRun struct {
	Path      string      `json:"path"`
	Stages    []loadStage `json:"stages"`
	Seconds   float64     `json:"s"`
	PeakRSSMB float64     `json:"peak_rss_mb"` // VmHWM over the whole process, MiB
	VolumeMB  float64     `json:"volume_mb"`   // size of the volume the path returns, MiB
}

// loadBenchPaths are the measured paths: the two peers first.
var loadBenchPaths = []struct {
	name, about string
}{
	{"read-files", "peer: os.ReadFile of every file, bytes dropped"},
	{"library", "peer: suyashkumar/dicom full parse of each file, sort, rescale to float32"},
	{"load-f32", "series.Load: scan + decode to float32 HU"},
	{"load-i16", "series.Scan + Decode[int16]"},
}

func TestLoadBench(t *testing.T) {
	if os.Getenv("OTONODE_BENCH") == "" {
		t.Skip("benchmark: set OTONODE_BENCH=1 (and OTONODE_BENCH_SERIES=DIR) to run")
	}
	dir := os.Getenv("OTONODE_BENCH_SERIES")
	if p := os.Getenv("OTONODE_BENCH_CHILD"); p != "" {
		r, err := runLoadPath(p, dir)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(r)
		fmt.Printf("LOADBENCH %s\n", b)
		return
	}
	if dir == "" {
		dir = t.TempDir()
		writeBigSeries(t, dir, 400)
	}
	var runs []loadRun
	for _, p := range loadBenchPaths {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestLoadBench$", "-test.count", "1")
		cmd.Env = append(os.Environ(), "OTONODE_BENCH_CHILD="+p.name, "OTONODE_BENCH_SERIES="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", p.name, err, out)
		}
		var r loadRun
		found := false
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "LOADBENCH "); ok {
				found = json.Unmarshal([]byte(line), &r) == nil
			}
		}
		if !found {
			t.Fatalf("%s: no result in\n%s", p.name, out)
		}
		runs = append(runs, r)
	}
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "path\ttotal s\tpeak RSS MiB\tvolume MiB\tstages (wall s, CPU s, peak RSS MiB, allocated MiB)\n")
	for _, r := range runs {
		var st []string
		for _, s := range r.Stages {
			st = append(st, fmt.Sprintf("%s %.2fs (CPU %.2fs) peak %.0f alloc %.0f", s.Name, s.Seconds, s.CPU, s.PeakRSSMB, s.AllocMB))
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.0f\t%.0f\t%s\n", r.Path, r.Seconds, r.PeakRSSMB, r.VolumeMB, strings.Join(st, "; "))
	}
	tw.Flush()
	read, lib := runs[0], runs[1]
	for _, r := range runs[2:] {
		fmt.Fprintf(&sb, "%s: %.2f× the plain read's time, %.2f× the library peer's time; peak RSS %.2f× its volume, %.2f× the library peer's\n",
			r.Path, r.Seconds/read.Seconds, r.Seconds/lib.Seconds, r.PeakRSSMB/r.VolumeMB, r.PeakRSSMB/lib.PeakRSSMB)
	}
	t.Logf("series %s, GOMAXPROCS %d\n%s", dir, runtime.GOMAXPROCS(0), sb.String())
}

// runLoadPath measures one path in this process.
func runLoadPath(path, dir string) (*loadRun, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range ents {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	ctx := context.Background()
	r := &loadRun{Path: path}
	var keep []any // results stay reachable until every stage is measured
	var hwm peakRSS
	stage := func(name string, f func() (any, error)) error {
		runtime.GC()
		hwm.reset()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		c0, t0 := cpuTime(), time.Now()
		v, err := f()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		d, cpu := time.Since(t0), cpuTime()-c0
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		keep = append(keep, v)
		r.Stages = append(r.Stages, loadStage{Name: name, Seconds: d.Seconds(), CPU: cpu.Seconds(), PeakRSSMB: hwm.read(), HeapMB: float64(ms.HeapAlloc) / (1 << 20),
			AllocMB: float64(ms.TotalAlloc-before.TotalAlloc) / (1 << 20)})
		r.Seconds += d.Seconds()
		return nil
	}
	switch path {
	case "read-files":
		err = stage("read", func() (any, error) {
			n := 0
			for _, p := range files {
				b, err := os.ReadFile(p)
				if err != nil {
					return nil, err
				}
				n += len(b)
			}
			return n, nil
		})
	case "library":
		err = stage("parse+assemble", func() (any, error) {
			v, err := peerLoad(files)
			if err == nil {
				r.VolumeMB = float64(len(v.Data)*4) / (1 << 20)
			}
			return v, err
		})
	case "load-f32", "load-i16":
		var l *Layout
		if err = stage("scan", func() (any, error) {
			var err error
			l, err = Scan(ctx, files, Options{})
			return l, err
		}); err != nil {
			break
		}
		err = stage("decode", func() (any, error) {
			if path == "load-i16" {
				v, err := Decode[int16](ctx, l)
				if err == nil {
					r.VolumeMB = float64(len(v.Data)*2) / (1 << 20)
				}
				return v, err
			}
			v, err := Decode[float32](ctx, l)
			if err == nil {
				r.VolumeMB = float64(len(v.Data)*4) / (1 << 20)
			}
			return v, err
		})
	default:
		err = fmt.Errorf("unknown path %q", path)
	}
	if err != nil {
		return nil, err
	}
	runtime.KeepAlive(keep)
	r.PeakRSSMB = max(hwm.process, hwm.read())
	return r, nil
}

// peakRSS reads the process's peak resident set (VmHWM) per stage and
// over the whole process.
type peakRSS struct{ process float64 }

// reset starts a new window (Linux: writing 5 to clear_refs resets VmHWM
// to the current RSS).
func (p *peakRSS) reset() {
	p.process = max(p.process, p.read())
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// read returns VmHWM in MB (2^20 bytes).
func (p *peakRSS) read() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// cpuTime is the user and system CPU time of the process so far: on a
// shared machine it varies less than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
