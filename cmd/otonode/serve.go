package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/otonode/otonode/scp"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nc := bindNodeConfig(fs, "YAML configuration file")
	natsURL := fs.String("nats", "", "NATS URL, short for --nats.url (default: an embedded server under the data directory)")
	grace := fs.Duration("grace", 30*time.Second, "how long running associations may take to finish at shutdown")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: otonode serve [--config FILE] [--nats URL] [--database postgres://…] [--SETTING VALUE ...]

Run the ingest node: C-STORE SCP, index, series completion, NATS events.
Settings come from defaults, the YAML file, OTONODE_* environment variables
and flags, in that order (flags win).`)
		fs.PrintDefaults()
	}
	cfg, err := parseNodeConfig(fs, args, nc)
	if err != nil {
		return err
	}
	if *natsURL != "" {
		cfg.NATS.URL = *natsURL
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	log, err := scp.NewLogger(stderr, cfg.Log)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if err := prepareWorker(&cfg); err != nil {
		return err
	}
	n, err := scp.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	if err := addExporter(ctx, cfg, n); err != nil {
		return err
	}
	if err := addWorker(ctx, cfg, n); err != nil {
		return err
	}
	return n.Run(ctx, *grace)
}
