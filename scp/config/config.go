// Package config holds the configuration of an otonode node: defaults that
// work with nothing configured, a YAML file, environment variables and
// command-line flags, in that order of precedence (flags win).
//
// Every setting has one name, its YAML path; the environment variable is
// OTONODE_ followed by the path in upper case with dots as underscores
// (completion.quiet_period → OTONODE_COMPLETION_QUIET_PERIOD), so the
// documentation of one is the documentation of all.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration of a node.
type Config struct {
	// DataDir holds instance files, the embedded database and the embedded
	// NATS server's files.
	DataDir string `yaml:"data_dir"`
	DICOM   DICOM  `yaml:"dicom"`
	HTTP    HTTP   `yaml:"http"`
	// Database is a PostgreSQL URL (postgres://…) or empty for the embedded
	// SQLite database under DataDir.
	Database   string     `yaml:"database"`
	NATS       NATS       `yaml:"nats"`
	Completion Completion `yaml:"completion"`
	Storage    Storage    `yaml:"storage"`
	Selection  Selection  `yaml:"selection"`
	// Worker runs the analysis (worker.go).
	Worker Worker `yaml:"worker"`
	// Export sends results to PACS (export.go).
	Export Export `yaml:"export"`
	// Webhook POSTs flagged (and other) analysis events (webhook.go).
	Webhook Webhook `yaml:"webhook"`
	Log     Log     `yaml:"log"`
}

// DICOM configures the node's own Application Entity.
type DICOM struct {
	AETitle string `yaml:"ae_title"`
	Host    string `yaml:"host"` // listen address; empty means all interfaces
	Port    int    `yaml:"port"`
	// AllowedCallers lists the calling AE titles accepted, each optionally
	// as "AET@host" to pin the peer's address. Empty accepts any caller.
	AllowedCallers []string `yaml:"allowed_callers"`
	// MoveDestinations are the C-MOVE destinations, each "AET=host:port".
	MoveDestinations []string      `yaml:"move_destinations"`
	MaxAssociations  int           `yaml:"max_associations"`
	MaxPDULength     int           `yaml:"max_pdu_length"`
	ARTIMTimeout     time.Duration `yaml:"artim_timeout"`
	IdleTimeout      time.Duration `yaml:"idle_timeout"`
	TLS              TLS           `yaml:"tls"`
	// SOPClasses are the storage SOP classes accepted; empty accepts the
	// built-in list of storage SOP classes, "*" any abstract syntax.
	SOPClasses []string `yaml:"sop_classes"`
	// AdvertiseHost is the host name workers use to reach this node by
	// DICOM (in series-complete messages); empty uses Host or the machine's
	// host name.
	AdvertiseHost string `yaml:"advertise_host"`
}

// TLS enables DICOM over TLS when CertFile and KeyFile are set.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, requires and verifies client certificates.
	ClientCAFile string `yaml:"client_ca_file"`
}

// HTTP configures the operations endpoint (/healthz, /readyz, /metrics).
type HTTP struct {
	Listen string `yaml:"listen"` // empty disables it
}

// NATS says where events go.
type NATS struct {
	// URL of an external NATS server or cluster; empty runs an embedded
	// server under DataDir.
	URL string `yaml:"url"`
	// EmbeddedListen opens the embedded server on TCP (for workers in other
	// processes); empty keeps it in-process.
	EmbeddedListen string `yaml:"embedded_listen"`
	// Prefix names the streams and subjects (see events.Topology).
	Prefix string `yaml:"prefix"`
}

// Completion sets when a series counts as complete.
type Completion struct {
	// QuietPeriod after the sending association's release with no new
	// instance of the series.
	QuietPeriod time.Duration `yaml:"quiet_period"`
	// Inactivity without a new instance, for senders that keep their
	// association open.
	Inactivity time.Duration `yaml:"inactivity"`
	// StudySettle is how long to wait after a series completes for the
	// other series of its study before choosing the one to analyse.
	StudySettle time.Duration `yaml:"study_settle"`
	// ReconcileAfter re-publishes a queued revision that no worker claimed
	// in this time, so a message the broker lost is not lost to the node.
	ReconcileAfter time.Duration `yaml:"reconcile_after"`
}

// Storage sets admission control and retention of source instances.
type Storage struct {
	// MinFreeBytes below which new associations are refused and C-STOREs
	// fail with 0xA700 (Out of Resources).
	MinFreeBytes int64 `yaml:"min_free_bytes"`
	// Fsync switches durability off only for benchmarks; a node that
	// acknowledges before data is on disk can lose acknowledged instances.
	Fsync bool `yaml:"fsync"`
	// RetainSourceDays deletes source instances that many days after their
	// analysis; 0 keeps them. Results are never deleted.
	RetainSourceDays int `yaml:"retain_source_days"`
	// MaxBytes is a quota on the instance files under the data directory
	// (0: none); above it the node refuses like above MinFreeBytes.
	MaxBytes int64 `yaml:"max_bytes"`
	// Segments is how many 16 MiB segments (the journal an instance is
	// durable in before its own file is written) the node makes ready at
	// its first start (0: 16): 16 hold a 400-slice 512² series, which then
	// arrives at full speed into a new node; a stream that outgrows them
	// makes more on its way (at most 24). Not a setting: tests lower it,
	// since making them writes 256 MiB.
	Segments int `yaml:"-"`
}

// Selection decides which complete series are analysed (routing rules) and,
// within a study, which one of those qualifying.
type Selection struct {
	// Modalities analysed (Modality (0008,0060)).
	Modalities []string `yaml:"modalities"`
	// MaxSliceThickness and MaxSliceSpacing in mm; 0 disables the limit.
	// A series that does not say passes.
	MaxSliceThickness float64 `yaml:"max_slice_thickness"`
	MaxSliceSpacing   float64 `yaml:"max_slice_spacing"`
	// MinInstances below which a series is too short to hold an inner ear.
	MinInstances int `yaml:"min_instances"`
	// CallingAE and Description are optional regular expressions the
	// sending AE title and the SeriesDescription must match.
	CallingAE   string `yaml:"calling_ae"`
	Description string `yaml:"description"`
	// BoneKernels are ConvolutionKernel substrings (case-insensitive) of a
	// bone (sharp) reconstruction, preferred within a study.
	BoneKernels []string `yaml:"bone_kernels"`
}

// Log configures slog.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Default is the configuration of a node started with nothing configured.
func Default() Config {
	return Config{
		DataDir: "otonode-data",
		DICOM: DICOM{
			AETitle:         "OTONODE",
			Port:            11112,
			MaxAssociations: 64,
			MaxPDULength:    256 << 10,
			ARTIMTimeout:    30 * time.Second,
			IdleTimeout:     5 * time.Minute,
		},
		HTTP: HTTP{Listen: "127.0.0.1:8080"},
		Completion: Completion{QuietPeriod: 2 * time.Second, Inactivity: 30 * time.Second, StudySettle: 5 * time.Second,
			ReconcileAfter: 2 * time.Minute},
		Storage: Storage{MinFreeBytes: 1 << 30, Fsync: true, Segments: 16},
		Selection: Selection{
			Modalities:        []string{"CT"},
			MaxSliceThickness: 1.5,
			MaxSliceSpacing:   1.5,
			MinInstances:      16,
			BoneKernels: []string{"BONE", "SHARP", "H60", "H70", "HR6", "HR7", "B60", "B70", "B75", "B80",
				"U70", "U75", "U90", "UB", "YC", "YD", "FC30", "FC81"},
		},
		Log: Log{Level: "info", Format: "text"},
	}
}

// ErrInvalid marks a configuration that cannot work.
var ErrInvalid = errors.New("config: invalid")

// LoadFile overlays the YAML file at path onto c. Unknown keys are errors,
// so a misspelt setting does not silently keep its default.
func (c *Config) LoadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	return nil
}

// Validate checks the settings that would otherwise fail later and farther
// from their cause.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.DataDir == "" {
		bad("data_dir is empty")
	}
	if n := len(c.DICOM.AETitle); n == 0 || n > 16 {
		bad("dicom.ae_title %q must have 1 to 16 characters", c.DICOM.AETitle)
	}
	if c.DICOM.Port < 1 || c.DICOM.Port > 65535 {
		bad("dicom.port %d out of range", c.DICOM.Port)
	}
	if (c.DICOM.TLS.CertFile == "") != (c.DICOM.TLS.KeyFile == "") {
		bad("dicom.tls needs both cert_file and key_file")
	}
	if c.DICOM.MaxPDULength != 0 && c.DICOM.MaxPDULength < 4096 {
		bad("dicom.max_pdu_length %d is below 4096", c.DICOM.MaxPDULength)
	}
	if c.Completion.QuietPeriod <= 0 || c.Completion.Inactivity <= 0 {
		bad("completion.quiet_period and completion.inactivity must be positive")
	}
	if c.Completion.StudySettle < 0 || c.Completion.ReconcileAfter <= 0 {
		bad("completion.study_settle must be >= 0 and completion.reconcile_after positive")
	}
	if c.Storage.MaxBytes < 0 || c.Selection.MaxSliceThickness < 0 || c.Selection.MaxSliceSpacing < 0 {
		bad("storage.max_bytes and selection limits must be >= 0")
	}
	for _, re := range []string{c.Selection.CallingAE, c.Selection.Description} {
		if _, err := regexp.Compile(re); err != nil {
			bad("selection pattern %q: %v", re, err)
		}
	}
	if err := c.Webhook.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Storage.RetainSourceDays < 0 {
		bad("storage.retain_source_days must be >= 0")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// DataPath is p inside the data directory.
func (c *Config) DataPath(p ...string) string {
	return filepath.Join(append([]string{c.DataDir}, p...)...)
}

// UsesPostgres reports whether Database names a PostgreSQL server (a
// postgres:// URL or a key=value DSN); otherwise the node uses the embedded
// SQLite file when Database is empty.
func (c *Config) UsesPostgres() bool {
	db := c.Database
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://") || strings.Contains(db, "dbname=")
}
