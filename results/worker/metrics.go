package worker

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the worker's Prometheus metrics.
type Metrics struct {
	// Analyses counts finished jobs by outcome: done, flagged, failed,
	// not-analysable, retry (a transient error) and lost (claim taken over).
	Analyses *prometheus.CounterVec
	Duration prometheus.Histogram
	InFlight prometheus.Gauge
}

// NewMetrics makes the metrics and registers them with reg (nil: none).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Analyses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "otonode_worker_analyses_total",
			Help: "Analysis jobs handled, by outcome."}, []string{"status"}),
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "otonode_worker_analysis_duration_seconds",
			Help:    "Time from claim to outcome of one analysis.",
			Buckets: []float64{1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200}}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "otonode_worker_in_flight",
			Help: "Analyses running now."}),
	}
	if reg != nil {
		reg.MustRegister(m.Analyses, m.Duration, m.InFlight)
	}
	return m
}
