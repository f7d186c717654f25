// Package worker is otonode's analysis worker: a durable JetStream pull
// consumer on the work stream that any number of workers share. For each
// series-complete job it claims the analysis in the database, fetches the
// series (the node's files when it runs beside the node, C-GET otherwise),
// runs the analysis, sends the SEG and SR to the node by C-STORE and records
// the per-ear metrics, the revision's new state and the events in one
// transaction.
//
// JetStream semantics (shared/reference/go-libraries.md §6): explicit ack
// with an AckWait of about 30 s, kept alive by InProgress heartbeats during
// the analysis; retries by NakWithDelay with a growing delay (a BackOff list
// would replace AckWait and redeliver in the middle of a long analysis);
// MaxDeliver bounded, after which the node's dead-letter mover takes the
// job. Permanent errors are terminated at once.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/otonode/otonode/analysis"
	"github.com/otonode/otonode/scp/events"
	"github.com/otonode/otonode/store/index"
)

// Analyzer is the analysis as the worker sees it, so tests can put a fake
// or a crashing one in its place.
type Analyzer interface {
	// Model identifies the model; its SHA-256 keys claims and result UIDs.
	Model() analysis.Model
	// Analyze analyses the DICOM files of one series. An error wrapping
	// analysis.ErrInput or ErrPermanent is not retried.
	Analyze(ctx context.Context, files []string) (*analysis.Result, error)
}

// ErrPermanent marks an error that retrying cannot cure.
var ErrPermanent = errors.New("worker: permanent error")

// Defaults of the consumer and the heartbeat.
const (
	DefaultDurable    = "analysis"
	DefaultAckWait    = 30 * time.Second
	DefaultMaxDeliver = 4
	DefaultAETitle    = "OTONODE_WORKER"
)

// Worker consumes series-complete jobs. Zero fields take the defaults.
type Worker struct {
	// ID names this worker in claims and rows (default host name and pid).
	ID       string
	JS       jetstream.JetStream
	Topology events.Topology
	Index    *index.Index
	Analyzer Analyzer

	// Durable is the name of the consumer all workers share.
	Durable string
	// AckWait before JetStream redelivers an unacknowledged job; the lease
	// of a claim is 5/6 of it, so a dead worker's claim has expired by the
	// time its job comes back.
	AckWait time.Duration
	// Heartbeat is how often the lease is renewed and InProgress sent
	// (default AckWait/3).
	Heartbeat time.Duration
	// MaxDeliver bounds the attempts per job (default 4).
	MaxDeliver int
	// RetryDelay is the first NakWithDelay after a transient error; it
	// doubles with each delivery up to 5 min (default 5 s).
	RetryDelay time.Duration
	// Timeout bounds one analysis (default 30 min).
	Timeout time.Duration
	// Concurrency is the number of jobs analysed at once (default 1).
	Concurrency int

	// AETitle is the calling AE title towards the node (default
	// OTONODE_WORKER).
	AETitle string
	// Node overrides the DICOM address the job names (AE title, host,
	// port) where it is set: a remote worker that reaches the node under
	// another name.
	Node events.Source
	// DataDir overrides the node's instance folder the job names; "-"
	// never reads local files and always fetches by C-GET.
	DataDir string
	// TempDir holds C-GET downloads (default os.TempDir()).
	TempDir string

	Metrics *Metrics
	Logger  *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// AfterAnalyze, when set, is called between the analysis and the
	// results being written (tests: crash there).
	AfterAnalyze func(series string)
}

func (w *Worker) defaults() {
	if w.ID == "" {
		h, _ := os.Hostname()
		w.ID = fmt.Sprintf("%s/%d", h, os.Getpid())
	}
	if w.Durable == "" {
		w.Durable = DefaultDurable
	}
	if w.AckWait <= 0 {
		w.AckWait = DefaultAckWait
	}
	if w.Heartbeat <= 0 {
		w.Heartbeat = w.AckWait / 3
	}
	if w.MaxDeliver <= 0 {
		w.MaxDeliver = DefaultMaxDeliver
	}
	if w.RetryDelay <= 0 {
		w.RetryDelay = 5 * time.Second
	}
	if w.Timeout <= 0 {
		w.Timeout = 30 * time.Minute
	}
	if w.Concurrency <= 0 {
		w.Concurrency = 1
	}
	if w.AETitle == "" {
		w.AETitle = DefaultAETitle
	}
	if w.Logger == nil {
		w.Logger = slog.New(slog.DiscardHandler)
	}
	if w.Metrics == nil {
		w.Metrics = NewMetrics(nil)
	}
	if w.Now == nil {
		w.Now = time.Now
	}
}

// ConsumerConfig is the durable pull consumer every worker creates (the
// same configuration from each, so none undoes another's).
func (w *Worker) ConsumerConfig() jetstream.ConsumerConfig {
	w.defaults()
	return jetstream.ConsumerConfig{
		Durable:       w.Durable,
		Description:   "otonode analysis workers",
		FilterSubject: w.Topology.WorkSubject(),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.AckWait,
		MaxDeliver:    w.MaxDeliver,
		// A job waits in the stream, not in a worker's buffer.
		MaxAckPending: -1,
	}
}

// Run consumes jobs until ctx ends. A job being analysed when ctx ends is
// given back (Nak) so another worker takes it at once.
func (w *Worker) Run(ctx context.Context) error {
	w.defaults()
	if w.JS == nil || w.Index == nil || w.Analyzer == nil {
		return errors.New("worker: JS, Index and Analyzer are required")
	}
	cons, err := w.JS.CreateOrUpdateConsumer(ctx, w.Topology.WorkStream(), w.ConsumerConfig())
	if err != nil {
		return fmt.Errorf("worker: consumer: %w", err)
	}
	m := w.Analyzer.Model()
	w.Logger = w.Logger.With("worker", w.ID)
	w.Logger.Info("worker consuming", "stream", w.Topology.WorkStream(), "consumer", w.Durable,
		"model", m.Name, "model_version", m.Version, "model_sha256", m.SHA256, "max_deliver", w.MaxDeliver,
		"concurrency", w.Concurrency)
	var wg sync.WaitGroup
	for range w.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx, cons)
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// loop fetches one job at a time: a prefetched job would age in the buffer
// while another is analysed.
func (w *Worker) loop(ctx context.Context, cons jetstream.Consumer) {
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			if ctx.Err() == nil {
				w.Logger.Warn("fetching a job failed", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		for msg := range batch.Messages() {
			w.Handle(ctx, msg)
		}
		if err := batch.Error(); err != nil && ctx.Err() == nil && !errors.Is(err, jetstream.ErrNoMessages) {
			w.Logger.Debug("fetch", "err", err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Handle processes one job and acknowledges, naks or terminates it.
func (w *Worker) Handle(ctx context.Context, msg jetstream.Msg) {
	w.defaults()
	var job events.SeriesComplete
	if err := json.Unmarshal(msg.Data(), &job); err != nil || job.SeriesInstanceUID == "" || job.Revision < 1 {
		reason := fmt.Sprintf("not a series-complete job: %v", err)
		w.Logger.Error("terminating job", "reason", reason)
		w.deadLetter(ctx, msg, reason)
		w.terminate(msg, reason)
		return
	}
	delivered := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		delivered = md.NumDelivered
	}
	log := w.Logger.With("series_instance_uid", job.SeriesInstanceUID, "revision", job.Revision, "delivery", delivered)
	model := w.Analyzer.Model()
	key := index.ClaimKey{SeriesInstanceUID: job.SeriesInstanceUID, Revision: job.Revision, ModelSHA256: model.SHA256}
	// In progress first, then the claim: JetStream redelivers this job
	// AckWait after the last InProgress, and the lease is shorter than
	// AckWait, so a job that comes back finds its dead worker's lease over.
	msg.InProgress()
	claim, err := w.Index.TakeClaim(ctx, key, w.ID, w.lease(), w.Now())
	switch {
	case errors.Is(err, index.ErrFinished):
		log.Info("analysis already finished; job acknowledged")
		msg.Ack()
		return
	case errors.Is(err, index.ErrState):
		log.Info("revision no longer waits for analysis; job acknowledged", "why", err)
		msg.Ack()
		return
	case errors.Is(err, index.ErrNotFound):
		// The node indexed the revision before it queued the job, so a
		// worker that does not know it is on another database: keep the
		// job for a worker that can do it.
		log.Error("series revision unknown to this worker's database; is it the node's?", "err", err)
		msg.NakWithDelay(w.retryDelay(delivered))
		return
	case errors.Is(err, index.ErrClaimed):
		// Mostly a re-published duplicate: the holder has its own copy,
		// which comes back if the holder dies. Clocks may disagree,
		// though, so look again after the lease instead of dropping the
		// job, and acknowledge only before it would become a dead letter.
		if delivered+1 >= uint64(w.MaxDeliver) {
			log.Info("another worker holds the claim; duplicate job acknowledged", "why", err)
			msg.Ack()
			return
		}
		d := max(claim.LeaseUntil.Sub(w.Now())+time.Second, time.Second)
		log.Info("another worker holds the claim; looking again after its lease", "why", err, "retry_in", d)
		msg.NakWithDelay(d)
		return
	case err != nil:
		log.Warn("claim failed, retrying later", "err", err)
		msg.NakWithDelay(w.retryDelay(delivered))
		return
	}
	log = log.With("attempt", claim.Attempt)
	log.Info("analysis claimed")
	w.Metrics.InFlight.Inc()
	defer w.Metrics.InFlight.Dec()
	start := w.Now()

	actx, cancel := context.WithTimeout(ctx, w.Timeout)
	defer cancel()
	stopBeat := w.heartbeat(actx, cancel, msg, key, log)
	out, err := w.analyse(actx, job, log)
	lost := stopBeat()
	w.Metrics.Duration.Observe(w.Now().Sub(start).Seconds())
	switch {
	case lost:
		// Another worker took the claim over with the redelivered job (this
		// delivery has expired); its result counts. No ack: it would end
		// the new holder's delivery of the same message.
		log.Warn("claim lost during the analysis; leaving the job to the new holder")
		w.Metrics.Analyses.WithLabelValues("lost").Inc()
		return
	case err == nil:
	case isPermanent(err):
		out = failure(job, model, analysis.StatusNotAnalysable, err.Error())
	default:
		w.retry(ctx, msg, key, delivered, err, log)
		return
	}
	// The results are at the node: record them even when shutting down.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer fcancel()
	if err := w.finish(fctx, job, key, out); err != nil {
		if errors.Is(err, index.ErrClaimed) {
			log.Warn("analysis not recorded: another worker took the claim over", "err", err)
			return
		}
		if errors.Is(err, index.ErrFinished) || errors.Is(err, index.ErrState) {
			log.Warn("analysis not recorded: the revision changed meanwhile", "err", err)
			msg.Ack()
			return
		}
		w.retry(ctx, msg, key, delivered, err, log)
		return
	}
	w.Metrics.Analyses.WithLabelValues(out.outcome).Inc()
	if out.outcome == analysis.StatusNotAnalysable || out.outcome == StatusFailed {
		log.Warn("analysis failed permanently; job terminated", "outcome", out.outcome, "reason", out.reason)
		w.deadLetter(ctx, msg, out.reason)
		if err := w.terminate(msg, out.reason); err != nil {
			log.Warn("terminating the job failed", "err", err)
		}
		return
	}
	log.Info("analysis finished", "outcome", out.outcome, "ears", len(out.res.Ears), "seg", out.segUID, "sr", out.srUID,
		"seconds", w.Now().Sub(start).Seconds())
	if err := msg.DoubleAck(fctx); err != nil {
		// The claim is finished: a redelivery is acknowledged at once.
		log.Warn("acknowledging the job failed", "err", err)
	}
}

// terminate ends a job's deliveries. Servers before 2.10 ignore a "+TERM"
// that carries a reason (the job would come back), so they get a plain
// one; the dead letter holds the reason either way.
func (w *Worker) terminate(msg jetstream.Msg, reason string) error {
	if v := w.JS.Conn().ConnectedServerVersion(); olderThan210(v) {
		return msg.Term()
	}
	return msg.TermWithReason(reason)
}

// olderThan210 reports whether a server version ("2.9.10") is below 2.10.
func olderThan210(v string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major < 2 || major == 2 && minor < 10
}

func isPermanent(err error) bool {
	return errors.Is(err, analysis.ErrInput) || errors.Is(err, ErrPermanent)
}

// retry gives the claim back and asks for redelivery after a delay that
// grows with each delivery.
func (w *Worker) retry(ctx context.Context, msg jetstream.Msg, key index.ClaimKey, delivered uint64, cause error, log *slog.Logger) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := w.Index.ReleaseClaim(rctx, key, w.ID, w.Now()); err != nil {
		log.Warn("releasing the claim failed; it expires with its lease", "err", err)
	}
	d := w.retryDelay(delivered)
	if ctx.Err() != nil {
		d = 0 // shutting down: another worker may start now
	}
	w.Metrics.Analyses.WithLabelValues("retry").Inc()
	log.Warn("analysis failed, will retry", "err", cause, "retry_in", d, "max_deliver", w.MaxDeliver)
	msg.NakWithDelay(d)
}

// lease is the claim's lease: shorter than AckWait by a margin for clocks
// that disagree.
func (w *Worker) lease() time.Duration { return w.AckWait - w.AckWait/6 }

func (w *Worker) retryDelay(delivered uint64) time.Duration {
	d := w.RetryDelay
	for i := uint64(1); i < delivered && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

// heartbeat renews the claim's lease and tells JetStream the job is in
// progress every Heartbeat. The returned stop reports whether the claim was
// lost (another worker took it over), in which case it also cancelled the
// analysis.
func (w *Worker) heartbeat(ctx context.Context, cancel context.CancelFunc, msg jetstream.Msg, key index.ClaimKey, log *slog.Logger) (stop func() bool) {
	done := make(chan struct{})
	var lost bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(w.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			// The lease first: a worker that cannot renew it must not
			// keep the job from being redelivered.
			err := w.Index.RenewClaim(ctx, key, w.ID, w.lease(), w.Now())
			if errors.Is(err, index.ErrClaimed) {
				lost = true
				cancel()
				return
			}
			if err != nil {
				log.Warn("renewing the claim failed", "err", err)
				continue
			}
			if err := msg.InProgress(); err != nil {
				log.Warn("in-progress heartbeat failed", "err", err)
			}
		}
	}()
	return func() bool {
		close(done)
		wg.Wait()
		return lost
	}
}
