package sidecar

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/lestrrat-go/jwx/v3/jwk"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keyward-dev/keyward/internal/binding"
	"github.com/keyward-dev/keyward/internal/bundle"
	"github.com/keyward-dev/keyward/internal/jwks"
)

// testNow is the fake clock's time (2026-05-28T20:26:40Z).
var testNow = time.Unix(1780000000, 0)

const (
	testIssuer   = "https://auth.example.com"
	testAudience = "api"
)

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// signingKey is an ES256 key of the issuer, generated with jwks.Generate.
type signingKey struct {
	jwk  jwk.Key
	kid  string
	priv *ecdsa.PrivateKey
}

func newSigningKey(t testing.TB) *signingKey {
	t.Helper()
	k, err := jwks.Generate(jwks.AlgES256, 0)
	if err != nil {
		t.Fatal(err)
	}
	var raw any
	if err := jwk.Export(k, &raw); err != nil {
		t.Fatal(err)
	}
	kid, _ := k.KeyID()
	return &signingKey{jwk: k, kid: kid, priv: raw.(*ecdsa.PrivateKey)}
}

func es256(t testing.TB, priv *ecdsa.PrivateKey, input string) string {
	t.Helper()
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, priv, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return b64u(sig)
}

func jsonB64(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64u(b)
}

var jtiSeq atomic.Int64

// claims returns valid access-token claims at testNow; edit them before signing.
func claims() map[string]any {
	return map[string]any{
		"iss":       testIssuer,
		"aud":       testAudience,
		"sub":       "alice",
		"client_id": "web",
		"sid":       "s-1",
		"scope":     "items:read profile",
		"jti":       "jti-" + strconv.FormatInt(jtiSeq.Add(1), 10),
		"iat":       testNow.Unix() - 10,
		"exp":       testNow.Unix() + 600,
	}
}

// token signs claims as an at+jwt with k.
func (k *signingKey) token(t testing.TB, c map[string]any) string {
	t.Helper()
	input := jsonB64(t, map[string]any{"alg": "ES256", "kid": k.kid, "typ": "at+jwt"}) + "." + jsonB64(t, c)
	return input + "." + es256(t, k.priv, input)
}

// dpopKey is a client's DPoP key.
type dpopKey struct {
	priv *ecdsa.PrivateKey
	jwk  map[string]any
	jkt  string
}

func newDPoPKey(t testing.TB) *dpopKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := priv.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	k, err := jwk.Import(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	sum, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return &dpopKey{
		priv: priv,
		jwk:  map[string]any{"kty": "EC", "crv": "P-256", "x": b64u(raw[1:33]), "y": b64u(raw[33:])},
		jkt:  b64u(sum),
	}
}

// proof builds a DPoP proof for method and htu, bound to token; extra claims are added.
func (k *dpopKey) proof(t testing.TB, method, htu, token string, extra map[string]any) string {
	t.Helper()
	ath := sha256.Sum256([]byte(token))
	c := map[string]any{
		"jti": "p-" + strconv.FormatInt(jtiSeq.Add(1), 10),
		"htm": method,
		"htu": htu,
		"iat": testNow.Unix(),
		"ath": b64u(ath[:]),
	}
	for n, v := range extra {
		c[n] = v
	}
	input := jsonB64(t, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": k.jwk}) + "." + jsonB64(t, c)
	return input + "." + es256(t, k.priv, input)
}

// testPolicy is a valid policy; edit it before building a bundle.
func testPolicy() bundle.Policy {
	return bundle.Policy{
		Namespace:             "shop",
		Name:                  "api",
		Issuer:                testIssuer,
		Audiences:             []string{testAudience},
		Algorithms:            []string{"ES256"},
		LeewaySeconds:         0,
		AccessTokenType:       "at+jwt",
		AccessTokenTTLSeconds: 600,
		Binding:               bundle.Binding{Mode: "None"},
		Routes: []bundle.Route{
			{Path: "/public/*", Anonymous: true},
			{Path: "/items/*", Methods: []string{"POST"}, Scopes: []string{"items:write"}},
		},
		ForwardClaims: []bundle.ClaimHeader{{Claim: "email", Header: "X-User-Email"}, {Claim: "tenant", Header: "X-Tenant"}},
		TokenSources:  []bundle.TokenSource{{Type: "AuthorizationHeader"}, {Type: "Cookie", Name: "at"}},
	}
}

// bundleDoc renders a bundle document.
func bundleDoc(t testing.TB, gen int64, p bundle.Policy, rev bundle.Revocations, keys ...*signingKey) []byte {
	t.Helper()
	var ks []jwk.Key
	for _, k := range keys {
		ks = append(ks, k.jwk)
	}
	set, err := jwks.PublicSetJSON(ks)
	if err != nil {
		t.Fatal(err)
	}
	content, hash, err := bundle.EncodeContent(bundle.Content{Policy: p, JWKS: set, Revocations: rev})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := bundle.Encode(gen, content, hash)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// syncBuffer is a goroutine-safe audit sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// records decodes the audit lines.
func (b *syncBuffer) records(t testing.TB) []AuditRecord {
	t.Helper()
	var out []AuditRecord
	for line := range strings.SplitSeq(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var r AuditRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// upstreamSeen is what the application received.
type upstreamSeen struct {
	Method, Path, Host string
	Header             http.Header
}

// newUpstream starts an application that answers 200 with the request it saw, as JSON.
func newUpstream(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(upstreamSeen{Method: r.Method, Path: r.URL.Path, Host: r.Host, Header: r.Header})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// env is a handler in front of a real upstream, with a fake clock.
type env struct {
	t        testing.TB
	clk      *clocktesting.FakeClock
	metrics  *Metrics
	store    *Store
	audit    *syncBuffer
	auth     *Authenticator
	handler  *Handler
	upstream *httptest.Server
	key      *signingKey
}

type envOpts struct {
	requireNonce  bool
	auditAccepted bool
	publicURL     string
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	e := &env{t: t, clk: clocktesting.NewFakeClock(testNow), metrics: NewMetrics(), audit: &syncBuffer{}, key: newSigningKey(t)}
	e.upstream = newUpstream(t)
	e.store = NewStore(e.clk, DefaultCacheSize, e.metrics, logr.Discard())
	e.auth = &Authenticator{DPoP: binding.NewDPoPChecker(binding.DPoPOptions{RequireNonce: o.requireNonce}, e.clk)}
	if o.publicURL != "" {
		e.auth.PublicURL = mustURL(t, o.publicURL)
	}
	e.handler = NewHandler(e.store, HandlerConfig{
		Upstream: mustURL(t, e.upstream.URL),
		Auth:     e.auth,
		Clock:    e.clk,
		Metrics:  e.metrics,
		Auditor:  NewAuditor(e.audit, o.auditAccepted),
		Log:      logr.Discard(),
	})
	return e
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// load puts a bundle with policy p and the env's key in force.
func (e *env) load(gen int64, p bundle.Policy, rev bundle.Revocations, keys ...*signingKey) {
	e.t.Helper()
	if len(keys) == 0 {
		keys = []*signingKey{e.key}
	}
	if err := e.store.Offer(SourceDir, bundleDoc(e.t, gen, p, rev, keys...)); err != nil {
		e.t.Fatalf("Offer: %v", err)
	}
}

// do sends a request through the handler; hdr values are added in order.
func (e *env) do(method, target string, hdr ...[2]string) *httptest.ResponseRecorder {
	e.t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for _, h := range hdr {
		req.Header.Add(h[0], h[1])
	}
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	return rec
}

// seen decodes what the upstream received from a 200 response.
func seen(t testing.TB, rec *httptest.ResponseRecorder) upstreamSeen {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200 (WWW-Authenticate %q, body %q)", rec.Code, rec.Header().Values("WWW-Authenticate"), rec.Body.String())
	}
	var s upstreamSeen
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
		t.Fatalf("upstream answer: %v", err)
	}
	return s
}

// lastAudit is the last audit record.
func (e *env) lastAudit() AuditRecord {
	e.t.Helper()
	recs := e.audit.records(e.t)
	if len(recs) == 0 {
		e.t.Fatal("no audit record")
	}
	return recs[len(recs)-1]
}

// writeFile writes data to a new file in dir.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// eventually polls cond until it holds or the deadline passes (waiting for events, not
// asserting on time).
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func bearer(tok string) [2]string { return [2]string{"Authorization", "Bearer " + tok} }
