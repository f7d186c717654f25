package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/otonode/otonode/store/index"
)

// runExports lists the export outbox, or with "retry" sends dead rows
// again. It talks to the node's database directly (PostgreSQL, or the
// embedded SQLite file under the data directory), with the configuration
// loaded as `otonode serve` loads it, so it works whether the node runs or
// not.
func runExports(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "retry" {
		return runExportsRetry(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("exports", flag.ContinueOnError)
	fs.SetOutput(stderr)
	state := fs.String("state", "", "only rows in this state: pending, sent, dead or suppressed")
	dest := fs.String("destination", "", "only rows of this destination")
	limit := fs.Int("limit", 100, "at most this many rows, newest first")
	nc := bindNodeConfig(fs, "the node's YAML configuration file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: otonode exports [--state pending|sent|dead|suppressed] [--destination NAME] [--config FILE] [--database URL]
       otonode exports retry (--id N | --all-dead) [--destination NAME] [--config FILE] [--database URL]

List the export outbox of the node (one row per object and destination), or
set dead rows back to pending so the node sends them again. Reads the
node's database: --config, OTONODE_* and the setting flags as for serve.`)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	switch index.ExportState(*state) {
	case "", index.ExportPending, index.ExportSent, index.ExportDead, index.ExportSuppressed:
	default:
		return fmt.Errorf("%w: --state %q is not pending, sent, dead or suppressed", errUsage, *state)
	}
	x, err := openExportsIndex(ctx, nc)
	if err != nil {
		return err
	}
	defer x.Close()
	rows, err := x.Exports(ctx, index.ExportFilter{State: index.ExportState(*state), Destination: *dest, Limit: *limit})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDESTINATION\tSTATE\tATTEMPTS\tWHEN\tKIND\tSERIES\tSOP INSTANCE\tLAST ERROR")
	for _, r := range rows {
		when := r.NextAttemptAt
		if r.State == index.ExportSent {
			when = r.SentAt
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Destination, r.State, r.Attempts,
			when.Local().Format(time.DateTime), r.Kind, r.SeriesInstanceUID, r.SOPInstanceUID, oneLine(r.LastError, 80))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rows) == *limit {
		fmt.Fprintf(stderr, "(the newest %d rows; --limit shows more)\n", *limit)
	}
	return nil
}

func runExportsRetry(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("exports retry", flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.Int64("id", 0, "the dead row to send again")
	allDead := fs.Bool("all-dead", false, "send every dead row again")
	dest := fs.String("destination", "", "with --all-dead: only this destination's rows")
	nc := bindNodeConfig(fs, "the node's YAML configuration file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: otonode exports retry (--id N | --all-dead) [--destination NAME] [--config FILE] [--database URL]

Set dead export rows back to pending with fresh attempts; the node sends
them at its next poll.`)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if (*id != 0) == *allDead {
		return fmt.Errorf("%w: give either --id N or --all-dead", errUsage)
	}
	x, err := openExportsIndex(ctx, nc)
	if err != nil {
		return err
	}
	defer x.Close()
	if *allDead {
		n, err := x.RetryDeadExports(ctx, *dest, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d dead export(s) set back to pending\n", n)
		return nil
	}
	if err := x.RetryExport(ctx, *id, time.Now()); err != nil {
		if errors.Is(err, index.ErrNotFound) || errors.Is(err, index.ErrState) {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		return err
	}
	fmt.Fprintf(stdout, "export %d set back to pending\n", *id)
	return nil
}

// openExportsIndex opens the database of the node nc configures.
func openExportsIndex(ctx context.Context, nc nodeConfig) (*index.Index, error) {
	cfg, err := nc.load()
	if err != nil {
		return nil, err
	}
	return openNodeIndex(ctx, cfg, slog.New(slog.DiscardHandler), true)
}

// oneLine shortens s to n characters on one line.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
