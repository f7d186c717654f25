package scp

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the node's Prometheus series.
type Metrics struct {
	Associations       *prometheus.CounterVec // by result: accepted, rejected
	ActiveAssociations prometheus.Gauge
	Instances          prometheus.Counter // stored (new or new version)
	Duplicates         prometheus.Counter // identical re-sends
	Bytes              prometheus.Counter
	Refusals           *prometheus.CounterVec // by reason
	CompletionLatency  *prometheus.HistogramVec
	Completions        *prometheus.CounterVec // by reason
	Skipped            *prometheus.CounterVec // due revisions never completed, by SkipResult or SkipNonImage
	Selections         *prometheus.CounterVec // by outcome: queued, not-analysed
	QueueDepth         prometheus.Gauge       // revisions queued, not yet claimed
	Republished        prometheus.Counter
}

// NewMetrics registers the node's metrics on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Associations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "otonode_associations_total",
			Help: "A-ASSOCIATE-RQs decided, by result."}, []string{"result"}),
		ActiveAssociations: prometheus.NewGauge(prometheus.GaugeOpts{Name: "otonode_associations_active",
			Help: "Transport connections of the DICOM port now open."}),
		Instances: prometheus.NewCounter(prometheus.CounterOpts{Name: "otonode_instances_stored_total",
			Help: "Instances stored durably and indexed."}),
		Duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "otonode_instances_duplicate_total",
			Help: "Re-sent instances with identical bytes (acknowledged, nothing written)."}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "otonode_instance_bytes_total",
			Help: "Bytes of instance files stored."}),
		Refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "otonode_store_refusals_total",
			Help: "C-STOREs answered with a failure status, by reason."}, []string{"reason"}),
		CompletionLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "otonode_completion_latency_seconds",
			Help:    "Time from a series revision's last instance to its completion, by reason.",
			Buckets: []float64{0.5, 1, 2, 2.5, 3, 5, 10, 30, 60, 120}}, []string{"reason"}),
		Completions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "otonode_series_completed_total",
			Help: "Series revisions completed, by reason."}, []string{"reason"}),
		Skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "otonode_series_skipped_total",
			Help: "Series revisions not completed nor announced because they cannot be analysed, by reason: result (the node's own SEG, SR, KOS) or non-image."},
			[]string{"reason"}),
		Selections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "otonode_series_selected_total",
			Help: "Complete series revisions decided by selection, by outcome."}, []string{"outcome"}),
		QueueDepth: prometheus.NewGauge(prometheus.GaugeOpts{Name: "otonode_queue_depth",
			Help: "Series revisions queued for analysis and not yet claimed by a worker."}),
		Republished: prometheus.NewCounter(prometheus.CounterOpts{Name: "otonode_reconciler_republished_total",
			Help: "Queued revisions re-published because no worker claimed them in time."}),
	}
	if reg != nil {
		reg.MustRegister(m.Associations, m.ActiveAssociations, m.Instances, m.Duplicates, m.Bytes, m.Refusals,
			m.CompletionLatency, m.Completions, m.Skipped, m.Selections, m.QueueDepth, m.Republished)
	}
	return m
}
