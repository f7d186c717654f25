package events

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedOptions configure the in-process NATS server of the
// single-machine default.
type EmbeddedOptions struct {
	// StoreDir holds JetStream's files (under the node's data directory).
	StoreDir string
	// Listen, when not empty ("127.0.0.1:4222"), also opens a TCP port so
	// workers in other processes and the nats CLI can connect. Empty keeps
	// the server in-process only.
	Listen string
	// MaxStore bounds JetStream's disk use (default 1 GiB).
	MaxStore int64
	Logger   *slog.Logger
}

// Embedded is a NATS server with JetStream running inside this process.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts the server and waits until it accepts connections.
// It writes every JetStream message to disk before acknowledging it
// (JetStream's default syncs only every two minutes, which would lose
// acknowledged series on a power cut).
func StartEmbedded(o EmbeddedOptions) (*Embedded, error) {
	if o.StoreDir == "" {
		return nil, errors.New("events: embedded NATS needs a store directory")
	}
	if o.MaxStore <= 0 {
		o.MaxStore = 1 << 30
	}
	opts := &server.Options{
		ServerName:         "otonode-embedded",
		JetStream:          true,
		StoreDir:           o.StoreDir,
		JetStreamMaxMemory: 64 << 20,
		JetStreamMaxStore:  o.MaxStore,
		SyncAlways:         true,
		NoLog:              true,
		NoSigs:             true,
	}
	if o.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("events: listen address: %w", err)
		}
		opts.Host = host
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("events: listen port %q: %w", port, err)
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("events: embedded NATS: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("events: embedded NATS did not become ready in 10 s")
	}
	if o.Logger != nil {
		o.Logger.Info("embedded NATS started", "store_dir", o.StoreDir, "listen", o.Listen, "sync_always", true)
	}
	return &Embedded{srv: srv}, nil
}

// Connect opens a client connection to the embedded server.
func (e *Embedded) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(e.srv), nats.Name("otonode")}, opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("events: connect to embedded NATS: %w", err)
	}
	return nc, nil
}

// ClientURL is the URL other processes connect to, or "" when the server
// does not listen on TCP.
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// Shutdown stops the server after flushing its state to disk.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}
