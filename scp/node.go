package scp

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/scp/config"
	"github.com/otonode/otonode/scp/events"
	"github.com/otonode/otonode/scp/ops"
	"github.com/otonode/otonode/scp/qr"
	"github.com/otonode/otonode/store"
	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/header"
	"github.com/otonode/otonode/store/index"
)

// Node is a running otonode ingest node: the DICOM port, the store and
// index, series completion, selection, the outbox publisher, the
// reconciler, the dead-letter mover, and the HTTP port with the
// operations endpoints and the API.
type Node struct {
	Config   config.Config
	Files    *files.Local
	Index    *index.Index
	Ingest   *store.Ingest
	Topology events.Topology
	Source   events.Source
	JS       jetstream.JetStream
	Metrics  *Metrics
	Ops      *ops.Handler

	Scheduler  *Scheduler
	Selector   *Selector
	Reconciler *Reconciler
	Publisher  *events.Publisher
	Mover      *events.Mover
	DIMSE      *dimse.Server
	// Mux routes the DICOM port's requests: C-ECHO and C-STORE go to
	// Storage. Other services (Query/Retrieve) register on it, and add
	// their abstract syntaxes to DIMSE.Syntaxes, between New and Run.
	Mux     *dimse.ServeMux
	Storage *Storage

	services []service

	log      *slog.Logger
	nc       *nats.Conn
	embedded *events.Embedded
	dicomL   net.Listener
	httpL    net.Listener
	http     *http.Server
	closers  []func()
}

type service struct {
	name string
	run  func(context.Context) error
}

// AddService registers a long-running part of the node that lives outside
// package scp (the exporter, the worker supervisor) between New and Run. Run
// starts it with the node's other background loops and cancels its context
// after the DICOM port has drained and the outbox was flushed.
func (n *Node) AddService(name string, run func(context.Context) error) {
	n.services = append(n.services, service{name, run})
}

// Logger is the node's logger, for services added with AddService.
func (n *Node) Logger() *slog.Logger { return n.log }

// NewLogger builds the node's logger from the log settings.
func NewLogger(w io.Writer, c config.Log) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("scp: log.level %q: %w", c.Level, err)
	}
	o := &slog.HandlerOptions{Level: lvl}
	switch c.Format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("scp: log.format %q is neither text nor json", c.Format)
}

// New opens everything the node needs and binds its ports; Run serves.
// On error, whatever was opened is closed again.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (n *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n = &Node{Config: cfg, log: log, Topology: events.Topology{Prefix: cfg.NATS.Prefix}}
	defer func() {
		if err != nil {
			n.close()
			n = nil
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("scp: data directory: %w", err)
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n.Ops = ops.NewHandler()
	n.Metrics = NewMetrics(n.Ops.Registry)

	// Store and index.
	n.Files, err = files.Open(ctx, filepath.Join(abs, "instances"), files.Options{
		NoSync: !cfg.Storage.Fsync, MinFreeBytes: uint64(max(cfg.Storage.MinFreeBytes, 0)), MaxBytes: cfg.Storage.MaxBytes,
		Segments: cmp.Or(cfg.Storage.Segments, 16), Log: log.With("component", "files"),
	})
	if err != nil {
		return nil, err
	}
	// Closed last: instances still in segments are written to their files.
	n.closers = append(n.closers, func() {
		if err := n.Files.Close(); err != nil {
			n.log.Error("closing the instance store", "err", err)
		}
	})
	if cfg.UsesPostgres() {
		n.Index, err = index.OpenPostgres(ctx, cfg.Database)
	} else if cfg.Database == "" {
		// The instance files are durable before they are indexed, and
		// Reindex at start restores rows a power cut took, so the index
		// need not flush every commit.
		sync := "NORMAL"
		if !cfg.Storage.Fsync {
			sync = "OFF"
		}
		n.Index, err = index.OpenSQLite(ctx, filepath.Join(abs, "index.db"), index.Synchronous(sync))
	} else {
		err = fmt.Errorf("%w: database %q is neither postgres://… nor empty (SQLite)", config.ErrInvalid, cfg.Database)
	}
	if err != nil {
		return nil, err
	}
	n.closers = append(n.closers, func() { n.Index.Close() })
	n.Ingest = &store.Ingest{Files: n.Files, Index: n.Index, IsResult: IsResult(n.Index), Log: log}
	// The data set's SHA-256 is recorded when its file is written, after
	// the C-STORE-RSP.
	n.Files.SetHashSink(n.Ingest.RecordHashes)

	// NATS.
	if cfg.NATS.URL == "" {
		n.embedded, err = events.StartEmbedded(events.EmbeddedOptions{StoreDir: filepath.Join(abs, "nats"),
			Listen: cfg.NATS.EmbeddedListen, Logger: log.With("component", "nats")})
		if err != nil {
			return nil, err
		}
		n.closers = append(n.closers, n.embedded.Shutdown)
		n.nc, err = n.embedded.Connect(nats.Name("otonode-serve"))
	} else {
		n.nc, err = nats.Connect(cfg.NATS.URL, nats.Name("otonode-serve"), nats.MaxReconnects(-1))
	}
	if err != nil {
		return nil, fmt.Errorf("scp: NATS: %w", err)
	}
	nc := n.nc
	n.closers = append(n.closers, func() { nc.Close() })
	if n.JS, err = jetstream.New(n.nc); err != nil {
		return nil, err
	}
	if err := n.Topology.EnsureStreams(ctx, n.JS, events.StreamOptions{}); err != nil {
		return nil, err
	}

	// Ports.
	n.dicomL, err = net.Listen("tcp", net.JoinHostPort(cfg.DICOM.Host, strconv.Itoa(cfg.DICOM.Port)))
	if err != nil {
		return nil, fmt.Errorf("scp: DICOM port: %w", err)
	}
	n.closers = append(n.closers, func() { n.dicomL.Close() })
	if cfg.HTTP.Listen != "" {
		if n.httpL, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
			return nil, fmt.Errorf("scp: HTTP port: %w", err)
		}
		n.closers = append(n.closers, func() { n.httpL.Close() })
	}
	n.Source = events.Source{DataDir: filepath.Join(abs, "instances"), AETitle: cfg.DICOM.AETitle,
		Host: advertiseHost(cfg.DICOM), Port: n.dicomL.Addr().(*net.TCPAddr).Port}
	if err := n.wire(); err != nil {
		return nil, err
	}
	return n, nil
}

// IsResult tells the objects a worker made from source instances: a SEG,
// Comprehensive 3D SR or Key Object Selection whose SOP Instance UID the
// worker recorded in result_objects before sending it. Such an instance is
// indexed as a result (retention keeps it) and never analysed; the record
// rather than the calling AE title decides, so remote workers and a
// re-sent copy are recognised alike.
func IsResult(x *index.Index) func(files.Meta, *header.Attributes) bool {
	return func(m files.Meta, _ *header.Attributes) bool {
		switch m.SOPClassUID {
		case "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.88.59":
		default:
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := x.ResultObject(ctx, m.SOPInstanceUID)
		return err == nil
	}
}

func advertiseHost(c config.DICOM) string {
	if c.AdvertiseHost != "" {
		return c.AdvertiseHost
	}
	if c.Host != "" && c.Host != "0.0.0.0" && c.Host != "::" {
		return c.Host
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "localhost"
}

// wire builds the services over the opened resources.
func (n *Node) wire() error {
	cfg := n.Config
	lg := n.log
	policy := index.Policy{QuietPeriod: cfg.Completion.QuietPeriod, InactivityTimeout: cfg.Completion.Inactivity,
		Announce: Announcer(n.Topology, n.Source)}
	n.Publisher = &events.Publisher{JS: n.JS, Outbox: Outbox{n.Index}, Logger: lg.With("component", "publisher")}
	rules, err := NewRules(cfg.Selection)
	if err != nil {
		return err
	}
	n.Selector = &Selector{Index: n.Index, Rules: rules, Settle: cfg.Completion.StudySettle, Topology: n.Topology,
		Source: n.Source, OnQueued: n.Publisher.Notify, Metrics: n.Metrics, Logger: lg.With("component", "selection")}
	n.Scheduler = &Scheduler{Index: n.Index, Policy: policy, Metrics: n.Metrics, Logger: lg.With("component", "completion"),
		OnComplete: func([]index.Completion) { n.Publisher.Notify(); n.Selector.Poke() }}
	n.Reconciler = &Reconciler{Index: n.Index, JS: n.JS, After: cfg.Completion.ReconcileAfter, Topology: n.Topology,
		Source: n.Source, Metrics: n.Metrics, Logger: lg.With("component", "reconciler")}
	n.Mover = &events.Mover{JS: n.JS, Topology: n.Topology, OnDeadLetter: MarkDeadLetter(n.Index, lg),
		Logger: lg.With("component", "dead-letters")}
	if w := cfg.Webhook; w.URL != "" {
		hook := &events.Webhook{JS: n.JS, Topology: n.Topology, URL: w.URL, Secret: w.Secret, Events: w.Events,
			Logger: lg.With("component", "webhook")}
		n.AddService("webhook", hook.Run)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	peers, err := ParsePeers(ctx, cfg.DICOM.AllowedCallers)
	if err != nil {
		return err
	}
	rel := &Releases{OnRelease: func(series []string, at time.Time) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Index.MarkReleased(ctx, series, at); err != nil {
			lg.Error("recording association release", "series", series, "err", err)
			return
		}
		n.Scheduler.Poke()
	}}
	if cfg.DICOM.TLS.CertFile != "" {
		tc, err := serverTLS(cfg.DICOM.TLS)
		if err != nil {
			return err
		}
		// TLS below the release tracking, so it sees the plain PDUs.
		n.dicomL = tls.NewListener(n.dicomL, tc)
	}
	n.dicomL = rel.Listener(n.dicomL, n.Metrics)
	n.Storage = &Storage{Ingest: n.Ingest, Releases: rel, Expecting: n.Scheduler.Poke, Metrics: n.Metrics,
		Logger: lg.With("component", "dicom")}
	n.Mux = dimse.NewServeMux()
	n.Mux.Handle(dimse.CEchoRQField, "", n.Storage)
	n.Mux.Handle(dimse.CStoreRQField, "", n.Storage)
	dests, err := moveDestinations(cfg.DICOM.MoveDestinations)
	if err != nil {
		return err
	}
	qrs := qr.New(n.Index, n.Files, qr.Options{AETitle: cfg.DICOM.AETitle, Destinations: dests, Logger: lg.With("component", "qr")})
	qrs.Register(n.Mux)
	adm := &Admission{Peers: peers, Files: n.Files, Metrics: n.Metrics, Logger: lg.With("component", "dicom")}
	n.DIMSE = &dimse.Server{
		AETitle:         cfg.DICOM.AETitle,
		Syntaxes:        append(qr.WithGetRole(Syntaxes(cfg.DICOM.SOPClasses)), qr.Syntaxes()...),
		Accept:          adm.Accept,
		Handler:         n.Mux,
		MaxPDULength:    uint32(max(cfg.DICOM.MaxPDULength, 0)),
		MaxAssociations: cfg.DICOM.MaxAssociations,
		ARTIMTimeout:    cfg.DICOM.ARTIMTimeout,
		IdleTimeout:     cfg.DICOM.IdleTimeout,
		Logger:          lg.With("component", "dicom"),
	}

	n.Ops.AddCheck("database", func(ctx context.Context) error {
		_, err := n.Index.Series(ctx, "0")
		if errors.Is(err, index.ErrNotFound) {
			return nil
		}
		return err
	})
	n.Ops.AddCheck("nats", func(ctx context.Context) error {
		if !n.nc.IsConnected() {
			return fmt.Errorf("NATS %s", n.nc.Status())
		}
		_, err := n.JS.AccountInfo(ctx)
		return err
	})
	mux := http.NewServeMux()
	mux.Handle("/", n.Ops)
	(&API{Index: n.Index, Policy: policy, OnComplete: n.Scheduler.OnComplete, Logger: lg}).Register(mux)
	n.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return nil
}

// serverTLS builds the DICOM port's TLS configuration (PS3.15 B.1).
func serverTLS(c config.TLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("scp: dicom.tls: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("scp: dicom.tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("scp: dicom.tls.client_ca_file %s holds no certificate", c.ClientCAFile)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// DICOMAddr and HTTPAddr are the bound addresses (useful with port 0).
func (n *Node) DICOMAddr() string { return n.dicomL.Addr().String() }

// HTTPAddr returns "" when the HTTP port is disabled.
func (n *Node) HTTPAddr() string {
	if n.httpL == nil {
		return ""
	}
	return n.httpL.Addr().String()
}

// Run serves until ctx ends, then shuts down in order: no new
// associations, in-flight ones finish (up to grace), then completion,
// publishing and the broker connection stop. It returns nil after a clean
// shutdown.
func (n *Node) Run(ctx context.Context, grace time.Duration) error {
	defer n.close()
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	goRun := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(bg); err != nil && !errors.Is(err, context.Canceled) {
				n.log.Error(name+" stopped", "err", err)
			}
		}()
	}
	// Reindex before completion: a file a crash left unindexed belongs to
	// its series' current revision, not to a late revision opened because
	// the scheduler completed the series first.
	goRun("completion", func(ctx context.Context) error {
		r, err := n.Ingest.Reindex(ctx, time.Time{})
		if r.Indexed > 0 || r.Unreadable > 0 || r.Hashed > 0 {
			n.log.Info("reindexed files a crash left unindexed", "checked", r.Checked, "indexed", r.Indexed,
				"unreadable", r.Unreadable, "hashed", r.Hashed)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			n.log.Error("reindex at start", "err", err)
		}
		return n.Scheduler.Run(ctx)
	})
	goRun("selection", n.Selector.Run)
	goRun("publisher", n.Publisher.Run)
	goRun("reconciler", n.Reconciler.Run)
	goRun("dead-letter mover", n.Mover.Run)
	for _, s := range n.services {
		goRun(s.name, s.run)
	}
	if days := n.Config.Storage.RetainSourceDays; days > 0 {
		goRun("retention", func(ctx context.Context) error {
			pol := store.RetentionPolicy{DeleteSourcesAfter: time.Duration(days) * 24 * time.Hour}
			for {
				r, err := store.ApplyRetention(ctx, n.Index, n.Files, pol, time.Now())
				if err != nil && ctx.Err() == nil {
					n.log.Error("retention", "err", err)
				} else if r.Deleted > 0 {
					n.log.Info("retention removed source instances", "files", r.Deleted, "bytes", r.Bytes)
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Hour):
				}
			}
		})
	}
	httpDone := make(chan error, 1)
	if n.httpL != nil {
		go func() { httpDone <- n.http.Serve(n.httpL) }()
	}
	dicomDone := make(chan error, 1)
	go func() { dicomDone <- n.DIMSE.Serve(n.dicomL) }()
	n.log.Info("otonode serving", "dicom", n.DICOMAddr(), "ae_title", n.Config.DICOM.AETitle, "http", n.HTTPAddr(),
		"data_dir", n.Config.DataDir, "database", n.Index.Dialect(), "nats", n.natsURL())

	var err error
	select {
	case <-ctx.Done():
	case err = <-dicomDone:
		err = fmt.Errorf("scp: DICOM server: %w", err)
	}
	n.log.Info("shutting down: refusing new associations, finishing the running ones")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	if serr := n.DIMSE.Shutdown(sctx); serr != nil {
		n.log.Warn("associations cut at the end of the grace period", "err", serr)
	}
	cancel()
	// Complete nothing new, but push out what is already in the outbox.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	if _, perr := n.Publisher.PublishPending(pctx); perr != nil {
		n.log.Warn("final publish", "err", perr)
	}
	cancel()
	stopBG()
	wg.Wait()
	if n.httpL != nil {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		n.http.Shutdown(hctx)
		cancel()
	}
	n.log.Info("otonode stopped")
	return err
}

func (n *Node) natsURL() string {
	if n.embedded != nil {
		if u := n.embedded.ClientURL(); u != "" {
			return "embedded " + u
		}
		return "embedded"
	}
	return n.Config.NATS.URL
}

// close releases what New opened, last first.
func (n *Node) close() {
	for i := len(n.closers) - 1; i >= 0; i-- {
		n.closers[i]()
	}
	n.closers = nil
}

// moveDestinations parses "AET=host:port" entries.
func moveDestinations(list []string) (map[string]qr.Destination, error) {
	dests := map[string]qr.Destination{}
	for _, e := range list {
		ae, addr, ok := strings.Cut(e, "=")
		ae = strings.TrimSpace(ae)
		if _, _, err := net.SplitHostPort(addr); !ok || ae == "" || len(ae) > 16 || err != nil {
			return nil, fmt.Errorf("%w: dicom.move_destinations entry %q: want AET=host:port", config.ErrInvalid, e)
		}
		dests[ae] = qr.Destination{Addr: strings.TrimSpace(addr)}
	}
	return dests, nil
}
