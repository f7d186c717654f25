package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/otonode/otonode/dimse/storescu"
)

func runPush(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f scuFlags
	f.register(fs)
	quiet := fs.Bool("quiet", false, "no progress bar")
	assocs := fs.Int("associations", 1, "send over this many associations in parallel")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: otonode push PATH... --host HOST --port PORT [--aet AE] [--called-aet AE] [--associations N]\n\n"+
			"Send DICOM files and folders (recursively) by C-STORE, each in its own transfer syntax.")
		fs.PrintDefaults()
	}
	paths, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return fmt.Errorf("%w: no PATH given", errUsage)
	}
	files, skipped, err := storescu.Scan(paths)
	if err != nil {
		return err
	}
	for _, s := range skipped {
		fmt.Fprintf(stderr, "skipping %v\n", s)
	}
	if len(files) == 0 {
		return fmt.Errorf("no DICOM files in %s", strings.Join(paths, " "))
	}
	start := time.Now()
	bar := func(p storescu.Progress) {
		if *quiet {
			return
		}
		const width = 30
		n := width * p.Done / max(p.Total, 1)
		rate := float64(p.Bytes) / 1e6 / max(time.Since(start).Seconds(), 1e-3)
		fmt.Fprintf(stderr, "\r[%s%s] %d/%d files  %.1f/%.1f MB  %.1f MB/s  %d failed",
			strings.Repeat("=", n), strings.Repeat(" ", width-n), p.Done, p.Total,
			float64(p.Bytes)/1e6, float64(p.TotalBytes)/1e6, rate, p.Failed)
		if p.Done == p.Total {
			fmt.Fprintln(stderr)
		}
	}
	res, err := storescu.PushParallel(ctx, f.addr(), f.options(), files, *assocs, bar)
	if !*quiet && res.Stored+len(res.Failed) < len(files) {
		fmt.Fprintln(stderr)
	}
	for _, e := range res.Failed {
		fmt.Fprintf(stderr, "failed: %v\n", e)
	}
	fmt.Fprintf(stdout, "stored %d of %d files on %s@%s (%d with warnings) in %v\n",
		res.Stored, len(files), f.calledAET, f.addr(), res.Warnings, time.Since(start).Round(time.Millisecond))
	if err != nil {
		return err
	}
	if len(res.Failed) > 0 {
		return fmt.Errorf("%d files failed", len(res.Failed))
	}
	return nil
}
