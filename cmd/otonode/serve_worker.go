package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/otonode/otonode/scp"
	"github.com/otonode/otonode/scp/config"
)

// prepareWorker adjusts the configuration before the node starts so that a
// local worker process can reach it: an embedded NATS server must listen
// on TCP, on loopback and a free port unless nats.embedded_listen says
// otherwise.
func prepareWorker(cfg *config.Config) error {
	if cfg.Worker.Disabled || cfg.NATS.URL != "" || cfg.NATS.EmbeddedListen != "" {
		return nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("a port for the embedded NATS server: %w", err)
	}
	cfg.NATS.EmbeddedListen = l.Addr().String()
	return l.Close()
}

// addWorker registers the supervisor of the local analysis worker: a child
// process (`otonode worker`), so that a crash inside ONNX Runtime cannot
// take the node down. worker.disabled leaves analysis to remote workers.
func addWorker(ctx context.Context, cfg config.Config, n *scp.Node) error {
	log := n.Logger().With("component", "worker-supervisor")
	if cfg.Worker.Disabled {
		log.Info("local worker disabled (worker.disabled); series wait for remote workers")
		return nil
	}
	if err := cfg.Worker.Validate(); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("worker: own executable: %w", err)
	}
	child, err := childConfig(cfg, n)
	if err != nil {
		return err
	}
	path := cfg.DataPath("worker.yaml")
	b, err := yaml.Marshal(child)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("worker: write %s: %w", path, err)
	}
	s := &supervisor{cmd: []string{exe, "worker", "--config", path, "--exit-with-parent"},
		restart: cfg.Worker.WithDefaults().RestartDelay, log: log, out: os.Stderr}
	n.AddService("worker supervisor", s.run)
	return nil
}

// childConfig is the node's configuration as the child worker needs it:
// absolute paths, the NATS URL it connects to, and the node's DICOM port on
// loopback unless worker.node says otherwise.
func childConfig(cfg config.Config, n *scp.Node) (config.Config, error) {
	c := cfg
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return c, err
	}
	c.DataDir = abs
	if c.NATS.URL == "" {
		host, port, err := net.SplitHostPort(cfg.NATS.EmbeddedListen)
		if err != nil {
			return c, fmt.Errorf("worker: nats.embedded_listen %q: %w", cfg.NATS.EmbeddedListen, err)
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		c.NATS.URL = "nats://" + net.JoinHostPort(host, port)
	}
	if c.Worker.Node == "" {
		_, port, err := net.SplitHostPort(n.DICOMAddr())
		if err != nil {
			return c, err
		}
		host := cfg.DICOM.Host
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		c.Worker.Node = cfg.DICOM.AETitle + "@" + net.JoinHostPort(host, port)
	}
	return c, nil
}

// supervisor runs the worker process and restarts it after a crash, with a
// delay that doubles per crash (up to a minute) and starts over after a
// run of a minute or more.
type supervisor struct {
	cmd     []string
	restart time.Duration
	log     *slog.Logger
	out     io.Writer
	// grace is how long the worker may take to give its job back after
	// SIGTERM (default 30 s).
	grace time.Duration
}

func (s *supervisor) run(ctx context.Context) error {
	delay := s.restart
	for {
		start := time.Now()
		err := s.once(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(start) >= time.Minute {
			delay = s.restart
		}
		s.log.Error("worker process ended; restarting", "err", err, "ran", time.Since(start).Round(time.Millisecond),
			"restart_in", delay)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Minute)
	}
}

// once runs the worker until it exits or ctx ends (then SIGTERM, and
// SIGKILL after the grace period).
func (s *supervisor) once(ctx context.Context) error {
	cmd := exec.Command(s.cmd[0], s.cmd[1:]...)
	// The child takes its settings from the file the node wrote; the
	// node's OTONODE_* variables would override what flags decided.
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, config.EnvPrefix) {
			cmd.Env = append(cmd.Env, e)
		}
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pw.Close()
		return err
	}
	pid := cmd.Process.Pid
	s.log.Info("worker process started", "pid", pid)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		prefix(s.out, pr, "worker["+strconv.Itoa(pid)+"] ")
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		grace := s.grace
		if grace <= 0 {
			grace = 30 * time.Second
		}
		select {
		case err = <-done:
		case <-time.After(grace):
			s.log.Warn("worker did not stop in time; killing it", "pid", pid)
			cmd.Process.Kill()
			err = <-done
		}
	}
	wg.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) && ctx.Err() == nil {
		return fmt.Errorf("worker pid %d: %s", pid, exit.ProcessState)
	}
	return err
}

// prefix copies r to w line by line, each line prefixed, so the worker's
// log lines are told from the node's.
func prefix(w io.Writer, r io.Reader, p string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fmt.Fprintf(w, "%s%s\n", p, sc.Bytes())
	}
	io.Copy(io.Discard, r)
}
