package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Worker configures the analysis worker: the child process `otonode serve`
// supervises, or a separate `otonode worker` (on this machine or another,
// sharing the node's database and NATS). Zero settings take the defaults
// named on each.
//
//	worker:
//	  disabled: false          # serve starts no local worker (remote ones only)
//	  model: /models/ear/model.json   # default: the reference model in the binary
//	  max_deliver: 4
//	  listen: 127.0.0.1:9465   # /healthz, /readyz, /metrics of the worker
type Worker struct {
	// Disabled keeps `otonode serve` from starting a local worker.
	Disabled bool `yaml:"disabled"`
	// Model is the model manifest (the JSON beside the ONNX file); empty
	// uses the reference model built into the binary.
	Model string `yaml:"model"`
	// ORTLib is the path of libonnxruntime.so; empty uses $ORT_LIB.
	ORTLib string `yaml:"ort_lib"`
	// Provider is the ONNX Runtime execution provider: cpu (default) or
	// cuda.
	Provider string `yaml:"provider"`
	// Threads for ONNX Runtime; 0 means one per core.
	Threads int `yaml:"threads"`
	// TTA lists the test-time augmentations by name, comma-separated
	// (identity,i90,…); empty runs the paper's 10. Fewer passes are faster
	// and estimate the uncertainty worse (one pass gives none).
	TTA string `yaml:"tta"`
	// ID names the worker in claims and analysis rows (default host/pid).
	ID string `yaml:"id"`
	// AETitle is the worker's calling AE title towards the node (default
	// OTONODE_WORKER).
	AETitle string `yaml:"ae_title"`
	// Node, "AET@host:port", overrides the node's DICOM address that jobs
	// carry (a remote worker that reaches the node under another name).
	Node string `yaml:"node"`
	// InstancesDir overrides the node's instance folder that jobs carry;
	// "-" never reads the node's files and always fetches by C-GET.
	InstancesDir string `yaml:"instances_dir"`
	// MaxDeliver bounds the attempts per series revision (default 4); then
	// the node moves the job to the dead letters and fails the series.
	MaxDeliver int `yaml:"max_deliver"`
	// AckWait before an unacknowledged job is redelivered (default 30s);
	// the worker sends heartbeats every third of it while it analyses.
	AckWait time.Duration `yaml:"ack_wait"`
	// RetryDelay after the first transient failure (default 5s), doubled
	// with each further delivery up to 5 min.
	RetryDelay time.Duration `yaml:"retry_delay"`
	// Timeout bounds one analysis (default 30m).
	Timeout time.Duration `yaml:"timeout"`
	// Concurrency is how many series one worker analyses at once (default
	// 1; run more workers to use more machines).
	Concurrency int `yaml:"concurrency"`
	// Listen is the worker's HTTP address for /healthz, /readyz and
	// /metrics; empty serves none.
	Listen string `yaml:"listen"`
	// RestartDelay is the supervisor's first wait before restarting a
	// crashed local worker (default 1s), doubled per crash up to 1 min.
	RestartDelay time.Duration `yaml:"restart_delay"`
}

// WithDefaults returns w with zero settings replaced by their defaults.
func (w Worker) WithDefaults() Worker {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&w.AckWait, 30*time.Second)
	def(&w.RetryDelay, 5*time.Second)
	def(&w.Timeout, 30*time.Minute)
	def(&w.RestartDelay, time.Second)
	if w.MaxDeliver == 0 {
		w.MaxDeliver = 4
	}
	if w.Concurrency == 0 {
		w.Concurrency = 1
	}
	if w.Provider == "" {
		w.Provider = "cpu"
	}
	if w.AETitle == "" {
		w.AETitle = "OTONODE_WORKER"
	}
	return w
}

// NodeAddress splits Node ("AET@host:port", AET optional) into its parts;
// all are empty when Node is.
func (w Worker) NodeAddress() (ae, host string, port int, err error) {
	if w.Node == "" {
		return "", "", 0, nil
	}
	addr := w.Node
	if a, rest, ok := strings.Cut(w.Node, "@"); ok {
		ae, addr = a, rest
	}
	h, p, err := net.SplitHostPort(addr)
	if err == nil {
		port, err = strconv.Atoi(p)
	}
	if err != nil || h == "" || port < 1 || port > 65535 || len(ae) > 16 {
		return "", "", 0, fmt.Errorf("%w: worker.node %q: want AET@host:port", ErrInvalid, w.Node)
	}
	return ae, h, port, nil
}

// Validate checks the worker section.
func (w Worker) Validate() error {
	var errs []error
	if w.MaxDeliver < 0 || w.Concurrency < 0 || w.Threads < 0 {
		errs = append(errs, errors.New("worker.max_deliver, worker.concurrency and worker.threads must be >= 0"))
	}
	if w.AckWait < 0 || w.RetryDelay < 0 || w.Timeout < 0 || w.RestartDelay < 0 {
		errs = append(errs, errors.New("worker durations must be >= 0"))
	}
	if w.AckWait != 0 && w.AckWait < 3*time.Second {
		errs = append(errs, fmt.Errorf("worker.ack_wait %v is below 3s", w.AckWait))
	}
	if n := len(w.AETitle); n > 16 {
		errs = append(errs, fmt.Errorf("worker.ae_title %q is longer than 16 characters", w.AETitle))
	}
	switch w.Provider {
	case "", "cpu", "cuda":
	default:
		errs = append(errs, fmt.Errorf("worker.provider %q is neither cpu nor cuda", w.Provider))
	}
	if _, _, _, err := w.NodeAddress(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}
