package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/otonode/otonode/analysis"
	"github.com/otonode/otonode/analysis/infer"
	"github.com/otonode/otonode/analysis/volume"
)

// benchRun is what one measured path reports to the parent process.
type benchRun struct {
	Path      string             `json:"path"`
	Stages    map[string]float64 `json:"stages_s"`
	TotalS    float64            `json:"total_s"`
	Measured  bool               `json:"measured"` // false: extrapolated from a subset
	Note      string             `json:"note,omitempty"`
	PeakRSSMB float64            `json:"peak_rss_mb"`
	CPUS      float64            `json:"cpu_s"`   // user + system time of the process
	LoadAvg   [2]string          `json:"loadavg"` // 1-minute load average at the start and the end
}

// loadAvg is the 1-minute load average (/proc/loadavg): the bench's
// timings mean little on a machine others are using, so it says how busy
// the machine was.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "analysis" {
		return fmt.Errorf("%w: usage: otonode bench analysis --model MANIFEST --input CT [--paper-chunks N]", errUsage)
	}
	fs := flag.NewFlagSet("bench analysis", flag.ContinueOnError)
	fs.SetOutput(stderr)
	model := fs.String("model", os.Getenv("OTONODE_MODEL"), "model manifest")
	input := fs.String("input", "", "CT volume (DICOM folder, NIfTI or NRRD), e.g. a 512×512×400 flat-panel phantom")
	ortLib := fs.String("ort-lib", "", "libonnxruntime.so; default $ORT_LIB")
	paperChunks := fs.Int("paper-chunks", 2, "chunks of the paper's protocol to time (0: all) before extrapolating")
	path := fs.String("path", "", "internal: run one path (paper or otonode) and print JSON")
	ttaFlags := addTTAFlags(fs)
	memLimit := fs.Int("memory-limit-mb", 0, "soft memory limit of each path's process in MiB (runtime/debug.SetMemoryLimit): the Go heap may otherwise grow to twice what is live before a collection; 0: otonode's path gets otonode analyze's default, the paper's none; -1: none")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch {
	case *path == "otonode":
		setMemoryLimit(*memLimit)
	case *path != "" && *memLimit > 0:
		setMemoryLimit(*memLimit)
	}
	var opts analysis.Options
	ttaFlags.apply(&opts)
	if *model == "" || *input == "" {
		return fmt.Errorf("%w: need --model and --input", errUsage)
	}
	if *path != "" {
		r, err := benchPath(ctx, *path, *model, *input, *ortLib, *paperChunks, opts)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(r)
	}
	// Each path runs in its own process so that neither inherits the
	// other's heap and peak RSS is the path's own.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var runs []benchRun
	for _, p := range []string{"paper", "otonode"} {
		fmt.Fprintf(stderr, "running the %s path…\n", p)
		cmd := exec.CommandContext(ctx, self, "bench", "analysis", "--path", p, "--model", *model, "--input", *input,
			"--ort-lib", *ortLib, "--paper-chunks", fmt.Sprint(*paperChunks),
			fmt.Sprintf("--full-tta=%v", opts.FullTTA), "--overlap", fmt.Sprint(opts.Overlap),
			"--scout-overlap", fmt.Sprint(opts.ScoutOverlap), "--focus-slack-mm", fmt.Sprint(opts.FocusSlackMM), "--max-window", fmt.Sprint(opts.MaxWindow),
			"--memory-limit-mb", fmt.Sprint(*memLimit))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s path: %w", p, err)
		}
		var r benchRun
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			return fmt.Errorf("%s path: %w", p, err)
		}
		runs = append(runs, r)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "path\ttotal s\tCPU s\tpeak RSS MB\tload avg\tstages (s)\tnote")
	for _, r := range runs {
		kind := ""
		if !r.Measured {
			kind = " (extrapolated)"
		}
		fmt.Fprintf(tw, "%s\t%.1f%s\t%.1f\t%.0f\t%s→%s\t%v\t%s\n", r.Path, r.TotalS, kind, r.CPUS, r.PeakRSSMB, r.LoadAvg[0], r.LoadAvg[1], r.Stages, r.Note)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "ratio paper / otonode: %.1f×\n", runs[0].TotalS/runs[1].TotalS)
	return nil
}

func benchPath(ctx context.Context, path, model, input, ortLib string, paperChunks int, opts analysis.Options) (*benchRun, error) {
	r := &benchRun{Path: path, Stages: map[string]float64{}, Measured: true}
	r.LoadAvg[0] = loadAvg()
	t0 := time.Now()
	// otonode's path reads int16 HU where the values allow it, as
	// otonode analyze and the worker do; the paper's path works in float32.
	in, err := analysis.LoadInputWith(ctx, []string{input}, analysis.LoadOptions{Int16: path == "otonode"})
	if err != nil {
		return nil, err
	}
	r.Stages["load"] = time.Since(t0).Seconds()
	man, net, err := analysis.OpenModel(model, ortLib, infer.Options{})
	if err != nil {
		return nil, err
	}
	defer net.Close()
	// The paper's side cuts the whole volume into chunks itself; the
	// options (where the TTA passes run, the windows' overlap) are
	// otonode's.
	a := &analysis.Analyzer{Manifest: man, Model: net, Options: opts}
	start := time.Now()
	switch path {
	case "otonode":
		res, err := a.AnalyzeInput(ctx, in)
		if err != nil {
			return nil, err
		}
		for _, s := range res.Stages {
			r.Stages[s.Name] += math.Round(s.Duration.Seconds()*100) / 100
		}
		r.Note = fmt.Sprintf("%s, %d ear(s)", res.Status, len(res.Ears))
		for _, e := range res.Ears {
			r.Note += fmt.Sprintf("; %s: %s TTA on %.0f %% of the ROI (source box %v), %d scout windows", e.Laterality, e.Analysed.TTA, 100*e.Analysed.Fraction, e.Analysed.SourceBox, e.Analysed.ScoutWindows)
		}
	case "paper":
		ct := in.CT
		sp := ct.Affine.Spacing()
		if math.Abs(sp[0]-man.VoxelSizeMM) > 0.01*man.VoxelSizeMM || math.Abs(sp[2]-man.VoxelSizeMM) > 0.01*man.VoxelSizeMM {
			t := time.Now()
			if ct, err = volume.ResampleLinear(ct, volume.IsotropicGrid(ct.Grid, man.VoxelSizeMM), float32(man.Normalization.ClipLow)); err != nil {
				return nil, err
			}
			r.Stages["resample whole volume"] = time.Since(t).Seconds()
		}
		pt, err := a.PaperProtocol(ctx, ct, paperChunks)
		if err != nil {
			return nil, err
		}
		r.Stages["normalise"] = pt.Normalise.Seconds()
		r.Stages["per chunk (all TTA passes)"] = pt.PerChunk.Seconds()
		r.Measured = pt.ChunksRun == pt.Chunks
		r.Note = fmt.Sprintf("%d of %d chunks of %d³ with %d overlap, %d TTA passes each", pt.ChunksRun, pt.Chunks, analysis.PaperChunk, analysis.PaperOverlap, pt.TransformCount)
		r.TotalS = r.Stages["load"] + r.Stages["resample whole volume"] + pt.Extrapolated.Seconds()
	default:
		return nil, fmt.Errorf("%w: --path %q", errUsage, path)
	}
	if path == "otonode" {
		r.TotalS = r.Stages["load"] + time.Since(start).Seconds()
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		r.PeakRSSMB = float64(ru.Maxrss) / 1024
		r.CPUS = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	r.LoadAvg[1] = loadAvg()
	return r, nil
}
