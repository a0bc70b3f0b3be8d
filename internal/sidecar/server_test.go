package sidecar

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/keyward-dev/keyward/internal/binding"
	"github.com/keyward-dev/keyward/internal/bundle"
)

// testCA issues certificates for the mTLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial atomic.Int64

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: "keyward test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate (server when server is true, else client).
func (ca *testCA) issue(t testing.TB, cn string, server bool) (tls.Certificate, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certPEM, keyPEM
}

// serveProxy runs the handler behind NewProxyServer on 127.0.0.1 and returns its address.
func serveProxy(t testing.TB, h http.Handler, cfg ServerConfig) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewProxyServer(cfg, h)
	go func() {
		if cfg.TLS != nil {
			_ = srv.ServeTLS(ln, "", "")
		} else {
			_ = srv.Serve(ln)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func TestMTLSBoundTokenOverRealTLS(t *testing.T) {
	e := newEnv(t, envOpts{})
	p := testPolicy()
	p.Binding = bundle.Binding{Mode: "MTLS", Required: true}
	e.load(1, p, bundle.Revocations{})

	ca := newTestCA(t)
	dir := t.TempDir()
	_, srvCert, srvKey := ca.issue(t, "verifier", true)
	tlsCfg, err := TLSConfig(writeFile(t, dir, "tls.crt", srvCert), writeFile(t, dir, "tls.key", srvKey), writeFile(t, dir, "ca.crt", ca.pem))
	if err != nil {
		t.Fatal(err)
	}
	addr := serveProxy(t, e.handler, ServerConfig{TLS: tlsCfg, ReadHeaderTimeout: 5 * time.Second})

	alice, _, _ := ca.issue(t, "alice-client", false)
	mallory, _, _ := ca.issue(t, "mallory-client", false)
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	client := func(cert *tls.Certificate) *http.Client {
		tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}
	}
	leaf, _ := x509.ParseCertificate(alice.Certificate[0])
	c := claims()
	c["cnf"] = map[string]any{"x5t#S256": binding.CertThumbprint(leaf)}
	bound := e.key.token(t, c)
	get := func(cl *http.Client, tok string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", "https://"+addr+"/x", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		return cl.Do(req)
	}

	resp, err := get(client(&alice), bound)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("bound token with its certificate: %d %s", resp.StatusCode, body)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("protocol %s: want HTTP/2 over TLS (ALPN)", resp.Proto)
	}
	var s upstreamSeen
	if err := json.Unmarshal(body, &s); err != nil || s.Header.Get("X-Keyward-Subject") != "alice" {
		t.Errorf("upstream saw %+v (%v)", s, err)
	}

	resp, err = get(client(&mallory), bound)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || e.lastAudit().Reason != "mtls" {
		t.Errorf("bound token with another certificate: %d %s", resp.StatusCode, e.lastAudit().Reason)
	}
	if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer realm="keyward", error="invalid_token"` {
		t.Errorf("WWW-Authenticate = %q", got)
	}

	resp, err = get(client(&alice), e.key.token(t, claims()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || e.lastAudit().Reason != "unbound" {
		t.Errorf("unbound token under required mTLS: %d %s", resp.StatusCode, e.lastAudit().Reason)
	}

	if resp, err := get(client(nil), bound); err == nil {
		resp.Body.Close()
		t.Errorf("a client without a certificate got through the TLS handshake: %d", resp.StatusCode)
	}
}

func TestH2CAndStreaming(t *testing.T) {
	e := newEnv(t, envOpts{})
	release := make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "first %s\n", r.Header.Get("X-Keyward-Subject"))
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprintln(w, "second")
	}))
	t.Cleanup(app.Close)
	h := NewHandler(e.store, HandlerConfig{Upstream: mustURL(t, app.URL), Auth: e.auth, Clock: e.clk, Metrics: e.metrics,
		Auditor: NewAuditor(e.audit, false), Log: logr.Discard()})
	e.load(1, testPolicy(), bundle.Revocations{})
	addr := serveProxy(t, h, ServerConfig{})

	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	t.Cleanup(tr.CloseIdleConnections)
	req, _ := http.NewRequest("GET", "http://"+addr+"/stream", nil)
	req.Header.Set("Authorization", "Bearer "+e.key.token(t, claims()))
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("status %d proto %s: want 200 over h2c", resp.StatusCode, resp.Proto)
	}
	// The first chunk arrives while the application still holds the response open.
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first alice\n" {
		t.Fatalf("first chunk = %q, %v", line, err)
	}
	close(release)
	if rest, _ := io.ReadAll(br); string(rest) != "second\n" {
		t.Errorf("rest = %q", rest)
	}
}

func TestWebSocketUpgradePassThrough(t *testing.T) {
	e := newEnv(t, envOpts{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want an upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Seen-Subject: %s\r\n\r\n",
			r.Header.Get("X-Keyward-Subject"))
		_ = brw.Flush()
		// Echo one line.
		line, err := brw.ReadString('\n')
		if err != nil {
			return
		}
		fmt.Fprint(brw, "echo "+line)
		_ = brw.Flush()
	}))
	t.Cleanup(app.Close)
	h := NewHandler(e.store, HandlerConfig{Upstream: mustURL(t, app.URL), Auth: e.auth, Clock: e.clk, Metrics: e.metrics,
		Auditor: NewAuditor(e.audit, false), Log: logr.Discard()})
	e.load(1, testPolicy(), bundle.Revocations{})
	addr := serveProxy(t, h, ServerConfig{})

	dial := func(tok string) (net.Conn, *bufio.Reader, *http.Response) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		if tok != "" {
			req += "Authorization: Bearer " + tok + "\r\n"
		}
		if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return conn, br, resp
	}

	_, _, resp := dial("")
	_ = resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("upgrade without a token: %d", resp.StatusCode)
	}
	conn, br, resp := dial(e.key.token(t, claims()))
	_ = resp.Body.Close() // a 101 has no body; the connection carries the WebSocket
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("X-Seen-Subject") != "alice" {
		t.Fatalf("upgrade: %d, subject %q", resp.StatusCode, resp.Header.Get("X-Seen-Subject"))
	}
	if _, err := io.WriteString(conn, "hello\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := br.ReadString('\n'); err != nil || line != "echo hello\n" {
		t.Fatalf("echo = %q, %v", line, err)
	}
}

func TestServeGracefulShutdown(t *testing.T) {
	e := newEnv(t, envOpts{})
	started, release := make(chan struct{}), make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, "done")
	}))
	t.Cleanup(app.Close)
	h := NewHandler(e.store, HandlerConfig{Upstream: mustURL(t, app.URL), Auth: e.auth, Clock: e.clk, Metrics: e.metrics,
		Auditor: NewAuditor(e.audit, false), Log: logr.Discard()})
	e.load(1, testPolicy(), bundle.Revocations{})
	cfg := ServerConfig{ShutdownGrace: 30 * time.Second}
	proxyLn, _ := net.Listen("tcp", "127.0.0.1:0")
	adminLn, _ := net.Listen("tcp", "127.0.0.1:0")
	var draining atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, cfg, NewProxyServer(cfg, h), NewAdminServer(AdminHandler(e.store, e.metrics, &draining)),
			proxyLn, adminLn, &draining, e.metrics, logr.Discard())
	}()
	readyz := func() int {
		resp, err := http.Get("http://" + adminLn.Addr().String() + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	eventually(t, 10*time.Second, "/readyz 200", func() bool { return readyz() == 200 })

	type result struct {
		body string
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+proxyLn.Addr().String()+"/slow", nil)
		req.Header.Set("Authorization", "Bearer "+e.key.token(t, claims()))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			inflight <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		inflight <- result{string(b), err}
	}()
	<-started
	cancel() // the stop signal
	eventually(t, 10*time.Second, "draining", draining.Load)
	close(release)
	r := <-inflight
	if r.err != nil || r.body != "done" {
		t.Fatalf("in-flight request: %q, %v", r.body, r.err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := net.DialTimeout("tcp", proxyLn.Addr().String(), time.Second); err == nil {
		t.Error("the proxy still accepts connections after shutdown")
	}
}

// TestUpstreamH2C: with UpstreamTransport(true) the sidecar speaks HTTP/2 without TLS to
// the application end to end (what a gRPC app needs); by default it speaks HTTP/1.1.
func TestUpstreamH2C(t *testing.T) {
	for _, h2c := range []bool{false, true} {
		t.Run(fmt.Sprint("h2c=", h2c), func(t *testing.T) {
			e := newEnv(t, envOpts{})
			app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprint(w, r.Proto)
			}))
			app.Config.Protocols = new(http.Protocols)
			app.Config.Protocols.SetHTTP1(true)
			app.Config.Protocols.SetUnencryptedHTTP2(true)
			app.Start()
			t.Cleanup(app.Close)
			h := NewHandler(e.store, HandlerConfig{Upstream: mustURL(t, app.URL), Transport: UpstreamTransport(h2c), Auth: e.auth,
				Clock: e.clk, Metrics: e.metrics, Auditor: NewAuditor(e.audit, false), Log: logr.Discard()})
			e.load(1, testPolicy(), bundle.Revocations{})
			addr := serveProxy(t, h, ServerConfig{})
			req, _ := http.NewRequest("GET", "http://"+addr+"/items/1", nil)
			req.Header.Set("Authorization", "Bearer "+e.key.token(t, claims()))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			want := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2c]
			if resp.StatusCode != 200 || string(body) != want {
				t.Fatalf("status %d, upstream saw %q, want %q", resp.StatusCode, body, want)
			}
		})
	}
}
