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
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/binding"
	"github.com/keyward-dev/keyward/internal/issuer/store"
	"github.com/keyward-dev/keyward/internal/issuer/store/boltstore"
	"github.com/keyward-dev/keyward/internal/issuer/store/pgstore"
	"github.com/keyward-dev/keyward/internal/sidecar"
)

// syncBuffer is a goroutine-safe buffer (audit records).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// records returns the audit records of an event.
func (s *syncBuffer) records(t testing.TB, event string) []AuditRecord {
	t.Helper()
	var out []AuditRecord
	for _, line := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if line == "" {
			continue
		}
		var rec AuditRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if rec.Event == event {
			out = append(out, rec)
		}
	}
	return out
}

func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// storeKinds are the stores every store-dependent test runs against: the embedded store
// always, PostgreSQL when KEYWARD_PG_DSN is set (the pgstore tests' convention; start one
// with hack/postgres.sh).
func storeKinds() []string {
	if os.Getenv("KEYWARD_PG_DSN") != "" {
		return []string{"bolt", "postgres"}
	}
	return []string{"bolt"}
}

var (
	pgOnce  sync.Once
	pgDB    string // DSN of this run's database
	pgAdmin *pgx.Conn
	pgErr   error
	pgMu    sync.Mutex
	pgSeq   int
)

// newStore opens a fresh store of a kind: a bolt file in a temporary directory, or a new
// schema in this run's PostgreSQL database (keyward_issuer_test_<random>, dropped at exit).
func newStore(t testing.TB, kind string) store.Store {
	t.Helper()
	var st store.Store
	var err error
	switch kind {
	case "bolt":
		st, err = boltstore.Open(filepath.Join(t.TempDir(), "issuer.db"))
	case "postgres":
		st, err = pgstore.Open(context.Background(), pgSchema(t))
	default:
		t.Fatalf("unknown store %q", kind)
	}
	if err != nil {
		t.Fatalf("opening the %s store: %v", kind, err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func pgSchema(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("KEYWARD_PG_DSN")
	if dsn == "" {
		t.Skip("KEYWARD_PG_DSN is not set")
	}
	pgOnce.Do(func() {
		ctx := context.Background()
		admin, err := pgx.Connect(ctx, dsn)
		if err != nil {
			pgErr = fmt.Errorf("connecting to KEYWARD_PG_DSN failed")
			return
		}
		name := "keyward_issuer_test_" + randomHexT(6)
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			pgErr = err
			return
		}
		prevStop := stopSuite
		stopSuite = func() {
			if prevStop != nil {
				prevStop()
			}
			if pgAdmin != nil {
				_ = pgAdmin.Close(ctx)
			}
			_, _ = admin.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)")
			_ = admin.Close(ctx)
		}
		u, err := url.Parse(dsn)
		if err != nil {
			pgErr = fmt.Errorf("KEYWARD_PG_DSN is not a postgres:// URL")
			return
		}
		u.Path = "/" + name
		pgDB = u.String()
		pgAdmin, pgErr = pgx.Connect(ctx, pgDB)
	})
	if pgErr != nil {
		t.Fatalf("PostgreSQL: %v", pgErr)
	}
	pgMu.Lock()
	defer pgMu.Unlock()
	pgSeq++
	schema := fmt.Sprintf("s%d_%s", pgSeq, randomHexT(3))
	if _, err := pgAdmin.Exec(context.Background(), "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("creating schema: %v", err)
	}
	u, _ := url.Parse(pgDB)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func randomHexT(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// fixture is one test's world: a namespace with a SigningKey, a TokenPolicy with
// issuance, ServiceAccounts (login: a mint client; workload: may exchange; stranger:
// neither), and a token service on a store of its own, behind httptest.
type fixture struct {
	t      *testing.T
	s      *suite
	ctx    context.Context
	ns     string
	policy string
	issuer string // https://auth.example/<ns>
	prefix string // /<ns>
	store  store.Store
	srv    *Server
	http   *httptest.Server
	audit  *syncBuffer
}

type fixtureOpts struct {
	store  string
	spec   func(*v1alpha1.TokenPolicySpec)
	config func(*Config)
}

func newFixture(t *testing.T, o fixtureOpts) *fixture {
	t.Helper()
	s := envSuite(t)
	if o.store == "" {
		o.store = "bolt"
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &fixture{t: t, s: s, ctx: ctx, policy: "api", audit: &syncBuffer{}}
	f.ns = fmt.Sprintf("iss-%d", nsCounter.Add(1))
	f.issuer, f.prefix = "https://auth.example/"+f.ns, "/"+f.ns
	f.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}})
	for _, sa := range []string{"login", "workload", "stranger"} {
		f.create(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: f.ns}})
	}
	f.create(&v1alpha1.SigningKey{ObjectMeta: metav1.ObjectMeta{Name: "keys", Namespace: f.ns}})
	spec := v1alpha1.TokenPolicySpec{
		Issuer: f.issuer, Audiences: []string{"api"}, SigningKeys: []string{"keys"},
		Issuance: &v1alpha1.IssuanceSpec{
			Scopes:        []string{"read", "write"},
			MintClients:   []string{f.ns + "/login"},
			TokenExchange: &v1alpha1.TokenExchangeSpec{ServiceAccounts: []string{f.ns + "/workload"}, Scopes: []string{"read"}},
		},
	}
	if o.spec != nil {
		o.spec(&spec)
	}
	f.create(&v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: f.policy, Namespace: f.ns}, Spec: spec})

	f.store = newStore(t, o.store)
	sealer, err := NewSealer(bytes.Repeat([]byte{byte(nsCounter.Load())}, ReplayKeySize))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Store: f.store, Sealer: sealer, Reviewer: &TokenReviewer{Client: s.kube}, Client: s.k8s, Recorder: s.recorder,
		Clock: s.clock, Audit: NewAuditor(f.audit, nil), Log: logr.Discard(), DPoPNonce: true,
	}
	if o.config != nil {
		o.config(&cfg)
	}
	if f.srv, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(s.cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr(true)},
		Cache:                  CacheOptions([]string{f.ns}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&PolicyReconciler{Client: mgr.GetClient(), Server: f.srv, Clock: s.clock}).SetupWithManager(mgr, controller.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := mgr.Add(f.srv); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("issuer manager: %v", err)
		}
	}()
	f.http = httptest.NewServer(f.srv)
	t.Cleanup(func() {
		f.http.Close()
		cancel()
		<-done
	})
	f.waitReady()
	return f
}

func (f *fixture) create(obj client.Object) {
	f.t.Helper()
	if err := f.s.k8s.Create(context.Background(), obj); err != nil {
		f.t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// state is the policy state the service is serving.
func (f *fixture) state() *policyState { return f.srv.registry.lookup(f.prefix) }

// waitReady waits until the service signs for the policy.
func (f *fixture) waitReady() {
	f.t.Helper()
	eventually(f.t, 60*time.Second, "the token service to sign for "+f.issuer, func() bool {
		p := f.state()
		return p != nil && p.notReady == "" && p.signer != nil
	})
}

// saToken returns a ServiceAccount token for audience (TokenRequest, the real API).
func (f *fixture) saToken(name, audience string) string {
	f.t.Helper()
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}
	if audience != "" {
		tr.Spec.Audiences = []string{audience}
	}
	res, err := f.s.kube.CoreV1().ServiceAccounts(f.ns).CreateToken(context.Background(), name, tr, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatalf("TokenRequest for %s: %v", name, err)
	}
	return res.Status.Token
}

// response is a decoded answer of the token service.
type response struct {
	status int
	header http.Header
	body   []byte
	tokens tokenResponse
	err    struct {
		Code        string `json:"error"`
		Description string `json:"error_description"`
	}
}

func (r *response) cookie(name string) *http.Cookie {
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (f *fixture) do(method, path, contentType, body string, hdr http.Header) *response {
	f.t.Helper()
	req, err := http.NewRequest(method, f.http.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := f.http.Client().Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	out := &response{status: res.StatusCode, header: res.Header}
	if out.body, err = io.ReadAll(res.Body); err != nil {
		f.t.Fatal(err)
	}
	if res.StatusCode == http.StatusOK && strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(out.body, &out.tokens)
	} else {
		_ = json.Unmarshal(out.body, &out.err)
	}
	return out
}

func (f *fixture) form(path string, v url.Values, hdr http.Header) *response {
	f.t.Helper()
	return f.do(http.MethodPost, f.prefix+path, "application/x-www-form-urlencoded", v.Encode(), hdr)
}

// mint calls the mint endpoint as the login ServiceAccount.
func (f *fixture) mint(body string) *response {
	f.t.Helper()
	return f.mintAs(f.saToken("login", DefaultAudience), body)
}

func (f *fixture) mintAs(saToken, body string) *response {
	f.t.Helper()
	hdr := http.Header{}
	if saToken != "" {
		hdr.Set("Authorization", "Bearer "+saToken)
	}
	return f.do(http.MethodPost, f.prefix+pathMint, "application/json", body, hdr)
}

// mustMint mints a session for sub and returns the response.
func (f *fixture) mustMint(sub, scope string) *response {
	f.t.Helper()
	res := f.mint(fmt.Sprintf(`{"sub":%q,"client_id":"web","scope":%q}`, sub, scope))
	if res.status != http.StatusOK {
		f.t.Fatalf("mint: %d %s", res.status, res.body)
	}
	return res
}

func (f *fixture) refresh(rt string, hdr http.Header) *response {
	f.t.Helper()
	return f.form(pathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, hdr)
}

func (f *fixture) mustRefresh(rt string) *response {
	f.t.Helper()
	res := f.refresh(rt, nil)
	if res.status != http.StatusOK {
		f.t.Fatalf("refresh: %d %s", res.status, res.body)
	}
	return res
}

func expectError(t testing.TB, r *response, status int, code string) {
	t.Helper()
	if r.status != status || r.err.Code != code {
		t.Fatalf("got %d %s, want %d %s", r.status, r.body, status, code)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("error response without Cache-Control: no-store")
	}
}

// claims decodes a JWT's payload (the tests' view; the verifier checks it for real).
func claims(t testing.TB, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func header(t testing.TB, token string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// verifier is the verifier sidecar for the fixture's policy, built exactly as
// cmd/verifier builds it in watch mode: a ConfigMapSource on the policy's bundle
// ConfigMap feeding a sidecar.Store, and the proxy Handler in front of an upstream.
type verifier struct {
	t       testing.TB
	store   *sidecar.Store
	handler *sidecar.Handler
	audit   *syncBuffer
	dpop    *binding.DPoPChecker
}

func (f *fixture) verifier() *verifier {
	f.t.Helper()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "app") }))
	f.t.Cleanup(upstream.Close)
	u, _ := url.Parse(upstream.URL)
	m := sidecar.NewMetrics()
	v := &verifier{t: f.t, audit: &syncBuffer{}, dpop: binding.NewDPoPChecker(binding.DPoPOptions{}, f.s.clock)}
	v.store = sidecar.NewStore(f.s.clock, sidecar.DefaultCacheSize, m, logr.Discard())
	v.handler = sidecar.NewHandler(v.store, sidecar.HandlerConfig{
		Upstream: u, Auth: &sidecar.Authenticator{DPoP: v.dpop}, Clock: f.s.clock, Metrics: m,
		Auditor: sidecar.NewAuditor(v.audit, false), Log: logr.Discard(),
	})
	src := &sidecar.ConfigMapSource{Client: f.s.kube, Namespace: f.ns, Name: f.policy + "-bundle", Store: v.store, Log: logr.Discard()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = src.Run(ctx) }()
	f.t.Cleanup(func() { cancel(); <-done })
	eventually(f.t, 30*time.Second, "the verifier to load the bundle", v.store.Ready)
	return v
}

// status sends GET http://api.example/orders through the verifier.
func (v *verifier) status(authorization string, hdr http.Header) int {
	req := httptest.NewRequest(http.MethodGet, "http://api.example/orders", nil)
	for k, vals := range hdr {
		req.Header[k] = vals
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	v.handler.ServeHTTP(rec, req)
	return rec.Code
}

// dpopKey is a client's DPoP key.
type dpopKey struct {
	priv *ecdsa.PrivateKey
	jwk  string
	jkt  string
}

func newDPoPKey(t testing.TB) *dpopKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := priv.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	x, y := b64u(pub[1:33]), b64u(pub[33:])
	thumb := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	return &dpopKey{priv: priv, jwk: `{"kty":"EC","crv":"P-256","x":"` + x + `","y":"` + y + `"}`, jkt: b64u(thumb[:])}
}

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// proof makes a DPoP proof (RFC 9449 §4.2) for method and htu at iat; nonce and the
// access token (ath) are included when not empty.
func (k *dpopKey) proof(t testing.TB, method, htu, nonce, accessToken string, iat time.Time) string {
	t.Helper()
	hdr := `{"typ":"dpop+jwt","alg":"ES256","jwk":` + k.jwk + `}`
	c := map[string]any{"jti": randomHexT(12), "htm": method, "htu": htu, "iat": iat.Unix()}
	if nonce != "" {
		c["nonce"] = nonce
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		c["ath"] = b64u(sum[:])
	}
	payload, _ := json.Marshal(c)
	input := b64u([]byte(hdr)) + "." + b64u(payload)
	digest := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, k.priv, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64u(sig)
}

// revocationEntry returns the RevocationEntry the service creates for a session.
func (f *fixture) sessionEntry(sid string) *v1alpha1.RevocationEntry {
	return sessionEntry(f.state(), sid, "")
}

// getEntry fetches a RevocationEntry by name; nil when absent.
func (f *fixture) getEntry(name string) *v1alpha1.RevocationEntry {
	e := &v1alpha1.RevocationEntry{}
	if err := f.s.k8s.Get(context.Background(), types.NamespacedName{Namespace: f.ns, Name: name}, e); err != nil {
		return nil
	}
	return e
}

// events returns the reasons of the Events on the fixture's TokenPolicy.
func (f *fixture) eventReasons() map[string]int {
	out := map[string]int{}
	list, err := f.s.kube.EventsV1().Events(f.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	for _, e := range list.Items {
		if e.Regarding.Kind == "TokenPolicy" && e.Regarding.Name == f.policy {
			out[e.Reason]++
		}
	}
	return out
}

func decodeJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return m
}

func reqFor(ns, name string) ctrl.Request {
	return ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}
}
