// Package export sends the node's results to PACS: a durable outbox in the
// index (one row per object and destination), a planner that fills it from
// the stored results, and a C-STORE SCU per destination that sends due rows
// over one association per batch, retries with exponential backoff and
// jitter, and leaves a row dead after a bounded number of attempts until an
// operator retries it (`otonode exports retry`).
//
// Every state change is a row update in the index, so a restarted exporter
// (or one on another node sharing PostgreSQL) continues where it stopped:
// a sent row is never sent again, and only the rows of a batch in flight at
// a crash can reach the destination twice, after their lease expires.
package export

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otonode/otonode/store"
	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/index"
)

// Destination is one C-STORE SCP the exporter sends to, or a folder it
// copies the files into.
type Destination struct {
	Name           string // the outbox rows' destination, unique
	AETitle        string // called AE title
	Addr           string // host:port
	CallingAETitle string // ours; empty means "OTONODE"
	TLS            *tls.Config
	// Folder, instead of an AE, receives each object as a file (a viewer's
	// import folder, the newcomer's demo).
	Folder string
	// Sources also sends the analysed source series of each result.
	Sources bool
	// AllowNotForDiagnosis also sends results of a model whose manifest
	// says it is not for diagnosis; otherwise they are held, and logged.
	AllowNotForDiagnosis bool
}

func (d Destination) plan() index.ExportPlan {
	return index.ExportPlan{Destination: d.Name, AllowNotForDiagnosis: d.AllowNotForDiagnosis, Sources: d.Sources}
}

// Options of an Exporter; zero fields take the documented defaults.
type Options struct {
	Destinations []Destination
	PollInterval time.Duration // default 1 s
	BatchSize    int           // objects per association, default 50
	MaxAttempts  int           // default 12
	BackoffBase  time.Duration // default 10 s
	BackoffMax   time.Duration // default 1 h
	// Timeout bounds association set-up and each wait for the destination
	// (default 30 s).
	Timeout time.Duration
	// Lease is how long rows handed to a sender are kept from other nodes'
	// senders (default 5 min); longer than a batch normally takes.
	Lease time.Duration
	// PlanInterval is how often a destination looks for stored results
	// without a row (and for held ones, to log them) when nothing woke it
	// (default 30 s). A look reads every result, so it is not done at each
	// poll; the node wakes the exporter for each result it indexes, and
	// this interval catches results indexed by other nodes.
	PlanInterval time.Duration
	// Decompress, when set, turns a stored data set in a compressed
	// transfer syntax into explicit VR little endian for a destination
	// that accepts the SOP class only uncompressed (cmd passes
	// scp/qr.Decompress). Without it such an object fails.
	Decompress func(r io.Reader, transferSyntax string) (io.Reader, error)
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.PollInterval, time.Second)
	def(&o.BackoffBase, 10*time.Second)
	def(&o.BackoffMax, time.Hour)
	def(&o.Timeout, 30*time.Second)
	def(&o.Lease, 5*time.Minute)
	def(&o.PlanInterval, 30*time.Second)
	if o.BatchSize <= 0 {
		o.BatchSize = 50
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 12
	}
	return o
}

// Files opens stored instance files; *files.Local has it.
type Files interface {
	Open(ctx context.Context, location string) (files.Reader, error)
}

// Exporter plans and sends exports. Run it once per node process.
type Exporter struct {
	idx     *index.Index
	files   Files
	opt     Options
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time

	wakes []chan struct{}

	mu sync.Mutex
	// heldSince is, per destination, the receipt time of the newest held
	// result already logged: older ones are not logged again.
	heldSince map[string]time.Time
}

// New checks the options and registers the metrics on reg (nil: none).
func New(idx *index.Index, f Files, opt Options, reg prometheus.Registerer, log *slog.Logger) (*Exporter, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opt = opt.withDefaults()
	seen := map[string]bool{}
	for _, d := range opt.Destinations {
		if d.Name == "" || (d.Folder == "") == (d.AETitle == "" || d.Addr == "") {
			return nil, fmt.Errorf("export: destination %q needs a name and either an AE title and address or a folder", d.Name)
		}
		if seen[d.Name] {
			return nil, fmt.Errorf("export: destination %q twice", d.Name)
		}
		seen[d.Name] = true
	}
	e := &Exporter{idx: idx, files: f, opt: opt, log: log, metrics: NewMetrics(reg), now: time.Now,
		heldSince: map[string]time.Time{}}
	for range opt.Destinations {
		e.wakes = append(e.wakes, make(chan struct{}, 1))
	}
	return e, nil
}

// Wake makes every destination look for new results and due rows now
// instead of at its next poll; the node calls it when it stores a result.
func (e *Exporter) Wake() {
	for _, w := range e.wakes {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// Run serves every destination until ctx is done; one destination that is
// down or slow does not hold up the others.
func (e *Exporter) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i, d := range e.opt.Destinations {
		if d.AllowNotForDiagnosis {
			e.log.Warn("export destination receives results of models not for diagnosis (allow_not_for_diagnosis)",
				"destination", d.Name, "ae", d.AETitle, "addr", d.Addr, "folder", d.Folder)
		}
		if d.Folder != "" {
			e.log.Info("export destination", "destination", d.Name, "folder", d.Folder, "sources", d.Sources)
		} else {
			e.log.Info("export destination", "destination", d.Name, "ae", d.AETitle, "addr", d.Addr,
				"tls", d.TLS != nil, "sources", d.Sources)
		}
		wg.Go(func() { e.serve(ctx, d, e.wakes[i]) })
	}
	wg.Wait()
	return nil
}

// destState is a sender's memory of its destination between polls.
type destState struct {
	failures  int       // consecutive association failures
	downUntil time.Time // no association before this
	plannedAt time.Time // last look for results without a row
}

func (e *Exporter) serve(ctx context.Context, d Destination, wake <-chan struct{}) {
	var st destState
	t := time.NewTicker(e.opt.PollInterval)
	defer t.Stop()
	for {
		if err := e.pass(ctx, d, &st); err != nil && ctx.Err() == nil {
			e.log.Error("export pass", "destination", d.Name, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
			st.plannedAt = time.Time{}
		}
	}
}

// Pass runs one planning and sending pass over every destination, in turn;
// for tests and for tools that export without running the loop.
func (e *Exporter) Pass(ctx context.Context) error {
	var errs []error
	for _, d := range e.opt.Destinations {
		var st destState
		errs = append(errs, e.pass(ctx, d, &st))
	}
	return errors.Join(errs...)
}

// pass plans new rows for d and logs newly held results when woken or
// every PlanInterval, then sends due rows batch by batch until none is due
// or the destination fails.
func (e *Exporter) pass(ctx context.Context, d Destination, st *destState) error {
	now := e.now()
	if now.Sub(st.plannedAt) >= e.opt.PlanInterval {
		n, err := e.idx.PlanExports(ctx, d.plan(), now)
		if err != nil {
			return err
		}
		if n > 0 {
			e.log.Debug("exports planned", "destination", d.Name, "rows", n)
		}
		if err := e.logHeld(ctx, d); err != nil {
			return err
		}
		st.plannedAt = now
	}
	defer e.updateGauges(ctx)
	// Before anything is handed out: results a newer revision replaced
	// while they waited (PACS down, a late worker) must not go out.
	if err := e.suppressSuperseded(ctx, d); err != nil {
		return err
	}
	if now.Before(st.downUntil) {
		return nil
	}
	for ctx.Err() == nil {
		due, err := e.idx.DueExports(ctx, d.Name, e.now(), e.opt.Lease, e.opt.BatchSize)
		if err != nil {
			return err
		}
		if len(due) == 0 {
			return nil
		}
		send := e.sendBatch
		if d.Folder != "" {
			send = e.sendToFolder
		}
		if ok := send(ctx, d, due); !ok {
			st.failures++
			st.downUntil = e.now().Add(e.backoff(st.failures))
			return nil
		}
		st.failures, st.downUntil = 0, time.Time{}
	}
	return nil
}

// suppressSuperseded ends the pending rows of d whose results a newer
// analysis of the series replaced, and logs them by series.
func (e *Exporter) suppressSuperseded(ctx context.Context, d Destination) error {
	rows, err := e.idx.SuppressSuperseded(ctx, d.Name)
	if err != nil {
		return err
	}
	type group struct {
		series, reason string
		kinds          []string
	}
	var groups []*group
	for _, r := range rows {
		e.metrics.Exported.WithLabelValues(d.Name, string(index.ExportSuppressed)).Inc()
		if n := len(groups); n > 0 && groups[n-1].series == r.SeriesInstanceUID && groups[n-1].reason == r.LastError {
			groups[n-1].kinds = append(groups[n-1].kinds, r.Kind)
			continue
		}
		groups = append(groups, &group{series: r.SeriesInstanceUID, reason: r.LastError, kinds: []string{r.Kind}})
	}
	for _, g := range groups {
		e.log.Warn("exports suppressed", "destination", d.Name, "series_instance_uid", g.series,
			"objects", len(g.kinds), "kinds", strings.Join(g.kinds, ","), "reason", g.reason)
	}
	return nil
}

// backoff is the wait after the n-th consecutive failure: BackoffBase
// doubled per failure up to BackoffMax, drawn uniformly from its upper
// half so that rows failed together spread out again.
func (e *Exporter) backoff(n int) time.Duration {
	d := e.opt.BackoffBase
	for i := 1; i < n && d < e.opt.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, e.opt.BackoffMax)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// logHeld logs, once per process, each result held from d and why,
// grouped by the analysed series: those received since the newest one
// logged before (at most 500 a look).
func (e *Exporter) logHeld(ctx context.Context, d Destination) error {
	held, err := e.idx.HeldExports(ctx, d.plan(), 500)
	if err != nil {
		return err
	}
	type group struct {
		series, reason string
		kinds          []string
	}
	var groups []*group
	bySeries := map[string]*group{}
	e.mu.Lock()
	since, newest := e.heldSince[d.Name], e.heldSince[d.Name]
	for _, h := range held {
		if !h.ReceivedAt.After(since) {
			continue
		}
		if h.ReceivedAt.After(newest) {
			newest = h.ReceivedAt
		}
		key := h.SeriesInstanceUID + "\x00" + h.Reason
		g := bySeries[key]
		if g == nil {
			g = &group{series: h.SeriesInstanceUID, reason: h.Reason}
			bySeries[key] = g
			groups = append(groups, g)
		}
		g.kinds = append(g.kinds, h.Kind)
	}
	e.heldSince[d.Name] = newest
	e.mu.Unlock()
	for _, g := range groups {
		why := "the model's manifest says not for diagnosis and the destination does not set allow_not_for_diagnosis"
		if g.reason == index.HeldUnknownResult {
			why = "the worker recorded no result_objects row, so nothing says whether it may be used for diagnosis"
		}
		e.log.Warn("results held from export", "destination", d.Name, "series_instance_uid", g.series,
			"objects", len(g.kinds), "kinds", strings.Join(g.kinds, ","), "reason", why)
	}
	return nil
}

func (e *Exporter) updateGauges(ctx context.Context) {
	counts, err := e.idx.ExportCounts(ctx)
	if err != nil {
		return
	}
	for _, d := range e.opt.Destinations {
		e.metrics.Queue.WithLabelValues(d.Name).Set(float64(counts[d.Name][index.ExportPending]))
		e.metrics.Dead.WithLabelValues(d.Name).Set(float64(counts[d.Name][index.ExportDead]))
	}
}

// WakeOnResults wraps the node's ingest index so that each new result, once
// its row is committed, wakes the exporter instead of waiting for its poll.
func (e *Exporter) WakeOnResults(idx store.Index) store.Index {
	return wakingIndex{Index: idx, wake: e.Wake}
}

type wakingIndex struct {
	store.Index
	wake func()
}

func (w wakingIndex) RecordInstance(ctx context.Context, in index.Instance) (index.Recorded, error) {
	rec, err := w.Index.RecordInstance(ctx, in)
	if err == nil && in.Result && !rec.Duplicate {
		w.wake()
	}
	return rec, err
}
