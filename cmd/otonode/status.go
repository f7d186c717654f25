package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/otonode/otonode/store/index"
)

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nc := bindNodeConfig(fs, "YAML configuration file of the node")
	limit := fs.Int("n", 20, "how many analysis rows (one per ear)")
	flagged := fs.Bool("flagged", false, "only flagged analyses")
	asJSON := fs.Bool("json", false, "one JSON object per row")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: otonode status [--config FILE] [--database postgres://… | --data_dir DIR] [-n 20] [--flagged] [--json]

List the most recent analyses from the node's database, newest first: one row
per ear with status, flag, inner-ear volume and TTA uncertainty.`)
		fs.PrintDefaults()
	}
	cfg, err := parseNodeConfig(fs, args, nc)
	if err != nil {
		return err
	}
	if *limit < 1 {
		return fmt.Errorf("%w: -n must be >= 1", errUsage)
	}
	x, err := openNodeIndex(ctx, cfg, slog.New(slog.DiscardHandler), true)
	if err != nil {
		return err
	}
	defer x.Close()
	rows, err := x.RecentAnalyses(ctx, *limit, *flagged)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	return printAnalyses(stdout, rows)
}

// printAnalyses writes the rows as an aligned table.
func printAnalyses(w io.Writer, rows []index.Analysis) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "no analyses yet")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WHEN\tSERIES\tREV\tEAR\tSTATUS\tFLAG\tVOLUME mm³\tUNCERTAINTY\tMODEL\tREASON")
	for _, r := range rows {
		ear := r.Ear
		if ear == "" {
			ear = "-"
		}
		flag := ""
		if r.Flagged {
			flag = "FLAG: " + r.FlagReasons
		}
		reason := r.Reason
		if flag != "" && reason == "" {
			reason = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.CreatedAt.Local().Format(time.DateTime),
			r.SeriesInstanceUID, r.Revision, ear, r.Status, flag, optFloat(r.VolumeMM3, 1), optFloat(r.Uncertainty, 5),
			r.ModelName+" "+r.ModelVersion, reason)
	}
	return tw.Flush()
}

func optFloat(p *float64, prec int) string {
	if p == nil {
		return "-"
	}
	return strconv.FormatFloat(*p, 'f', prec, 64)
}
