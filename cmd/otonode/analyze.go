package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/otonode/otonode/analysis"
	"github.com/otonode/otonode/analysis/infer"
	"github.com/otonode/otonode/analysis/tta"
	"github.com/otonode/otonode/results"
)

func runAnalyze(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("analyze", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "output folder (required)")
	model := fs.String("model", os.Getenv("OTONODE_MODEL"), "model manifest (JSON beside the ONNX file); default $OTONODE_MODEL")
	ortLib := fs.String("ort-lib", "", "path of libonnxruntime.so; default $ORT_LIB")
	provider := fs.String("provider", "cpu", "ONNX Runtime execution provider: cpu or cuda (cuda needs a GPU build of ONNX Runtime)")
	threads := fs.Int("threads", 0, "intra-op threads; 0 means one per core")
	largest := fs.Bool("largest-component", false, "keep only the largest connected component of each ear's segmentation (default: as the model's manifest says)")
	raw := fs.Bool("raw", false, "the network's own output: no post-processing the manifest asks for (the paper's protocol)")
	ttaSet := fs.String("tta", "", "comma-separated TTA transforms (identity,i90,…,k270); default all 10")
	ttaFlags := addTTAFlags(fs)
	noDICOM := fs.Bool("no-dicom", false, "do not write the DICOM SEG and SR")
	quiet := fs.Bool("quiet", false, "no progress")
	memLimit := fs.Int("memory-limit-mb", 0, memoryLimitUsage())
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: otonode analyze INPUT... --out DIR [--model MANIFEST]\n\n"+
			"Analyse one CT series offline: DICOM files or folders, a NIfTI (.nii, .nii.gz) or an NRRD file.\n"+
			"Writes segmentation.nii.gz, uncertainty maps, previews, report.json and, for DICOM input,\n"+
			"the DICOM SEG and SR.")
		fs.PrintDefaults()
	}
	inputs, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(inputs) == 0 || *out == "" {
		return fmt.Errorf("%w: need INPUT and --out", errUsage)
	}
	if *model == "" {
		return fmt.Errorf("%w: no model: give --model or set OTONODE_MODEL", errUsage)
	}
	opts := analysis.Options{LargestComponent: *largest, Raw: *raw}
	ttaFlags.apply(&opts)
	if *ttaSet != "" {
		if opts.TTA, err = tta.ByName(strings.Split(*ttaSet, ",")); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	if !*quiet {
		opts.Progress = stageProgress(stderr)
	}
	start := time.Now()
	logf := func(format string, a ...any) {
		if !*quiet {
			fmt.Fprintf(stderr, "%6.1fs  "+format+"\n", append([]any{time.Since(start).Seconds()}, a...)...)
		}
	}
	if line := setMemoryLimit(*memLimit); line != "" {
		logf("%s", line)
	}
	logf("reading %s", strings.Join(inputs, " "))
	// int16 HU where the series' values allow it: half the memory of
	// float32, and the same result (see analysis.Analyzer.AnalyzeInput).
	in, err := analysis.LoadInputWith(ctx, inputs, analysis.LoadOptions{Int16: true})
	if err != nil {
		return err
	}
	logf("volume %v voxels of %.3g mm", in.Grid().Size, in.Grid().Affine.Spacing())
	man, net, err := analysis.OpenModel(*model, *ortLib, infer.Options{Provider: infer.Provider(*provider), Threads: *threads})
	if err != nil {
		return err
	}
	defer net.Close()
	if man.TrainedOnSyntheticPhantoms {
		logf("model %s was trained on synthetic phantoms: NOT FOR DIAGNOSTIC USE", man.Name)
	}
	a := &analysis.Analyzer{Manifest: man, Model: net, Options: opts}
	res, err := a.AnalyzeInput(ctx, in)
	if err != nil {
		return err
	}
	if _, err := analysis.WriteOutputs(*out, in, res); err != nil {
		return err
	}
	if in.Format == "dicom" && res.Status == analysis.StatusDone && !*noDICOM {
		if why := noDICOMResults(res); why != "" {
			// The report and the flag say what happened.
			logf("no DICOM SEG/SR: %s", why)
		} else if err := writeDICOMResults(ctx, *out, in, res); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout, res.Summary())
	logf("done; outputs in %s", *out)
	return nil
}

// writeDICOMResults writes seg.dcm and sr.dcm beside the other outputs.
func writeDICOMResults(ctx context.Context, dir string, in *analysis.Input, res *analysis.Result) error {
	src, err := results.ReadSource(ctx, in.Files)
	if err != nil {
		return err
	}
	w := &results.Writer{UIDs: results.RandomUIDs{}}
	seg, sr, err := w.Write(src, res, nil)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "seg.dcm"), seg.File, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "sr.dcm"), sr.File, 0o644)
}

// noDICOMResults says why a result cannot become a SEG and SR: a segment
// with no voxel is not a valid SEG, and a segment needs its ear's side.
func noDICOMResults(res *analysis.Result) string {
	for n, e := range res.Ears {
		if e.Laterality != analysis.Right && e.Laterality != analysis.Left {
			return fmt.Sprintf("the side of ear %d could not be told from the image", n+1)
		}
		if e.VolumeMM3 == 0 {
			return fmt.Sprintf("the %s ear's segmentation is empty", e.Laterality)
		}
	}
	return ""
}

// stageProgress prints a one-line bar per stage on w.
func stageProgress(w io.Writer) func(stage string, done, total int) {
	return func(stage string, done, total int) {
		const width = 20
		n := width * done / max(total, 1)
		fmt.Fprintf(w, "\r        %s [%s%s] %d/%d", stage, strings.Repeat("=", n), strings.Repeat(" ", width-n), done, total)
		if done == total {
			fmt.Fprintln(w)
		}
	}
}

// ttaFlags are the flags that say where the TTA passes run and how the
// region is tiled (analysis.Options).
type ttaFlags struct {
	full                      *bool
	overlap, scout, maxWindow *int
	slackMM                   *float64
}

func addTTAFlags(fs *flag.FlagSet) ttaFlags {
	return ttaFlags{
		full:      fs.Bool("full-tta", false, "every TTA pass over the whole region of interest (the paper's protocol); default: a first pass finds the inner ear and the TTA passes run on the box around it"),
		overlap:   fs.Int("overlap", 0, "least overlap of the TTA passes' windows in voxels; 0: none for focused passes, the manifest's with --full-tta; -1: none"),
		scout:     fs.Int("scout-overlap", 0, "least overlap of the first pass's windows in voxels"),
		slackMM:   fs.Float64("focus-slack-mm", 0, "margin of the analysed box beyond the uncertainty score's, in mm (default none)"),
		maxWindow: fs.Int("max-window", 0, "largest window of a focused TTA pass, voxels per axis, where fewer larger windows cover the box with fewer voxels; 0: 1.5 × the model's chunk, -1: the chunk"),
	}
}

func (f ttaFlags) apply(o *analysis.Options) {
	o.FullTTA, o.Overlap, o.ScoutOverlap, o.FocusSlackMM = *f.full, *f.overlap, *f.scout, *f.slackMM
	o.MaxWindow = *f.maxWindow
}
