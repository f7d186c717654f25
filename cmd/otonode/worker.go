package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otonode/otonode/analysis"
	"github.com/otonode/otonode/analysis/infer"
	"github.com/otonode/otonode/analysis/model/reference"
	"github.com/otonode/otonode/analysis/tta"
	"github.com/otonode/otonode/results/worker"
	"github.com/otonode/otonode/scp"
	"github.com/otonode/otonode/scp/events"
	"github.com/otonode/otonode/scp/ops"
	"github.com/otonode/otonode/store/index"
)

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ncfg := bindNodeConfig(fs, "YAML configuration file (the node's, so both agree on database, NATS and prefix)")
	natsURL := fs.String("nats", "", "NATS URL, short for --nats.url (required: the worker cannot reach an embedded server in-process)")
	withParent := fs.Bool("exit-with-parent", false, "exit when the parent process goes away (set by otonode serve's supervisor)")
	memLimit := fs.Int("memory-limit-mb", 0, memoryLimitUsage())
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: otonode worker [--config FILE] --nats URL [--database postgres://…] [--worker.SETTING VALUE ...]

Run an analysis worker: take series-complete jobs from the node's work stream,
analyse them (by default with the reference model built into this binary),
send SEG and SR back to the node by C-STORE and record the metrics in the
node's database. Any number of workers, on any machines, share the work.
It reads the node's files when it can (same machine) and fetches the series by
C-GET otherwise. Settings as for serve (worker.* in the YAML file, OTONODE_*
variables, flags).`)
		fs.PrintDefaults()
	}
	cfg, err := parseNodeConfig(fs, args, ncfg)
	if err != nil {
		return err
	}
	if *natsURL != "" {
		cfg.NATS.URL = *natsURL
	}
	if err := cfg.Worker.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if cfg.NATS.URL == "" {
		return fmt.Errorf("%w: no NATS URL: give --nats (the node's nats.url, or its nats.embedded_listen address)", errUsage)
	}
	wc := cfg.Worker.WithDefaults()
	log, err := scp.NewLogger(stderr, cfg.Log)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if line := setMemoryLimit(*memLimit); line != "" {
		log.Info(line)
	}
	if *withParent {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go exitWithParent(ctx, cancel)
	}

	x, err := openNodeIndex(ctx, cfg, log, false)
	if err != nil {
		return err
	}
	defer x.Close()
	nc, err := nats.Connect(cfg.NATS.URL, nats.Name("otonode-worker"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("NATS %s: %w", cfg.NATS.URL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	topo := events.Topology{Prefix: cfg.NATS.Prefix}
	if err := topo.EnsureStreams(ctx, js, events.StreamOptions{}); err != nil {
		return err
	}
	manifest := wc.Model
	if manifest == "" {
		if manifest, err = unpackReference(cfg.DataPath("model")); err != nil {
			return err
		}
	}
	var ao analysis.Options
	if wc.TTA != "" {
		if ao.TTA, err = tta.ByName(strings.Split(wc.TTA, ",")); err != nil {
			return fmt.Errorf("%w: worker.tta: %v", errUsage, err)
		}
	}
	a, err := worker.OpenModel(manifest, wc.ORTLib, infer.Options{Provider: infer.Provider(wc.Provider), Threads: wc.Threads}, ao)
	if err != nil {
		return fmt.Errorf("model %s: %w", manifest, err)
	}
	defer a.Close()
	if m := a.Model(); m.NotForDiagnosis {
		log.Warn("the model is NOT FOR DIAGNOSTIC USE; its results say so", "model", m.Name, "statement", m.Statement)
	}

	h := ops.NewHandler()
	w := &worker.Worker{ID: wc.ID, JS: js, Topology: topo, Index: x, Analyzer: a,
		AckWait: wc.AckWait, MaxDeliver: wc.MaxDeliver, RetryDelay: wc.RetryDelay, Timeout: wc.Timeout,
		Concurrency: wc.Concurrency, AETitle: wc.AETitle, DataDir: wc.InstancesDir,
		Metrics: worker.NewMetrics(h.Registry), Logger: log.With("component", "worker")}
	if w.Node.AETitle, w.Node.Host, w.Node.Port, err = wc.NodeAddress(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if wc.Listen != "" {
		h.AddCheck("database", func(ctx context.Context) error {
			_, err := x.Series(ctx, "0")
			if errors.Is(err, index.ErrNotFound) {
				return nil
			}
			return err
		})
		h.AddCheck("nats", func(ctx context.Context) error {
			if !nc.IsConnected() {
				return fmt.Errorf("NATS %s", nc.Status())
			}
			return nil
		})
		l, err := net.Listen("tcp", wc.Listen)
		if err != nil {
			return fmt.Errorf("worker.listen: %w", err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(l)
		defer srv.Close()
		log.Info("worker HTTP endpoint", "listen", l.Addr().String())
	}
	err = w.Run(ctx)
	if errors.Is(err, context.Canceled) {
		log.Info("worker stopped")
		return nil
	}
	return err
}

// unpackReference writes the reference model built into the binary under
// dir (once per model version) and returns its manifest's path.
func unpackReference(dir string) (string, error) {
	sum := sha256.Sum256(reference.Manifest)
	d := filepath.Join(dir, "reference-"+hex.EncodeToString(sum[:6]))
	manifest := filepath.Join(d, "model.json")
	if _, err := os.Stat(manifest); err == nil {
		return manifest, nil // ReadManifest checks the ONNX file's hash
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", err
	}
	// The manifest last: its presence means the model is complete.
	for _, f := range []struct {
		name string
		b    []byte
	}{{"model.onnx", reference.ONNX}, {"model.json", reference.Manifest}} {
		tmp := filepath.Join(d, "."+f.name+".tmp")
		if err := os.WriteFile(tmp, f.b, 0o644); err != nil {
			return "", err
		}
		if err := os.Rename(tmp, filepath.Join(d, f.name)); err != nil {
			return "", err
		}
	}
	return manifest, nil
}

// exitWithParent cancels when the process that started this one is gone
// (a node killed with SIGKILL cannot stop its worker).
func exitWithParent(ctx context.Context, cancel context.CancelFunc) {
	parent := os.Getppid()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if os.Getppid() != parent {
				cancel()
				return
			}
		}
	}
}
