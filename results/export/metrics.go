package export

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the exporter, by destination.
type Metrics struct {
	// Exported counts outcomes of attempts: sent, failed (will retry),
	// dead (attempts exhausted or the object is gone), and rows suppressed
	// unsent because a newer analysis superseded them.
	Exported *prometheus.CounterVec
	// Associations counts association attempts: ok or failed.
	Associations *prometheus.CounterVec
	Queue        *prometheus.GaugeVec // pending rows
	Dead         *prometheus.GaugeVec // dead rows, waiting for `otonode exports retry`
}

// NewMetrics makes the metrics and registers them on reg unless it is nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Exported: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "otonode_exports_total",
			Help: "Export attempts by destination and result (sent, failed, dead, suppressed)."}, []string{"destination", "result"}),
		Associations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "otonode_export_associations_total",
			Help: "Associations the exporter requested, by destination and result (ok, failed)."}, []string{"destination", "result"}),
		Queue: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "otonode_export_queue_depth",
			Help: "Objects waiting to be exported, by destination."}, []string{"destination"}),
		Dead: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "otonode_export_dead",
			Help: "Objects whose export attempts ran out, by destination."}, []string{"destination"}),
	}
	if reg != nil {
		reg.MustRegister(m.Exported, m.Associations, m.Queue, m.Dead)
	}
	return m
}
