package sidecar

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ServerConfig configures the proxy and admin listeners.
type ServerConfig struct {
	// Listen is the proxy's address; Admin is the address of /healthz, /readyz, /metrics.
	Listen, Admin string
	// Timeouts of the proxy server (0: none, except ReadHeaderTimeout).
	ReadTimeout, ReadHeaderTimeout, WriteTimeout, IdleTimeout time.Duration
	// ShutdownGrace bounds how long in-flight requests may finish after the stop signal.
	ShutdownGrace time.Duration
	// TLS, when set, makes the proxy listener TLS (HTTP/2 through ALPN); without it the
	// listener is plaintext HTTP/1.1 and h2c (HTTP/2 with prior knowledge).
	TLS *tls.Config
}

// TLSConfig loads the server certificate and, when clientCAFile is set, requires client
// certificates that chain to one of its CAs.
func TLSConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the TLS certificate: %w", err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
	}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the client CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("the client CA file holds no PEM certificate")
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// NewProxyServer returns the http.Server of the proxy listener.
func NewProxyServer(cfg ServerConfig, h http.Handler) *http.Server {
	srv := &http.Server{
		Addr:              cfg.Listen,
		Handler:           h,
		ReadTimeout:       cfg.ReadTimeout,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
	var p http.Protocols
	p.SetHTTP1(true)
	if cfg.TLS != nil {
		srv.TLSConfig = cfg.TLS.Clone()
		p.SetHTTP2(true)
	} else {
		p.SetUnencryptedHTTP2(true)
	}
	srv.Protocols = &p
	return srv
}

// NewAdminServer returns the http.Server of the admin listener.
func NewAdminServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second}
}

// AdminHandler serves /healthz (the process runs), /readyz (a bundle is in force and the
// server is not draining) and /metrics.
func AdminHandler(store *Store, m *Metrics, draining *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case draining != nil && draining.Load():
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
		case !store.Ready():
			http.Error(w, "no valid bundle", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ok\n"))
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	return mux
}

// Serve runs the proxy and admin servers until ctx is done, then marks the verifier not
// ready, stops accepting connections and lets in-flight requests finish within
// cfg.ShutdownGrace. The listeners are passed in so callers (and tests) choose them.
func Serve(ctx context.Context, cfg ServerConfig, proxy, admin *http.Server, proxyLn, adminLn net.Listener,
	draining *atomic.Bool, m *Metrics, log logr.Logger) error {
	errc := make(chan error, 2)
	// Read before serving: net/http fills TLSConfig in on the first Serve (HTTP/2 setup).
	useTLS := proxy.TLSConfig != nil
	go func() {
		var err error
		if useTLS {
			err = proxy.ServeTLS(proxyLn, "", "")
		} else {
			err = proxy.Serve(proxyLn)
		}
		errc <- err
	}()
	go func() { errc <- admin.Serve(adminLn) }()
	log.Info("Serving", "proxy", proxyLn.Addr().String(), "admin", adminLn.Addr().String(), "tls", useTLS)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			runErr = err
		}
	}
	if draining != nil {
		draining.Store(true)
	}
	m.Ready.Set(0)
	log.Info("Shutting down", "grace", cfg.ShutdownGrace.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if err := proxy.Shutdown(sctx); err != nil {
		log.Error(err, "Proxy did not drain within the grace period")
		_ = proxy.Close()
	}
	_ = admin.Shutdown(sctx)
	return runErr
}
