package sidecar

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the verifier's Prometheus metrics, registered on an explicit registry.
type Metrics struct {
	Registry *prometheus.Registry

	Requests         *prometheus.CounterVec // outcome, reason
	VerifyDuration   prometheus.Histogram
	BundleGeneration prometheus.Gauge
	BundleInfo       *prometheus.GaugeVec // hash
	BundleReloads    *prometheus.CounterVec
	BundleRefusals   *prometheus.CounterVec // source, reason
	BundleLastReload prometheus.Gauge
	Ready            prometheus.Gauge
	CacheHits        prometheus.Counter
}

// Request outcomes (label "outcome" of keyward_verifier_requests_total).
const (
	OutcomeAccepted  = "accepted"
	OutcomeAnonymous = "anonymous"
	OutcomeRejected  = "rejected"
)

// NewMetrics creates the metrics on a new registry, with the Go and process collectors.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_verifier_requests_total",
			Help: "Requests handled by the verifier, by outcome (accepted, anonymous, rejected) and reason.",
		}, []string{"outcome", "reason"}),
		VerifyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "keyward_verifier_verify_duration_seconds",
			Help:    "Time spent authenticating a request: token extraction, verification, binding and scope checks.",
			Buckets: []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2},
		}),
		CacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyward_verifier_cache_hits_total",
			Help: "Tokens served from the verified-token cache (signature not re-checked; expiry and revocation are).",
		}),
		BundleGeneration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyward_verifier_bundle_generation",
			Help: "Generation of the bundle in force (0 when none).",
		}),
		BundleInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keyward_verifier_bundle_info",
			Help: "1 for the content hash of the bundle in force.",
		}, []string{"hash"}),
		BundleReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_verifier_bundle_reloads_total",
			Help: "Bundles accepted and put in force, by source (dir, configmap).",
		}, []string{"source"}),
		BundleRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_verifier_bundle_refusals_total",
			Help: "Bundles refused (the last good one stays in force), by source and reason.",
		}, []string{"source", "reason"}),
		BundleLastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyward_verifier_bundle_last_reload_timestamp_seconds",
			Help: "Unix time at which the bundle in force was put in force.",
		}),
		Ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyward_verifier_ready",
			Help: "1 when a valid bundle is in force and the verifier serves requests.",
		}),
	}
	reg.MustRegister(m.Requests, m.VerifyDuration, m.CacheHits, m.BundleGeneration, m.BundleInfo, m.BundleReloads,
		m.BundleRefusals, m.BundleLastReload, m.Ready,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
