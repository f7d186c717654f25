// Package events connects the node to NATS JetStream: the streams otonode
// uses, an embedded server for the single-machine default, the messages it
// publishes, and the publisher that moves rows of the database outbox onto
// the streams.
//
// Messages carry identifiers, counts, reasons and locations, never patient
// names: anyone with access to the broker may read them.
package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Topology names the streams and subjects of one otonode installation. A
// series-complete job goes to the work-queue stream, which one durable
// consumer shared by all workers drains; events go to a separate stream that
// any number of observers may read. Prefix lets several installations (or
// tests) share one NATS account; the zero value uses "otonode".
type Topology struct {
	Prefix string
}

func (t Topology) prefix() string {
	if t.Prefix == "" {
		return "otonode"
	}
	return t.Prefix
}

func (t Topology) stream(kind string) string { return strings.ToUpper(t.prefix()) + "_" + kind }

// WorkStream is the work-queue stream of series revisions to analyse.
func (t Topology) WorkStream() string { return t.stream("WORK") }

// WorkSubject is the subject of series-complete jobs.
func (t Topology) WorkSubject() string { return t.prefix() + ".work.series" }

// EventsStream keeps series-complete and analysis events for observers.
func (t Topology) EventsStream() string { return t.stream("EVENTS") }

// Event subjects: series complete, analysis done, flagged and failed.
func (t Topology) SeriesCompleteSubject() string  { return t.prefix() + ".events.series.complete" }
func (t Topology) AnalysisDoneSubject() string    { return t.prefix() + ".events.analysis.done" }
func (t Topology) AnalysisFlaggedSubject() string { return t.prefix() + ".events.analysis.flagged" }
func (t Topology) AnalysisFailedSubject() string  { return t.prefix() + ".events.analysis.failed" }

// DeadLetterStream keeps work that could not be done, with the reason.
func (t Topology) DeadLetterStream() string { return t.stream("DLQ") }

// DeadLetterSubject is the subject a dead letter of the given kind
// ("max_deliveries", "terminated") is stored under.
func (t Topology) DeadLetterSubject(kind string) string { return t.prefix() + ".dlq." + kind }

// AdvisoryStream captures JetStream's advisories about work that reached
// MaxDeliver or was terminated, so the node can move it to the dead letters
// even when nobody listened at the moment.
func (t Topology) AdvisoryStream() string { return t.stream("ADVISORIES") }

// StreamOptions size the streams; the zero value gives the defaults.
type StreamOptions struct {
	// Replicas is the number of copies of each stream (1 for a single
	// server, 3 for a JetStream cluster).
	Replicas int
	// Duplicates is the window in which a message id is published at most
	// once (default 2 h, longer than any outbox or reconciler retry).
	Duplicates time.Duration
	// EventsMaxAge bounds how long analysis events are kept (default 30 days).
	EventsMaxAge time.Duration
}

// EnsureStreams creates or updates the streams otonode needs. It is safe to
// call at every start and from several nodes.
func (t Topology) EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Duplicates <= 0 {
		o.Duplicates = 2 * time.Hour
	}
	if o.EventsMaxAge <= 0 {
		o.EventsMaxAge = 30 * 24 * time.Hour
	}
	cfgs := []jetstream.StreamConfig{
		{
			Name:        t.WorkStream(),
			Description: "series revisions waiting for analysis (work queue)",
			Subjects:    []string{t.WorkSubject()},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Duplicates:  o.Duplicates,
			Replicas:    o.Replicas,
		},
		{
			Name:        t.EventsStream(),
			Description: "series-complete and analysis done/flagged/failed events",
			Subjects:    []string{t.prefix() + ".events.>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      o.EventsMaxAge,
			Duplicates:  o.Duplicates,
			Replicas:    o.Replicas,
		},
		{
			Name:        t.DeadLetterStream(),
			Description: "work that could not be done, with the reason",
			Subjects:    []string{t.prefix() + ".dlq.>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
		},
		{
			Name:        t.AdvisoryStream(),
			Description: "JetStream advisories about work that hit MaxDeliver or was terminated",
			Subjects: []string{
				"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + t.WorkStream() + ".>",
				"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED." + t.WorkStream() + ".>",
			},
			Retention: jetstream.WorkQueuePolicy,
			Storage:   jetstream.FileStorage,
			Replicas:  o.Replicas,
		},
	}
	for _, cfg := range cfgs {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("events: stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// SeriesComplete is the message of a completed series revision: the job of
// the work queue and the notice of the events stream.
type SeriesComplete struct {
	StudyInstanceUID  string    `json:"study_instance_uid"`
	SeriesInstanceUID string    `json:"series_instance_uid"`
	Revision          int       `json:"revision"`
	Instances         int       `json:"instances"`
	Reason            string    `json:"reason"` // why the series counts as complete
	CompletedAt       time.Time `json:"completed_at"`
	// Source says where a worker fetches the instances: a local data
	// directory when it runs beside the node, and the node's DICOM address
	// for C-GET when it runs elsewhere.
	Source Source `json:"source"`
}

// Source is where the instances of a series can be fetched.
type Source struct {
	DataDir string `json:"data_dir,omitempty"`
	AETitle string `json:"ae_title"`
	Host    string `json:"host"`
	Port    int    `json:"port"`
}

// MsgID is the JetStream message id of a series revision, so that a message
// published twice (after a crash, or by the reconciler) is stored once.
func MsgID(seriesUID string, revision int) string {
	return fmt.Sprintf("%s/%d", seriesUID, revision)
}

// ErrClosed is returned by a publisher after Close.
var ErrClosed = errors.New("events: publisher closed")
