/*
Copyright 2026 The Keyward Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package issuer

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the token service's metrics, on a registry of their own.
type Metrics struct {
	Registry *prometheus.Registry

	Issued          *prometheus.CounterVec
	Refreshed       *prometheus.CounterVec
	Rejected        *prometheus.CounterVec
	Reuse           *prometheus.CounterVec
	Bursts          *prometheus.CounterVec
	Revocations     *prometheus.CounterVec
	RevocationQueue prometheus.Gauge
	RevocationFails prometheus.Counter
	Duration        *prometheus.HistogramVec
	Policies        prometheus.Gauge
	AuditFailures   prometheus.Counter
	GCDeleted       prometheus.Counter
	SweepRestored   prometheus.Counter
	SweepFailures   prometheus.Counter
}

// NewMetrics creates the metrics on a new registry, with the Go and process collectors.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		Issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_issuer_tokens_issued_total",
			Help: "Access tokens issued, by policy and grant (mint, token_exchange, refresh_token).",
		}, []string{"policy", "grant"}),
		Refreshed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_issuer_refreshes_total",
			Help: "Refresh-token grants answered with tokens, by policy and outcome (rotated; replayed: a double-submit within the replay window got the same pair).",
		}, []string{"policy", "outcome"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_issuer_requests_rejected_total",
			Help: "Requests refused, by policy, endpoint, OAuth error and reason.",
		}, []string{"policy", "endpoint", "error", "reason"}),
		Reuse: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_issuer_refresh_reuse_total",
			Help: "Spent refresh tokens presented again after the replay window; each revoked its family.",
		}, []string{"policy"}),
		Bursts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_issuer_refresh_bursts_total",
			Help: "Refresh bursts above the policy's maxRefreshesPerMinute, by policy and scope (subject, family).",
		}, []string{"policy", "scope"}),
		Revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_issuer_revocations_total",
			Help: "Revocations by the token service, by policy and cause (reuse, client, logout, burst, revocation_entry).",
		}, []string{"policy", "cause"}),
		RevocationQueue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyward_issuer_revocation_entries_pending",
			Help: "RevocationEntries waiting to be created in the API server.",
		}),
		RevocationFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyward_issuer_revocation_entry_failures_total",
			Help: "Failed attempts to create a RevocationEntry (retried with backoff).",
		}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keyward_issuer_request_duration_seconds",
			Help:    "Time to answer a request, by endpoint.",
			Buckets: []float64{1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5},
		}, []string{"endpoint"}),
		Policies: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyward_issuer_policies",
			Help: "TokenPolicies served.",
		}),
		AuditFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyward_issuer_audit_write_failures_total",
			Help: "Audit records that could not be written.",
		}),
		GCDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyward_issuer_store_gc_deleted_families_total",
			Help: "Expired or revoked refresh-token families deleted from the store.",
		}),
		SweepRestored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyward_issuer_revocation_sweep_restored_total",
			Help: "Session RevocationEntries the revocation sweep queued again: sessions revoked in the store whose entry this process had not seen created (after a restart, or revoked by another replica).",
		}),
		SweepFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyward_issuer_revocation_sweep_failures_total",
			Help: "Revocation sweeps that failed (store or API server); the next runs one GC interval later.",
		}),
	}
	reg.MustRegister(m.Issued, m.Refreshed, m.Rejected, m.Reuse, m.Bursts, m.Revocations, m.RevocationQueue,
		m.RevocationFails, m.Duration, m.Policies, m.AuditFailures, m.GCDeleted, m.SweepRestored, m.SweepFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
