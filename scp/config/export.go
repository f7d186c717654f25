package config

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// Export configures where the node sends results (and optionally the source
// series): the PACS destinations and the retry policy of the outbox.
//
//	export:
//	  destinations:
//	    pacs:                      # the name `otonode exports` shows
//	      ae_title: PACS
//	      host: pacs.example.org
//	      port: 104
//	      objects: results         # or all: results and the analysed series
//	      allow_not_for_diagnosis: false
//	      tls: {enabled: true, ca_file: ca.pem}
//	    viewer:
//	      folder: /srv/otonode/out   # files instead of C-STORE
//
// Destinations are a map by name so that YAML names each once; they can be
// set only in the file (environment variables and flags set the scalar
// settings below). Zero scalar settings take the defaults named on each.
type Export struct {
	Destinations map[string]Destination `yaml:"destinations"`
	// DemoFolder receives the results when no destination is configured,
	// so a node started with nothing configured shows what it made: a
	// folder under data_dir unless absolute (default "results"), taking
	// results of models not for diagnosis too, as the start-up log says.
	// "off" keeps results on the node until destinations are configured.
	DemoFolder string `yaml:"demo_folder"`
	// PollInterval between looks for new results and due retries
	// (default 1s); the node also wakes the exporter when it stores one.
	PollInterval time.Duration `yaml:"poll_interval"`
	// BatchSize is how many objects one association carries at most
	// (default 50).
	BatchSize int `yaml:"batch_size"`
	// MaxAttempts after which an object is dead until `otonode exports
	// retry` (default 12).
	MaxAttempts int `yaml:"max_attempts"`
	// BackoffBase is the wait after the first failure; each further
	// failure doubles it up to BackoffMax, with jitter (defaults 10s, 1h).
	// With the defaults an object dies about four hours after its first
	// failure, so a PACS down for a lunch break loses nothing.
	BackoffBase time.Duration `yaml:"backoff_base"`
	BackoffMax  time.Duration `yaml:"backoff_max"`
	// Timeout bounds association set-up and each wait for the destination
	// (default 30s).
	Timeout time.Duration `yaml:"timeout"`
	// Lease is how long the objects handed to a sender are kept from any
	// other sender (default 5m): a node killed in the middle of a batch
	// leaves that batch's unconfirmed objects to be sent again after it,
	// by itself restarted or by another node on the same database. It
	// must outlast a batch; shorter leases are for tests.
	Lease time.Duration `yaml:"lease"`
}

// Destination is one C-STORE SCP the node exports to, or a folder.
type Destination struct {
	// Folder, when set, receives each object as a file
	// (<analysed series UID>/<kind>-<SOP instance UID>.dcm) instead of a
	// C-STORE; the AE settings and TLS are then left empty.
	Folder  string `yaml:"folder"`
	AETitle string `yaml:"ae_title"`
	Host    string `yaml:"host"`
	Port    int    `yaml:"port"`
	// CallingAETitle is the node's AE title towards this destination;
	// empty means dicom.ae_title.
	CallingAETitle string `yaml:"calling_ae_title"`
	// Objects is "results" (SEG, SR, KOS; the default) or "all" (also the
	// analysed source series).
	Objects string `yaml:"objects"`
	// AllowNotForDiagnosis also sends results of a model whose manifest
	// says it is not for diagnosis; otherwise they are held.
	AllowNotForDiagnosis bool           `yaml:"allow_not_for_diagnosis"`
	TLS                  DestinationTLS `yaml:"tls"`
}

// DestinationTLS makes the association TLS (PS3.15 B.1).
type DestinationTLS struct {
	Enabled bool `yaml:"enabled"`
	// CAFile verifies the destination's certificate; empty uses the
	// system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the node's client certificate, for
	// destinations that require one.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName to verify; empty means Host.
	ServerName string `yaml:"server_name"`
}

// Objects a destination receives.
const (
	ExportResults = "results"
	ExportAll     = "all"
)

// WithDefaults returns e with zero settings replaced by their defaults.
func (e Export) WithDefaults() Export {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&e.PollInterval, time.Second)
	def(&e.BackoffBase, 10*time.Second)
	def(&e.BackoffMax, time.Hour)
	def(&e.Timeout, 30*time.Second)
	def(&e.Lease, 5*time.Minute)
	if e.BatchSize == 0 {
		e.BatchSize = 50
	}
	if e.MaxAttempts == 0 {
		e.MaxAttempts = 12
	}
	if e.DemoFolder == "" {
		e.DemoFolder = "results"
	}
	return e
}

// Names returns the destination names in order.
func (e Export) Names() []string {
	names := make([]string, 0, len(e.Destinations))
	for n := range e.Destinations {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Validate checks the export section (after WithDefaults or before: zero
// scalars are valid).
func (e Export) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if e.PollInterval < 0 || e.BackoffBase < 0 || e.BackoffMax < 0 || e.Timeout < 0 || e.Lease < 0 || e.BatchSize < 0 || e.MaxAttempts < 0 {
		bad("export: durations, batch_size and max_attempts must be >= 0")
	}
	if e.BackoffMax != 0 && e.BackoffBase > e.BackoffMax {
		bad("export.backoff_base %v exceeds export.backoff_max %v", e.BackoffBase, e.BackoffMax)
	}
	for _, name := range e.Names() {
		d := e.Destinations[name]
		p := "export.destinations." + name
		if name == "" || len(name) > 64 {
			bad("export destination name %q must have 1 to 64 characters", name)
		}
		if d.Folder != "" {
			if d.AETitle != "" || d.Host != "" || d.Port != 0 || d.CallingAETitle != "" || d.TLS != (DestinationTLS{}) {
				bad("%s has a folder and AE settings; it is one or the other", p)
			}
		} else {
			if n := len(d.AETitle); n == 0 || n > 16 {
				bad("%s.ae_title %q must have 1 to 16 characters (or set folder)", p, d.AETitle)
			}
			if len(d.CallingAETitle) > 16 {
				bad("%s.calling_ae_title %q is longer than 16 characters", p, d.CallingAETitle)
			}
			if d.Host == "" {
				bad("%s.host is empty", p)
			}
			if d.Port < 1 || d.Port > 65535 {
				bad("%s.port %d out of range", p, d.Port)
			}
		}
		switch d.Objects {
		case "", ExportResults, ExportAll:
		default:
			bad("%s.objects %q is neither %s nor %s", p, d.Objects, ExportResults, ExportAll)
		}
		if (d.TLS.CertFile == "") != (d.TLS.KeyFile == "") {
			bad("%s.tls needs both cert_file and key_file", p)
		}
		if !d.TLS.Enabled && (d.TLS.CAFile != "" || d.TLS.CertFile != "" || d.TLS.ServerName != "") {
			bad("%s.tls has files but enabled is false", p)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}
