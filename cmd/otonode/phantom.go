package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/otonode/otonode/analysis/nifti"
	"github.com/otonode/otonode/analysis/phantom"
	"github.com/otonode/otonode/analysis/volume"
)

const phantomUsage = `usage: otonode phantom case    --seed N [--variant TOKENS] --out DIR [options]
       otonode phantom dataset --n N --out DIR [options]
       otonode phantom preview (--case DIR | --seed N [--variant TOKENS]) --out FILE.png

Synthetic temporal-bone CT with ground truth (labels, landmarks); the folder
format is described in analysis/phantom/FORMAT.md.

variant tokens (comma separated):
` + phantom.VariantTokens

func runPhantom(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, phantomUsage)
		return fmt.Errorf("%w: phantom needs case, dataset or preview", errUsage)
	}
	switch args[0] {
	case "case":
		return phantomCase(ctx, args[1:], stdout, stderr)
	case "dataset":
		return phantomDataset(ctx, args[1:], stdout, stderr)
	case "preview":
		return phantomPreview(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stderr, phantomUsage)
		return flag.ErrHelp
	}
	fmt.Fprintln(stderr, phantomUsage)
	return fmt.Errorf("%w: unknown phantom command %q", errUsage, args[0])
}

// gridFlags are the grid overrides shared by case and dataset.
type gridFlags struct{ size, spacing string }

func (g *gridFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&g.size, "size", "", "grid size: N (cube) or NX,NY,NZ (default: the scanner's)")
	fs.StringVar(&g.spacing, "spacing", "", "voxel size in mm: S or SX,SY,SZ (default: the scanner's)")
}

func (g *gridFlags) parse() ([3]int, [3]float64, error) {
	var size [3]int
	var sp [3]float64
	if g.size != "" {
		f, err := triple(g.size)
		if err != nil {
			return size, sp, fmt.Errorf("%w: --size: %v", errUsage, err)
		}
		for c := range size {
			if f[c] < 1 || f[c] > 4096 || f[c] != math.Trunc(f[c]) {
				return size, sp, fmt.Errorf("%w: --size %q", errUsage, g.size)
			}
			size[c] = int(f[c])
		}
	}
	if g.spacing != "" {
		f, err := triple(g.spacing)
		if err != nil {
			return size, sp, fmt.Errorf("%w: --spacing: %v", errUsage, err)
		}
		for c := range sp {
			if !(f[c] > 0.001 && f[c] < 20) {
				return size, sp, fmt.Errorf("%w: --spacing %q", errUsage, g.spacing)
			}
		}
		sp = f
	}
	return size, sp, nil
}

func triple(s string) ([3]float64, error) {
	parts := strings.Split(s, ",")
	var out [3]float64
	if len(parts) != 1 && len(parts) != 3 {
		return out, fmt.Errorf("want one or three numbers, got %q", s)
	}
	for c := 0; c < 3; c++ {
		p := parts[0]
		if len(parts) == 3 {
			p = parts[c]
		}
		x, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return out, err
		}
		out[c] = x
	}
	return out, nil
}

func phantomCase(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("phantom case", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seed := fs.Uint64("seed", 1, "random seed: the same seed and variant give the same bytes")
	tokens := fs.String("variant", "", "variant tokens, e.g. flatpanel,left,otosclerosis,severe")
	out := fs.String("out", "", "case folder to create")
	noDICOM := fs.Bool("no-dicom", false, "skip the DICOM series")
	crop := fs.Int("crop", 0, "crop the NIfTI files to at least N voxels per axis around the labyrinth (0: full grid)")
	preview := fs.String("preview", "", "also write a PNG preview here")
	var g gridFlags
	g.add(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		return fmt.Errorf("%w: phantom case needs --out and no positional arguments", errUsage)
	}
	v, err := phantom.ParseVariant(*tokens)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if v.Size, v.SpacingMM, err = g.parse(); err != nil {
		return err
	}
	t0 := time.Now()
	fmt.Fprintf(stderr, "phantom: generating seed %d (%s)…\n", *seed, v.String())
	c, err := phantom.Generate(ctx, *seed, v, phantom.Options{})
	if err != nil {
		return err
	}
	tGen := time.Since(t0)
	bar := newBar(stderr, "DICOM")
	id := filepath.Base(filepath.Clean(*out))
	if err := phantom.WriteCase(ctx, *out, id, c, phantom.WriteOptions{DICOM: !*noDICOM, Crop: *crop, Progress: bar.update}); err != nil {
		return err
	}
	bar.finish()
	if *preview != "" {
		if err := writePreview(*preview, c.CT, c.Label, c.LandmarkVoxels(), 0); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%s: %v voxels of %.3g×%.3g×%.3g mm, %d ear(s); generated in %.1fs, written in %.1fs\n",
		*out, c.CT.Size, c.Info.Grid.SpacingMM[0], c.Info.Grid.SpacingMM[1], c.Info.Grid.SpacingMM[2], len(c.Info.Ears),
		tGen.Seconds(), (time.Since(t0) - tGen).Seconds())
	return nil
}

func phantomDataset(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("phantom dataset", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 0, "number of cases")
	out := fs.String("out", "", "dataset folder to create")
	seed := fs.Uint64("seed", 1, "seed of the first case (case i has seed+i)")
	tokens := fs.String("variant", "", "one variant for every case (default: a mix of scanners, specimens, lesions, bilateral and negatives)")
	dicom := fs.Bool("dicom", false, "also write a DICOM series per case")
	crop := fs.Int("crop", 0, "crop the NIfTI files to at least N voxels per axis around the labyrinth (0: full grid)")
	dr := fs.Bool("dr", false, "domain randomisation for every case (tissue HU, blur, noise)")
	split := fs.String("split", "0.7,0.15,0.15", "train,validation,test fractions")
	jobs := fs.Int("jobs", 0, "cases in parallel (0: all cores)")
	var g gridFlags
	g.add(fs)
	if g.size == "" {
		g.size = "256"
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n <= 0 || *out == "" || fs.NArg() > 0 {
		return fmt.Errorf("%w: phantom dataset needs --n > 0 and --out", errUsage)
	}
	opt := phantom.DatasetOptions{N: *n, FirstSeed: *seed, DICOM: *dicom, Crop: *crop, DomainRandomisation: *dr, Jobs: *jobs, Args: args}
	var err error
	if opt.Size, opt.SpacingMM, err = g.parse(); err != nil {
		return err
	}
	if *tokens != "" {
		v, err := phantom.ParseVariant(*tokens)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		opt.Variant = &v
	}
	sf, err := triple(*split)
	if err != nil || sf[0] < 0 || sf[1] < 0 || sf[2] < 0 || sf[0]+sf[1]+sf[2] <= 0 {
		return fmt.Errorf("%w: --split %q", errUsage, *split)
	}
	opt.Split = sf
	bar := newBar(stderr, "cases")
	opt.Progress = bar.update
	t0 := time.Now()
	idx, err := phantom.WriteDataset(ctx, *out, opt)
	if err != nil {
		return err
	}
	bar.finish()
	fmt.Fprintf(stdout, "%s: %d cases (train %d, validation %d, test %d) in %.1fs\n", *out, len(idx.Cases),
		len(idx.Splits["train"]), len(idx.Splits["validation"]), len(idx.Splits["test"]), time.Since(t0).Seconds())
	return nil
}

func phantomPreview(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("phantom preview", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("case", "", "a case folder (ct.nii.gz, label.nii.gz, case.json)")
	seed := fs.Uint64("seed", 0, "generate this seed instead of reading a case")
	tokens := fs.String("variant", "", "variant tokens when generating")
	out := fs.String("out", "", "PNG file to write")
	fov := fs.Float64("fov", 0, "show only this many mm around the labyrinth (0: the whole slice)")
	var g gridFlags
	g.add(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || (*dir == "") == (*seed == 0) || fs.NArg() > 0 {
		return fmt.Errorf("%w: phantom preview needs --out and one of --case or --seed", errUsage)
	}
	var ct *volume.Volume[int16]
	var lab *volume.Volume[uint8]
	var lms [][3]float64
	if *dir != "" {
		var err error
		if ct, _, err = nifti.ReadFileAs[int16](filepath.Join(*dir, phantom.FileCT)); err != nil {
			return err
		}
		if lab, _, err = nifti.ReadFileAs[uint8](filepath.Join(*dir, phantom.FileLabel)); err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(*dir, phantom.FileCase))
		if err != nil {
			return err
		}
		var info phantom.Info
		if err := json.Unmarshal(b, &info); err != nil {
			return fmt.Errorf("%s: %w", phantom.FileCase, err)
		}
		for _, e := range info.Ears {
			for _, n := range phantom.LandmarkNames {
				lms = append(lms, e.Landmarks[n].Voxel)
			}
		}
	} else {
		v, err := phantom.ParseVariant(*tokens)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		if v.Size, v.SpacingMM, err = g.parse(); err != nil {
			return err
		}
		c, err := phantom.Generate(ctx, *seed, v, phantom.Options{})
		if err != nil {
			return err
		}
		ct, lab, lms = c.CT, c.Label, c.LandmarkVoxels()
	}
	if err := writePreview(*out, ct, lab, lms, *fov); err != nil {
		return err
	}
	fmt.Fprintln(stdout, *out)
	return nil
}

func writePreview(path string, ct *volume.Volume[int16], lab *volume.Volume[uint8], lms [][3]float64, fov float64) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	return phantom.Preview(f, ct, lab, phantom.PreviewOptions{Landmarks: lms, FOVMM: fov})
}

// bar is a one-line progress bar on stderr.
type bar struct {
	w     io.Writer
	what  string
	start time.Time
	last  time.Time
	shown bool
}

func newBar(w io.Writer, what string) *bar { return &bar{w: w, what: what, start: time.Now()} }

func (b *bar) update(done, total int) {
	now := time.Now()
	if done < total && now.Sub(b.last) < 200*time.Millisecond {
		return
	}
	b.last = now
	const width = 30
	fill := width * done / max(total, 1)
	eta := ""
	if done > 0 && done < total {
		left := time.Duration(float64(now.Sub(b.start)) / float64(done) * float64(total-done))
		eta = " eta " + left.Round(time.Second).String()
	}
	fmt.Fprintf(b.w, "\r[%s%s] %d/%d %s %s%s   ", strings.Repeat("#", fill), strings.Repeat(".", width-fill),
		done, total, b.what, now.Sub(b.start).Round(time.Second), eta)
	b.shown = true
}

func (b *bar) finish() {
	if b.shown {
		fmt.Fprintln(b.w)
	}
}
