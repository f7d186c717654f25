package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/otonode/otonode/dimse"
)

func runMove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("move", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f qrFlags
	f.register(fs)
	dest := fs.String("dest", "", "the move destination's AE title, as the peer knows it (required)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: otonode move --host HOST --port PORT --called-aet AE --dest AE [--model study|patient] --level LEVEL -k Keyword=value...\n\n"+
			"Ask a peer to send the matching instances to the AE title --dest by C-MOVE.\n"+
			"Example: otonode move --dest PACS --level SERIES -k StudyInstanceUID=1.2.3 -k SeriesInstanceUID=1.2.3.4")
		fs.PrintDefaults()
	}
	class, id, err := f.parse(fs, args, "move")
	if err != nil {
		return err
	}
	if *dest == "" {
		return fmt.Errorf("%w: --dest is required", errUsage)
	}
	start := time.Now()
	a, err := f.dial(ctx, f.options(), class)
	if err != nil {
		return err
	}
	res, err := a.Move(ctx, class, *dest, id, func(s dimse.SubOperations) { retrieveBar(stderr, s) })
	if err != nil {
		a.Abort()
		if res != nil {
			printRetrieve(stdout, "moved", res, *dest, time.Since(start))
		}
		return err
	}
	if err := a.Release(ctx); err != nil {
		return err
	}
	printRetrieve(stdout, "moved", res, *dest, time.Since(start))
	if res.NumberOfFailedSuboperations > 0 {
		return fmt.Errorf("%d sub-operations failed", res.NumberOfFailedSuboperations)
	}
	return nil
}

// retrieveBar draws the progress of a C-MOVE or C-GET on one line.
func retrieveBar(w io.Writer, s dimse.SubOperations) {
	const width = 30
	done := int(s.NumberOfCompletedSuboperations) + int(s.NumberOfFailedSuboperations) + int(s.NumberOfWarningSuboperations)
	total := done + int(s.NumberOfRemainingSuboperations)
	n := width * done / max(total, 1)
	fmt.Fprintf(w, "\r[%s%s] %d/%d  %d failed  %d warnings", strings.Repeat("=", n), strings.Repeat(" ", width-n),
		done, total, s.NumberOfFailedSuboperations, s.NumberOfWarningSuboperations)
}

func printRetrieve(w io.Writer, verb string, res *dimse.RetrieveResult, to string, d time.Duration) {
	fmt.Fprintf(w, "\n%s %d instances to %s (%d failed, %d warnings), status %v, in %v\n", verb,
		res.NumberOfCompletedSuboperations, to, res.NumberOfFailedSuboperations, res.NumberOfWarningSuboperations,
		res.Status, d.Round(time.Millisecond))
	for _, uid := range res.FailedSOPInstanceUIDs {
		fmt.Fprintf(w, "failed: %s\n", uid)
	}
}
