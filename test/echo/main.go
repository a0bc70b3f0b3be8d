// Command echo is the sample app of the local cluster and the end-to-end tests: an HTTP server
// that answers every request with its method, path and headers as JSON, so a test sees what
// the verifier sidecar forwarded (X-Keyward-Subject and friends). /healthz answers "ok".
// It exits cleanly on SIGTERM and SIGINT, which matters because it runs as PID 1.
//
// With --get it is a one-shot client instead (the image has no shell or curl): it prints the
// status and body of one GET and exits non-zero unless the status is 2xx, which lets a test
// call a Service from inside another pod with `kubectl exec`.
//
//	echo [--listen :8080] [--name NAME]
//	echo --get URL [--header 'K: V']... [--bearer-file FILE] [--cacert FILE]
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// reply is what every request other than /healthz gets back.
type reply struct {
	Name    string              `json:"name,omitempty"`
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Query   string              `json:"query,omitempty"`
	Host    string              `json:"host"`
	Remote  string              `json:"remote"`
	Headers map[string][]string `json:"headers"`
}

func handler(name string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(reply{
			Name:    name,
			Method:  r.Method,
			Path:    r.URL.Path,
			Query:   r.URL.RawQuery,
			Host:    r.Host,
			Remote:  r.RemoteAddr,
			Headers: r.Header,
		})
	})
	return mux
}

type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ", ") }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }

// get performs one GET and prints the status line and body; the exit code tells 2xx apart.
func get(url string, headers []string, bearerFile, caFile string) int {
	req, err := http.NewRequest(http.MethodGet, url, http.NoBody)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			fmt.Fprintf(os.Stderr, "header %q: want 'K: V'\n", h)
			return 2
		}
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if bearerFile != "" {
		tok, err := os.ReadFile(bearerFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fmt.Fprintf(os.Stderr, "%s: no certificates\n", caFile)
			return 2
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
	_, _ = io.Copy(os.Stdout, resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return 1
	}
	return 0
}

func main() {
	listen := flag.String("listen", ":8080", "address to serve HTTP on")
	name := flag.String("name", os.Getenv("ECHO_NAME"), "name reported in every reply (default $ECHO_NAME)")
	getURL := flag.String("get", "", "client mode: GET this URL, print status and body, exit")
	var headers headerList
	flag.Var(&headers, "header", "client mode: request header 'K: V' (repeatable)")
	bearerFile := flag.String("bearer-file", "", "client mode: send the token in FILE as a bearer token")
	caFile := flag.String("cacert", "", "client mode: trust the CA certificates in FILE")
	flag.Parse()
	if *getURL != "" {
		os.Exit(get(*getURL, headers, *bearerFile, *caFile))
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	srv := &http.Server{Addr: *listen, Handler: handler(*name), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("echo listening on %s", *listen)

	select {
	case err := <-errc:
		stop()
		log.Printf("echo: %v", err)
		os.Exit(1) //nolint:gocritic // stop() already ran; nothing else is deferred yet
	case <-ctx.Done():
	}
	log.Print("echo: shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Printf("echo: shutdown: %v", err)
	}
}
