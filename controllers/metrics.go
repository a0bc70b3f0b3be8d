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

package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Operator metrics, registered on controller-runtime's registry and served on the
// manager's metrics endpoint.
var (
	rotationsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyward_operator_rotations_total",
		Help: "Keys that became active, by reason (Initial, Scheduled, Manual, Emergency, Revoked, ProfileChanged, Bootstrap).",
	}, []string{"namespace", "signingkey", "reason"})
	keysWithdrawnTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyward_operator_keys_withdrawn_total",
		Help: "Keys withdrawn from the JWKS at once (emergency rotation or key revocation).",
	}, []string{"namespace", "signingkey", "reason"})
	activeKeyAge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "keyward_operator_active_key_age_seconds",
		Help: "Seconds since the active key started signing.",
	}, []string{"namespace", "signingkey"})
	nextRotation = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "keyward_operator_next_rotation_seconds",
		Help: "Seconds until the active key hands over to its successor (negative when overdue).",
	}, []string{"namespace", "signingkey"})
	keysPublished = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "keyward_operator_keys",
		Help: "Published keys by state.",
	}, []string{"namespace", "signingkey", "state"})
	revocationsActive = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "keyward_operator_revocations_active",
		Help: "RevocationEntries in force.",
	}, []string{"namespace"})
	revocationsExpired = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyward_operator_revocations_expired_total",
		Help: "RevocationEntries deleted after every token they could match expired.",
	}, []string{"namespace"})
	bundleGeneration = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "keyward_operator_bundle_generation",
		Help: "Generation of the verifier bundle written for a TokenPolicy.",
	}, []string{"namespace", "tokenpolicy"})
	bundleBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "keyward_operator_bundle_bytes",
		Help: "Size of the verifier bundle rendered for a TokenPolicy (alert well before 921600).",
	}, []string{"namespace", "tokenpolicy"})
	reconcileErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyward_operator_reconcile_errors_total",
		Help: "Reconcile passes that ended in an error, by controller and condition reason.",
	}, []string{"controller", "reason"})
)

func init() {
	metrics.Registry.MustRegister(rotationsTotal, keysWithdrawnTotal, activeKeyAge, nextRotation, keysPublished,
		revocationsActive, revocationsExpired, bundleGeneration, bundleBytes, reconcileErrors)
}
