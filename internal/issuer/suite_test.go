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
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/controllers"
)

// The envtest suite starts lazily, on the first test that needs the API server, so unit
// tests, fuzz targets and benchmarks run without it. It runs a real kube-apiserver and
// etcd (KUBEBUILDER_ASSETS, default ../../bin/k8s, built by `make test`) and the real
// Keyward controllers, so keys, JWKS and bundles are what the operator makes.
type suite struct {
	cfg      *rest.Config
	k8s      client.Client
	kube     kubernetes.Interface
	clock    *clocktesting.FakeClock
	recorder events.EventRecorder
	// signingKeys reconciles SigningKeys directly, for tests that step the clock across
	// a rotation boundary (the manager's requeues run on real time).
	signingKeys *controllers.SigningKeyReconciler
}

var (
	suiteOnce sync.Once
	theSuite  *suite
	suiteErr  error
	stopSuite func()
	nsCounter atomic.Int64
	scheme    = runtime.NewScheme()
)

func TestMain(m *testing.M) {
	if os.Getenv("KEYWARD_TEST_VERBOSE") != "" {
		logf.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	} else {
		logf.SetLogger(logr.Discard())
	}
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(clientgoscheme.Scheme); err != nil { // Events name their object through it
		panic(err)
	}
	code := m.Run()
	if stopSuite != nil {
		stopSuite()
	}
	os.Exit(code)
}

// envSuite returns the running suite, starting it on first use.
func envSuite(t testing.TB) *suite {
	t.Helper()
	suiteOnce.Do(func() { theSuite, suiteErr = startSuite() })
	if suiteErr != nil {
		t.Fatalf("starting envtest: %v", suiteErr)
	}
	return theSuite
}

func startSuite() (*suite, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		if _, err := os.Stat("../../bin/k8s/kube-apiserver"); err != nil {
			return nil, fmt.Errorf("envtest needs kube-apiserver and etcd: run `make envtest-assets` (builds them into bin/k8s) or set KUBEBUILDER_ASSETS")
		}
		os.Setenv("KUBEBUILDER_ASSETS", "../../bin/k8s")
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 500, 1000
	s := &suite{cfg: cfg, kube: kubernetes.NewForConfigOrDie(cfg), clock: clocktesting.NewFakeClock(time.Now().Truncate(time.Second))}
	if s.k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		_ = env.Stop()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	adapter := events.NewEventBroadcasterAdapterWithContext(ctx, s.kube)
	adapter.StartRecordingToSink(ctx.Done())
	s.recorder = adapter.NewRecorder("keyward-issuer-test")

	// The operator, as main.go wires it, on the suite's fake clock.
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr(true)},
		Cache:                  controllers.CacheOptions(),
	})
	if err != nil {
		cancel()
		_ = env.Stop()
		return nil, err
	}
	copts := controller.Options{MaxConcurrentReconciles: 2}
	s.signingKeys = &controllers.SigningKeyReconciler{Client: s.k8s, APIReader: s.k8s, Clock: s.clock, Recorder: s.recorder}
	if err := controllers.SetupAll(ctx, mgr, s.clock, copts, copts); err != nil {
		cancel()
		_ = env.Stop()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "operator manager:", err)
		}
	}()
	stopSuite = func() {
		cancel()
		<-done
		adapter.Shutdown()
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}
	return s, nil
}
