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

// Command issuer is Keyward's token service: it serves every TokenPolicy with
// spec.issuance at the path of its issuer URL (token, revocation, introspection, mint,
// JWKS, discovery), signs with the policies' managed keys and keeps refresh-token
// families in an embedded store (one replica) or PostgreSQL (several). See docs/issuer.md.
//
//	issuer --store bolt:/var/lib/keyward/issuer.db --replay-key-file /etc/keyward/replay-key
//	issuer replay-key > replay-key   # a fresh replay key
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/issuer"
	"github.com/keyward-dev/keyward/internal/issuer/store"
	"github.com/keyward-dev/keyward/internal/issuer/store/boltstore"
	"github.com/keyward-dev/keyward/internal/issuer/store/pgstore"
)

// version is stamped at build time (-ldflags "-X main.version=…").
var version = "dev"

type options struct {
	listen, metricsListen    string
	tlsCert, tlsKey          string
	storeSpec                string
	replayKeyFile            string
	auditFile                string
	audience                 string
	namespaces               string
	dpopNonce                bool
	dpopNonceLifetime        time.Duration
	gcInterval, gcRetain     time.Duration
	qps                      float64
	burst, workers, revokers int
	shutdownGrace            time.Duration
}

func (o *options) bind(fs *flag.FlagSet) {
	fs.StringVar(&o.listen, "listen", ":8080", "Address of the token service (every policy at the path of its issuer URL).")
	fs.StringVar(&o.metricsListen, "metrics-listen", ":9090", "Address of /metrics, /healthz and /readyz (\"0\" disables it).")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "Serve HTTPS with this certificate (PEM); plain HTTP behind a TLS-terminating proxy otherwise.")
	fs.StringVar(&o.tlsKey, "tls-key", "", "Private key of --tls-cert (PEM).")
	fs.StringVar(&o.storeSpec, "store", "bolt:/var/lib/keyward/issuer.db", "Session store: bolt:<file> (embedded, one replica) or postgres://… (several replicas).")
	fs.StringVar(&o.replayKeyFile, "replay-key-file", "", "File of AES-256 keys (one a line, hex or base64; the first seals) that seal the responses kept for the refresh replay window. Required; every replica needs the same file. \"issuer replay-key\" makes one.")
	fs.StringVar(&o.auditFile, "audit-file", "-", "Where audit records go as JSON lines: a file (appended, mode 0600) or - for stdout.")
	fs.StringVar(&o.audience, "audience", issuer.DefaultAudience, "Audience the ServiceAccount tokens of mint and introspection callers (and of exchanges, unless the policy sets one) must be issued for.")
	fs.StringVar(&o.namespaces, "namespaces", "", "Comma-separated namespaces to serve TokenPolicies from (default: all).")
	fs.BoolVar(&o.dpopNonce, "dpop-nonce", true, "Require DPoP server nonces (RFC 9449 §8) in proofs at the token endpoint.")
	fs.DurationVar(&o.dpopNonceLifetime, "dpop-nonce-lifetime", issuer.DefaultDPoPNonceLifetime, "How long a DPoP server nonce is current (the previous one is accepted too).")
	fs.DurationVar(&o.gcInterval, "gc-interval", 10*time.Minute, "How often ended sessions and old replay records are deleted from the store.")
	fs.DurationVar(&o.gcRetain, "gc-retain", 25*time.Hour, "How long an ended session is kept, so a reuse of its tokens is still recognised and the revocation sweep still finds it; at least "+issuer.MaxRevocationWindow.String()+".")
	fs.Float64Var(&o.qps, "kube-api-qps", 50, "Queries per second to the API server.")
	fs.IntVar(&o.burst, "kube-api-burst", 100, "Burst of queries to the API server.")
	fs.IntVar(&o.workers, "workers", 2, "Concurrent policy reconciles.")
	fs.IntVar(&o.revokers, "revocation-workers", 2, "Concurrent RevocationEntry creations.")
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", 10*time.Second, "How long requests in flight may finish at shutdown.")
}

func (o *options) validate() error {
	switch {
	case o.replayKeyFile == "":
		return errors.New("--replay-key-file is required (make one with `issuer replay-key`)")
	case (o.tlsCert == "") != (o.tlsKey == ""):
		return errors.New("--tls-cert and --tls-key go together")
	case o.gcInterval <= 0:
		return errors.New("--gc-interval must be positive")
	case o.gcRetain < issuer.MaxRevocationWindow:
		return fmt.Errorf("--gc-retain must be at least %s (the longest access-token lifetime, leeway and margin): "+
			"the revocation sweep must still find a revoked session while its access tokens may be valid", issuer.MaxRevocationWindow)
	case o.dpopNonceLifetime < time.Second:
		return errors.New("--dpop-nonce-lifetime must be at least 1s")
	}
	_, err := parseStore(o.storeSpec)
	return err
}

// storeSpec is a parsed --store value.
type storeSpec struct {
	kind string // bolt, postgres
	arg  string // the file, or the DSN
}

// parseStore accepts bolt:<absolute or relative file> and postgres:// / postgresql:// URLs.
func parseStore(s string) (storeSpec, error) {
	switch {
	case strings.HasPrefix(s, "bolt:"):
		path := strings.TrimPrefix(s, "bolt:")
		if path == "" || strings.HasSuffix(path, "/") {
			return storeSpec{}, errors.New("--store bolt:<file> needs a file name")
		}
		return storeSpec{kind: "bolt", arg: path}, nil
	case strings.HasPrefix(s, "postgres://"), strings.HasPrefix(s, "postgresql://"):
		return storeSpec{kind: "postgres", arg: s}, nil
	}
	return storeSpec{}, errors.New("--store must be bolt:<file> or a postgres:// URL")
}

func openStore(ctx context.Context, s storeSpec) (store.Store, error) {
	if s.kind == "bolt" {
		return boltstore.Open(s.arg)
	}
	return pgstore.Open(ctx, s.arg)
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "replay-key" {
		fmt.Println(issuer.NewReplayKey())
		return
	}
	var o options
	o.bind(flag.CommandLine)
	zopts := zap.Options{}
	zopts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zopts)))
	log := ctrl.Log.WithName("issuer")
	if err := o.validate(); err != nil {
		log.Error(err, "Invalid flags")
		os.Exit(2)
	}
	if err := run(ctrl.SetupSignalHandler(), o, log); err != nil {
		log.Error(err, "Token service stopped with an error")
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, log logr.Logger) error {
	keyData, err := os.ReadFile(o.replayKeyFile)
	if err != nil {
		return fmt.Errorf("reading --replay-key-file: %w", err)
	}
	sealer, err := issuer.ParseReplayKeys(keyData)
	if err != nil {
		return err
	}
	spec, _ := parseStore(o.storeSpec)
	st, err := openStore(ctx, spec)
	if err != nil {
		return err // the store packages never quote a password
	}
	defer func() { _ = st.Close() }()
	auditW, closeAudit, err := openAudit(o.auditFile)
	if err != nil {
		return err
	}
	defer closeAudit()

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	cfg := ctrl.GetConfigOrDie()
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	var namespaces []string
	if o.namespaces != "" {
		namespaces = strings.Split(o.namespaces, ",")
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"}, // the issuer's own registry is served below
		HealthProbeBindAddress: "0",
		LeaderElection:         false, // every replica serves
		Cache:                  issuer.CacheOptions(namespaces),
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	realClock := clock.RealClock{}
	metrics := issuer.NewMetrics()
	srv, err := issuer.New(issuer.Config{
		Store:             st,
		Sealer:            sealer,
		Reviewer:          &issuer.TokenReviewer{Client: kubernetes.NewForConfigOrDie(cfg)},
		Client:            mgr.GetClient(),
		Recorder:          mgr.GetEventRecorder("keyward-issuer"),
		Clock:             realClock,
		Metrics:           metrics,
		Audit:             issuer.NewAuditor(auditW, func(error) { metrics.AuditFailures.Inc() }),
		Log:               log,
		Audience:          o.audience,
		DPoPNonce:         o.dpopNonce,
		DPoPNonceLifetime: o.dpopNonceLifetime,
		RevocationWorkers: o.revokers,
	})
	if err != nil {
		return err
	}
	if err := (&issuer.PolicyReconciler{Client: mgr.GetClient(), Server: srv, Clock: realClock}).
		SetupWithManager(mgr, controller.Options{MaxConcurrentReconciles: o.workers}); err != nil {
		return fmt.Errorf("setting up the policy watch: %w", err)
	}
	var ready atomic.Bool
	for _, r := range []manager.Runnable{
		srv,
		&issuer.GC{Store: st, Clock: realClock, Interval: o.gcInterval, Retain: o.gcRetain, Sweeper: srv, Metrics: metrics, Log: log.WithName("gc")},
		manager.RunnableFunc(func(ctx context.Context) error {
			if mgr.GetCache().WaitForCacheSync(ctx) {
				ready.Store(true)
			}
			return nil
		}),
		serveRunnable(httpServer(o.listen, srv), o, log, "token service"),
	} {
		if err := mgr.Add(r); err != nil {
			return err
		}
	}
	if o.metricsListen != "0" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{Registry: metrics.Registry}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
			if !ready.Load() {
				http.Error(w, "policies not loaded yet", http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, "ok")
		})
		plain := o
		plain.tlsCert, plain.tlsKey = "", ""
		if err := mgr.Add(serveRunnable(httpServer(o.metricsListen, mux), plain, log, "metrics")); err != nil {
			return err
		}
	}
	log.Info("Started token service", "version", version, "listen", o.listen, "metricsListen", o.metricsListen,
		"store", spec.kind, "audience", o.audience, "dpopNonce", o.dpopNonce, "startedAt", time.Now().UTC())
	return mgr.Start(ctx)
}

func httpServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// serveRunnable serves until the manager stops, then drains for the grace period.
func serveRunnable(hs *http.Server, o options, log logr.Logger, what string) manager.Runnable {
	return manager.RunnableFunc(func(ctx context.Context) error {
		ln, err := net.Listen("tcp", hs.Addr)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		errc := make(chan error, 1)
		go func() {
			if o.tlsCert != "" {
				errc <- hs.ServeTLS(ln, o.tlsCert, o.tlsKey)
			} else {
				errc <- hs.Serve(ln)
			}
		}()
		log.Info("Listening", "server", what, "address", ln.Addr().String(), "tls", o.tlsCert != "")
		select {
		case err := <-errc:
			return fmt.Errorf("%s: %w", what, err)
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), o.shutdownGrace)
		defer cancel()
		return hs.Shutdown(sctx)
	})
}

// openAudit opens the audit destination: stdout for "-" or "", else a file appended to.
func openAudit(path string) (io.Writer, func(), error) {
	if path == "" || path == "-" {
		return os.Stdout, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("opening --audit-file: %w", err)
	}
	return f, func() { _ = f.Close() }, nil
}
