package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"

	"github.com/keyward-dev/keyward/internal/binding"
	"github.com/keyward-dev/keyward/internal/sidecar"
)

// wallClock is the only place the verifier reads the wall clock; everything below takes
// it injected.
var wallClock = clock.RealClock{}

const namespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

type serveFlags struct {
	listen, admin, upstream                      string
	readTimeout, readHeaderTimeout, writeTimeout time.Duration
	idleTimeout, shutdownGrace, resync           time.Duration
	bundleDir, configMap, namespace, kubeconfig  string
	cacheSize                                    int
	upstreamH2C                                  bool
	publicURL                                    string
	dpopRequireNonce                             bool
	tlsCert, tlsKey, clientCA                    string
	auditAccepted                                bool
	auditFile                                    string
	logLevel                                     string
	dpopMaxAge, dpopLeeway                       time.Duration
	dpopReplayCacheSize                          int
}

func serveFlagSet(f *serveFlags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("verifier serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.listen, "listen", ":8443", "Address of the verifying proxy.")
	fs.StringVar(&f.admin, "admin-listen", ":9090", "Address of /healthz, /readyz and /metrics.")
	fs.StringVar(&f.upstream, "upstream", "", "URL of the application, e.g. http://127.0.0.1:8080 (required).")
	fs.BoolVar(&f.upstreamH2C, "upstream-h2c", false, "Speak HTTP/2 without TLS to a plaintext upstream (e.g. gRPC); https upstreams negotiate HTTP/2 by ALPN.")
	fs.DurationVar(&f.readTimeout, "read-timeout", 0, "Maximum time to read a whole request, body included (0: none).")
	fs.DurationVar(&f.readHeaderTimeout, "read-header-timeout", 10*time.Second, "Maximum time to read request headers.")
	fs.DurationVar(&f.writeTimeout, "write-timeout", 0, "Maximum time to write a response (0: none; it also cuts streams and WebSockets).")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 120*time.Second, "Keep-alive idle timeout.")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", 20*time.Second, "Time in-flight requests get to finish after SIGTERM/SIGINT.")
	fs.StringVar(&f.bundleDir, "bundle-dir", "", "Directory of the mounted bundle ConfigMap (file mode).")
	fs.DurationVar(&f.resync, "resync-interval", sidecar.DefaultResyncInterval, "File mode: re-read the bundle this often besides file-system events.")
	fs.StringVar(&f.configMap, "bundle-configmap", "", "Name of the bundle ConfigMap to watch through the API server (watch mode).")
	fs.StringVar(&f.namespace, "namespace", "", "Namespace of the bundle ConfigMap (default: the pod's namespace).")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "Kubeconfig for watch mode (default: in-cluster configuration).")
	fs.IntVar(&f.cacheSize, "cache-size", sidecar.DefaultCacheSize, "Verified-token cache entries per bundle (0 disables the cache).")
	fs.StringVar(&f.publicURL, "public-url", "", "Scheme, host and optional path prefix clients use; the DPoP htu is built from it (default: from the request).")
	fs.BoolVar(&f.dpopRequireNonce, "dpop-require-nonce", false, "Require a server-provided nonce in DPoP proofs (RFC 9449 §8).")
	fs.DurationVar(&f.dpopMaxAge, "dpop-max-age", binding.DefaultMaxAge, "Maximum age of a DPoP proof.")
	fs.DurationVar(&f.dpopLeeway, "dpop-leeway", binding.DefaultLeeway, "Clock skew tolerated on DPoP proof iat.")
	fs.IntVar(&f.dpopReplayCacheSize, "dpop-replay-cache-size", binding.DefaultReplayCacheSize, "DPoP proof jti replay cache entries.")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "Server certificate (PEM); with --tls-key the proxy serves TLS.")
	fs.StringVar(&f.tlsKey, "tls-key", "", "Server private key (PEM).")
	fs.StringVar(&f.clientCA, "client-ca", "", "CA bundle (PEM) client certificates must chain to; makes client certificates required (mTLS).")
	fs.BoolVar(&f.auditAccepted, "audit-accepted", false, "Write an audit record for accepted requests too (rejections are always audited).")
	fs.StringVar(&f.auditFile, "audit-file", "-", "Where audit records go, one JSON object a line (- for stdout).")
	fs.StringVar(&f.logLevel, "log-level", "info", "Log level: info or debug.")
	return fs
}

func runServe(args []string, stdout, stderr io.Writer) int {
	var f serveFlags
	fs := serveFlagSet(&f, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %v\n", fs.Args())
		return 2
	}
	level := slog.LevelInfo
	if f.logLevel == "debug" {
		level = slog.LevelDebug
	}
	log := logr.FromSlogHandler(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, &f, stdout, log); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(stderr, "verifier serve:", err)
			return 2
		}
		log.Error(err, "Verifier stopped")
		return 1
	}
	return 0
}

type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func serve(ctx context.Context, f *serveFlags, stdout io.Writer, log logr.Logger) error {
	if f.upstream == "" {
		return usagef("--upstream is required")
	}
	upstream, err := url.Parse(f.upstream)
	if err != nil || (upstream.Scheme != "http" && upstream.Scheme != "https") || upstream.Host == "" {
		return usagef("--upstream %q is not an http(s) URL", f.upstream)
	}
	if (f.bundleDir == "") == (f.configMap == "") {
		return usagef("exactly one of --bundle-dir and --bundle-configmap is required")
	}
	var publicURL *url.URL
	if f.publicURL != "" {
		publicURL, err = url.Parse(f.publicURL)
		if err != nil || publicURL.Scheme == "" || publicURL.Host == "" || publicURL.RawQuery != "" {
			return usagef("--public-url %q must be an absolute URL without a query", f.publicURL)
		}
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	if f.clientCA != "" && f.tlsCert == "" {
		return usagef("--client-ca needs --tls-cert and --tls-key")
	}
	if f.cacheSize < 0 {
		return usagef("--cache-size must not be negative")
	}
	cfg := sidecar.ServerConfig{
		Listen: f.listen, Admin: f.admin,
		ReadTimeout: f.readTimeout, ReadHeaderTimeout: f.readHeaderTimeout,
		WriteTimeout: f.writeTimeout, IdleTimeout: f.idleTimeout, ShutdownGrace: f.shutdownGrace,
	}
	if f.tlsCert != "" {
		if cfg.TLS, err = sidecar.TLSConfig(f.tlsCert, f.tlsKey, f.clientCA); err != nil {
			return err
		}
	}
	audit := stdout
	if f.auditFile != "-" {
		af, err := os.OpenFile(f.auditFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("opening the audit file: %w", err)
		}
		defer af.Close()
		audit = af
	}

	metrics := sidecar.NewMetrics()
	store := sidecar.NewStore(wallClock, f.cacheSize, metrics, log.WithName("bundle"))
	handler := sidecar.NewHandler(store, sidecar.HandlerConfig{
		Upstream:  upstream,
		Transport: sidecar.UpstreamTransport(f.upstreamH2C),
		Auth: &sidecar.Authenticator{
			DPoP: binding.NewDPoPChecker(binding.DPoPOptions{
				Algorithms:      sidecar.DefaultDPoPAlgorithms,
				RequireNonce:    f.dpopRequireNonce,
				MaxAge:          f.dpopMaxAge,
				Leeway:          f.dpopLeeway,
				ReplayCacheSize: f.dpopReplayCacheSize,
			}, wallClock),
			PublicURL: publicURL,
		},
		Clock:   wallClock,
		Metrics: metrics,
		Auditor: sidecar.NewAuditor(audit, f.auditAccepted),
		Log:     log.WithName("proxy"),
	})

	var run func(context.Context) error
	if f.bundleDir != "" {
		src := &sidecar.DirSource{Dir: f.bundleDir, Interval: f.resync, Store: store, Clock: wallClock, Log: log.WithName("dir")}
		run = src.Run
	} else {
		ns := f.namespace
		if ns == "" {
			b, err := os.ReadFile(namespaceFile)
			if err != nil {
				return usagef("--namespace is required outside a pod (%v)", err)
			}
			ns = strings.TrimSpace(string(b))
		}
		rc, err := restConfig(f.kubeconfig)
		if err != nil {
			return err
		}
		client, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return fmt.Errorf("building the Kubernetes client: %w", err)
		}
		src := &sidecar.ConfigMapSource{Client: client, Namespace: ns, Name: f.configMap, Store: store, Log: log.WithName("configmap")}
		run = src.Run
	}

	proxyLn, err := net.Listen("tcp", f.listen)
	if err != nil {
		return err
	}
	adminLn, err := net.Listen("tcp", f.admin)
	if err != nil {
		proxyLn.Close()
		return err
	}
	var draining atomic.Bool
	srcCtx, cancelSrc := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := run(srcCtx); err != nil {
			log.Error(err, "Bundle source stopped")
		}
	})
	err = sidecar.Serve(ctx, cfg, sidecar.NewProxyServer(cfg, handler),
		sidecar.NewAdminServer(sidecar.AdminHandler(store, metrics, &draining)), proxyLn, adminLn, &draining, metrics, log)
	cancelSrc()
	wg.Wait()
	return err
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("in-cluster configuration (use --kubeconfig outside a pod): %w", err)
	}
	return rc, nil
}
