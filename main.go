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

// Command manager runs the Keyward controllers: SigningKey, TokenPolicy and
// RevocationEntry, with leader election, health probes and Prometheus metrics.
package main

import (
	"flag"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/controllers"
)

var scheme = runtime.NewScheme()

// version is stamped at build time (-ldflags "-X main.version=…"); injected pods carry it.
var version = "dev"

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
}

func main() {
	var (
		metricsAddr, probeAddr, leaderNamespace string
		leaderElect                             bool
		qps                                     float64
		burst, workers, revocationWorkers       int
		wh                                      webhookFlags
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint (0 disables it).")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	flag.BoolVar(&leaderElect, "leader-elect", true, "Elect a leader so that only one replica reconciles.")
	flag.StringVar(&leaderNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease (default: the pod's).")
	flag.Float64Var(&qps, "kube-api-qps", 500, "Queries per second to the API server.")
	flag.IntVar(&burst, "kube-api-burst", 1000, "Burst of queries to the API server.")
	flag.IntVar(&workers, "workers", 4, "Concurrent reconciles of the SigningKey and TokenPolicy controllers.")
	flag.IntVar(&revocationWorkers, "revocation-workers", 16, "Concurrent reconciles of the RevocationEntry controller (light, and the most numerous).")
	wh.bind(flag.CommandLine)
	opts := zap.Options{Development: false}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	injectCfg, err := wh.injectConfig(version)
	if err != nil {
		log.Error(err, "Invalid sidecar flags")
		os.Exit(2)
	}
	cfg := ctrl.GetConfigOrDie()
	cfg.QPS, cfg.Burst = float32(qps), burst
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:        probeAddr,
		WebhookServer:                 webhook.NewServer(webhook.Options{Port: wh.port, CertDir: wh.certDir}),
		LeaderElection:                leaderElect,
		LeaderElectionID:              "keyward-manager.auth.keyward.dev",
		LeaderElectionNamespace:       leaderNamespace,
		LeaderElectionReleaseOnCancel: true,
		Cache:                         controllers.CacheOptions(),
	})
	if err != nil {
		log.Error(err, "Failed to create the manager")
		os.Exit(1)
	}
	ctx := ctrl.SetupSignalHandler()
	realClock := clock.RealClock{}
	copts := controller.Options{MaxConcurrentReconciles: workers, RecoverPanic: ptr(true)}
	ropts := copts
	ropts.MaxConcurrentReconciles = revocationWorkers
	if err := controllers.SetupAll(ctx, mgr, realClock, copts, ropts); err != nil {
		log.Error(err, "Failed to set up the controllers")
		os.Exit(1)
	}
	ready := healthz.Ping
	if wh.enabled {
		if ready, err = setupWebhook(ctx, mgr, wh, injectCfg, realClock); err != nil {
			log.Error(err, "Failed to set up the pod-injection webhook")
			os.Exit(1)
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "Failed to add the health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", ready); err != nil {
		log.Error(err, "Failed to add the ready check")
		os.Exit(1)
	}
	log.Info("Started manager", "version", version, "leaderElection", leaderElect, "workers", workers,
		"webhook", wh.enabled, "startedAt", time.Now().UTC())
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "Manager stopped with an error")
		os.Exit(1)
	}
}

func ptr[T any](v T) *T { return &v }
