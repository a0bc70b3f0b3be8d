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

package client_test

// The client against the real token service: internal/issuer behind httptest, fed by
// the real Keyward controllers (SigningKey, TokenPolicy, RevocationEntry) on a real
// kube-apiserver and etcd (envtest), with the mint endpoint authenticating a real
// ServiceAccount token (TokenRequest, TokenReview), and the real verifier sidecar
// (internal/sidecar, watch mode on the policy's bundle ConfigMap) as the resource
// server. Every component reads one fake clock, which the tests step across access-token
// lifetimes.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/controllers"
	"github.com/keyward-dev/keyward/internal/binding"
	"github.com/keyward-dev/keyward/internal/issuer"
	"github.com/keyward-dev/keyward/internal/issuer/store/boltstore"
	"github.com/keyward-dev/keyward/internal/sidecar"
	"github.com/keyward-dev/keyward/pkg/client"
)

// world is the control plane and the operator, shared by the tests.
type world struct {
	cfg   *rest.Config
	k8s   ctrlclient.Client
	kube  kubernetes.Interface
	clock *clocktesting.FakeClock
}

var (
	worldOnce sync.Once
	theWorld  *world
	worldErr  error
	stopWorld func()
	nsSeq     atomic.Int64
	scheme    = runtime.NewScheme()
)

func TestMain(m *testing.M) {
	logf.SetLogger(logr.Discard())
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	if err := v1alpha1.AddToScheme(clientgoscheme.Scheme); err != nil { // Events name TokenPolicies
		panic(err)
	}
	code := m.Run()
	if stopWorld != nil {
		stopWorld()
	}
	os.Exit(code)
}

// theControlPlane starts envtest and the operator on first use.
func theControlPlane(t *testing.T) *world {
	t.Helper()
	worldOnce.Do(func() { theWorld, worldErr = startWorld() })
	if worldErr != nil {
		t.Fatalf("starting envtest: %v", worldErr)
	}
	return theWorld
}

func startWorld() (*world, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		if _, err := os.Stat("../../bin/k8s/kube-apiserver"); err != nil {
			return nil, errors.New("the tests against the token service need kube-apiserver and etcd: run `make envtest-assets` (builds them into bin/k8s) or set KUBEBUILDER_ASSETS")
		}
		_ = os.Setenv("KUBEBUILDER_ASSETS", "../../bin/k8s")
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 200, 400
	w := &world{cfg: cfg, kube: kubernetes.NewForConfigOrDie(cfg), clock: clocktesting.NewFakeClock(time.Now().Truncate(time.Second))}
	fail := func(err error) (*world, error) { _ = env.Stop(); return nil, err }
	if w.k8s, err = ctrlclient.New(cfg, ctrlclient.Options{Scheme: scheme}); err != nil {
		return fail(err)
	}
	// The operator, as main.go wires it, on the fake clock.
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr(true)},
		Cache:                  controllers.CacheOptions(),
	})
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	opts := controller.Options{MaxConcurrentReconciles: 2}
	if err := controllers.SetupAll(ctx, mgr, w.clock, opts, opts); err != nil {
		cancel()
		return fail(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "operator manager:", err)
		}
	}()
	stopWorld = func() {
		cancel()
		<-done
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}
	return w, nil
}

func ptr[T any](v T) *T { return &v }

// deployment is one test's Keyward: a namespace with a SigningKey, a TokenPolicy with
// issuance, a login ServiceAccount allowed to mint, the token service (its own bolt
// store) on a loopback address, and a verifier sidecar in front of an upstream.
type deployment struct {
	t        *testing.T
	w        *world
	ns       string
	addr     string // the token service's address
	prefix   string // /<ns>
	srv      *issuer.Server
	issuerHS *httptest.Server
	rs       *httptest.Server // the sidecar
	rsReqs   atomic.Int64
	rs401    atomic.Int64
	tokReqs  atomic.Int64 // token endpoint requests seen by the client's token transport
	bodies   chan string  // request bodies the upstream received
}

type deploymentOpts struct {
	dpop         bool // binding mode DPoP, and the sidecar requires DPoP nonces
	accessTTL    time.Duration
	otherIssuer  bool // the sidecar verifies another policy's tokens (refuses ours)
	issuerConfig func(*issuer.Config)
}

func newDeployment(t *testing.T, o deploymentOpts) *deployment {
	t.Helper()
	w := theControlPlane(t)
	// Tests step the shared clock far ahead; start each deployment at the wall clock
	// again, because the API server stamps creationTimestamp with it and revocation
	// expiries count from there.
	w.clock.SetTime(time.Now().Truncate(time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	d := &deployment{t: t, w: w, ns: fmt.Sprintf("client-%d", nsSeq.Add(1)), bodies: make(chan string, 10000)}
	d.prefix = "/" + d.ns

	// The token service's address comes first: it is the policy's issuer URL.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.addr = ln.Addr().String()
	issuerURL := "http://" + d.addr + d.prefix

	for _, obj := range []ctrlclient.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: d.ns}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "login", Namespace: d.ns}},
		&v1alpha1.SigningKey{ObjectMeta: metav1.ObjectMeta{Name: "keys", Namespace: d.ns}},
	} {
		d.create(obj)
	}
	ttl := o.accessTTL
	if ttl == 0 {
		ttl = 10 * time.Minute
	}
	spec := v1alpha1.TokenPolicySpec{
		Issuer: issuerURL, Audiences: []string{"orders"}, SigningKeys: []string{"keys"},
		AccessToken: v1alpha1.AccessTokenSpec{TTL: metav1.Duration{Duration: ttl}, Type: "at+jwt"},
		Issuance: &v1alpha1.IssuanceSpec{
			Scopes:      []string{"read", "write"},
			MintClients: []string{d.ns + "/login"},
		},
	}
	if o.dpop {
		spec.Binding = v1alpha1.BindingSpec{Mode: v1alpha1.BindingDPoP}
	}
	d.create(&v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: d.ns}, Spec: spec})
	bundleOf := "api"
	if o.otherIssuer {
		d.create(&v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: d.ns}, Spec: v1alpha1.TokenPolicySpec{
			Issuer: "https://other.example", Audiences: []string{"orders"}, SigningKeys: []string{"keys"},
		}})
		bundleOf = "other"
	}

	// The token service, as cmd/issuer wires it.
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "issuer.db"))
	if err != nil {
		t.Fatal(err)
	}
	replayKey := make([]byte, issuer.ReplayKeySize)
	_, _ = rand.Read(replayKey)
	sealer, err := issuer.NewSealer(replayKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := issuer.Config{
		Store: st, Sealer: sealer, Reviewer: &issuer.TokenReviewer{Client: w.kube}, Client: w.k8s,
		Clock: w.clock, Log: logr.Discard(), DPoPNonce: true,
	}
	if o.issuerConfig != nil {
		o.issuerConfig(&cfg)
	}
	if d.srv, err = issuer.New(cfg); err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(w.cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr(true)},
		Cache:                  issuer.CacheOptions([]string{d.ns}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&issuer.PolicyReconciler{Client: mgr.GetClient(), Server: d.srv, Clock: w.clock}).SetupWithManager(mgr, controller.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := mgr.Add(d.srv); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("token service manager: %v", err)
		}
	}()
	d.issuerHS = httptest.NewUnstartedServer(d.srv)
	d.issuerHS.Listener.Close()
	d.issuerHS.Listener = ln
	d.issuerHS.Start()

	// The resource server: the verifier sidecar as cmd/verifier runs it in watch mode.
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case d.bodies <- string(b):
		default:
		}
		_, _ = io.WriteString(w, "app")
	}))
	up, _ := url.Parse(upstream.URL)
	m := sidecar.NewMetrics()
	sstore := sidecar.NewStore(w.clock, sidecar.DefaultCacheSize, m, logr.Discard())
	handler := sidecar.NewHandler(sstore, sidecar.HandlerConfig{
		Upstream: up, Clock: w.clock, Metrics: m, Log: logr.Discard(),
		Auth:    &sidecar.Authenticator{DPoP: binding.NewDPoPChecker(binding.DPoPOptions{RequireNonce: o.dpop}, w.clock)},
		Auditor: sidecar.NewAuditor(io.Discard, false),
	})
	d.rs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.rsReqs.Add(1)
		rec := &statusRecorder{ResponseWriter: w}
		handler.ServeHTTP(rec, r)
		if rec.status == http.StatusUnauthorized {
			d.rs401.Add(1)
		}
	}))
	src := &sidecar.ConfigMapSource{Client: w.kube, Namespace: d.ns, Name: bundleOf + "-bundle", Store: sstore, Log: logr.Discard()}
	srcDone := make(chan struct{})
	go func() { defer close(srcDone); _ = src.Run(ctx) }()
	t.Cleanup(func() {
		d.rs.Close()
		upstream.Close()
		d.issuerHS.Close()
		cancel()
		<-done
		<-srcDone
		_ = st.Close()
	})
	eventually(t, 60*time.Second, "the verifier to load the bundle", sstore.Ready)
	return d
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (d *deployment) create(obj ctrlclient.Object) {
	d.t.Helper()
	if err := d.w.k8s.Create(context.Background(), obj); err != nil {
		d.t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *deployment) tokenURL() string { return "http://" + d.addr + d.prefix + "/token" }

// mint is what a login service does after authenticating a user: POST <issuer>/mint
// with its ServiceAccount token. It waits until the token service signs for the policy.
func (d *deployment) mint(sub, jkt string) *client.Token {
	d.t.Helper()
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: []string{issuer.DefaultAudience}, ExpirationSeconds: ptr(int64(3600)),
	}}
	res, err := d.w.kube.CoreV1().ServiceAccounts(d.ns).CreateToken(context.Background(), "login", tr, metav1.CreateOptions{})
	if err != nil {
		d.t.Fatalf("TokenRequest: %v", err)
	}
	body, _ := json.Marshal(map[string]string{"sub": sub, "client_id": "orders-cli", "scope": "read write", "dpop_jkt": jkt})
	var tok *client.Token
	eventually(d.t, 60*time.Second, "the token service to mint", func() bool {
		req, _ := http.NewRequest(http.MethodPost, "http://"+d.addr+d.prefix+"/mint", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+res.Status.Token)
		req.Header.Set("Content-Type", "application/json")
		issued := d.w.clock.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusNotFound {
			return false // not serving the policy, or not signing for it, yet
		}
		if resp.StatusCode != http.StatusOK {
			d.t.Fatalf("mint: %d %s", resp.StatusCode, b)
		}
		if tok, err = client.ParseTokenResponse(b, issued); err != nil {
			d.t.Fatal(err)
		}
		return true
	})
	return tok
}

// rotations is the number of refresh-token rotations the token service made.
func (d *deployment) rotations() int {
	return int(testutil.ToFloat64(d.srv.Metrics().Refreshed.WithLabelValues(d.ns+"/api", "rotated")))
}

func (d *deployment) replays() int {
	return int(testutil.ToFloat64(d.srv.Metrics().Refreshed.WithLabelValues(d.ns+"/api", "replayed")))
}

// transport returns a client for a new session of sub.
func (d *deployment) transport(store client.TokenStore, key *client.DPoPKey, mutate func(*client.Config)) (*client.Transport, *http.Client) {
	d.t.Helper()
	counting := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		d.tokReqs.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})
	cfg := client.Config{TokenURL: d.tokenURL(), Store: store, DPoPKey: key, Clock: d.w.clock, TokenTransport: counting}
	if mutate != nil {
		mutate(&cfg)
	}
	tr, err := client.NewTransport(cfg)
	if err != nil {
		d.t.Fatal(err)
	}
	jkt := ""
	if key != nil {
		jkt = key.Thumbprint()
	}
	if err := tr.SetToken(context.Background(), d.mint("user-1", jkt)); err != nil {
		d.t.Fatal(err)
	}
	return tr, &http.Client{Transport: tr}
}

func (d *deployment) post(hc *http.Client, body string) (int, error) {
	res, err := hc.Post(d.rs.URL+"/orders", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode == http.StatusOK && string(b) != "app" {
		return 0, fmt.Errorf("upstream answered %q", b)
	}
	return res.StatusCode, nil
}

func TestIssuerLongTaskAcrossAccessTokenLifetimes(t *testing.T) {
	d := newDeployment(t, deploymentOpts{accessTTL: 2 * time.Minute})
	store := &client.FileStore{Path: filepath.Join(t.TempDir(), "token.json")}
	_, hc := d.transport(store, nil, func(c *client.Config) { c.Jitter = nil })
	// 240 requests, one every 5 s of the fake clock: 20 min, 10 access-token lifetimes.
	for i := 0; i < 240; i++ {
		body := fmt.Sprintf(`{"step":%d}`, i)
		code, err := d.post(hc, body)
		if err != nil || code != http.StatusOK {
			t.Fatalf("request %d at +%ds: %d %v", i, i*5, code, err)
		}
		if got := <-d.bodies; got != body {
			t.Fatalf("request %d: the upstream got %q", i, got)
		}
		d.w.clock.Step(5 * time.Second)
	}
	// A refresh every 90-108 s (75-90 % of 120 s, rounded up to the 5 s steps).
	if n := d.rotations(); n < 1200/110 || n > 1200/90+1 {
		t.Fatalf("%d rotations in 20 min of 2 min tokens, want 10-14", n)
	}
	if n := d.rs401.Load(); n != 0 {
		t.Fatalf("the sidecar refused %d requests: the token expired in use", n)
	}
	// The file holds the current refresh token: a new process carries on from it.
	tr2, err := client.NewTransport(client.Config{TokenURL: d.tokenURL(), Store: store, Clock: d.w.clock})
	if err != nil {
		t.Fatal(err)
	}
	d.w.clock.Step(3 * time.Minute) // the stored access token has expired
	before := d.rotations()
	if code, err := d.post(&http.Client{Transport: tr2}, "{}"); err != nil || code != 200 {
		t.Fatalf("a new process with the stored token: %d %v", code, err)
	}
	if d.rotations() != before+1 {
		t.Fatal("the new process did not refresh with the stored refresh token")
	}
}

func TestIssuerConcurrentCallersOneRefreshPerExpiry(t *testing.T) {
	d := newDeployment(t, deploymentOpts{})
	_, hc := d.transport(&client.MemoryStore{}, nil, nil)
	for round := 1; round <= 3; round++ {
		d.w.clock.Step(11 * time.Minute) // past the 10 min lifetime: every caller needs a new token
		var wg sync.WaitGroup
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if code, err := d.post(hc, "{}"); err != nil || code != 200 {
					t.Errorf("round %d: %d %v", round, code, err)
				}
			}()
		}
		wg.Wait()
		if n := d.rotations(); n != round {
			t.Fatalf("round %d: %d rotations in total, want exactly one per expiry", round, n)
		}
	}
	if d.replays() != 0 || d.rs401.Load() != 0 {
		t.Fatalf("%d replayed refreshes, %d refused requests: want none", d.replays(), d.rs401.Load())
	}
}

func TestIssuerUnreachableThenBack(t *testing.T) {
	d := newDeployment(t, deploymentOpts{})
	store := &client.FileStore{Path: filepath.Join(t.TempDir(), "token.json")}
	_, hc := d.transport(store, nil, nil)
	before, _ := store.Load(context.Background())

	d.issuerHS.Close() // connections are refused
	d.w.clock.Step(11 * time.Minute)
	_, err := d.post(hc, "{}")
	var re *client.RefreshError
	if !errors.As(err, &re) || errors.Is(err, client.ErrSessionEnded) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("error %v, want a RefreshError saying the connection was refused", err)
	}
	t.Logf("the error a caller sees: %v", err)
	if after, _ := store.Load(context.Background()); after.RefreshToken != before.RefreshToken {
		t.Fatal("the refresh token was lost")
	}
	if d.rs401.Load() != 0 || d.rsReqs.Load() != 0 {
		t.Fatal("an expired token was sent")
	}

	// The token service comes back on the same address.
	ln, err := listenAgain(d.addr)
	if err != nil {
		t.Fatal(err)
	}
	d.issuerHS = httptest.NewUnstartedServer(d.srv)
	d.issuerHS.Listener.Close()
	d.issuerHS.Listener = ln
	d.issuerHS.Start()
	if code, err := d.post(hc, "{}"); err != nil || code != 200 {
		t.Fatalf("after recovery: %d %v", code, err)
	}
	if d.rotations() != 1 {
		t.Fatalf("%d rotations, want 1: the kept refresh token must still be current", d.rotations())
	}
}

func listenAgain(addr string) (net.Listener, error) {
	var err error
	for i := 0; i < 100; i++ {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, err
}

func TestIssuerDPoPNonces(t *testing.T) {
	// Token-endpoint nonces that last an hour, so that the second refresh, one token
	// lifetime later, still holds a valid one.
	d := newDeployment(t, deploymentOpts{dpop: true, issuerConfig: func(c *issuer.Config) { c.DPoPNonceLifetime = time.Hour }})
	key, err := client.GenerateDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	store := &client.MemoryStore{}
	_, hc := d.transport(store, key, nil)
	if tok, _ := store.Load(context.Background()); tok.TokenType != client.TokenTypeDPoP {
		t.Fatalf("minted token type %q, want DPoP", tok.TokenType)
	}
	// The sidecar requires nonces: the first request is refused with use_dpop_nonce and
	// retried once; the second carries the nonce from the start.
	for i, want := range []int64{2, 3} {
		if code, err := d.post(hc, "{}"); err != nil || code != 200 {
			t.Fatalf("request %d: %d %v", i, code, err)
		}
		if n := d.rsReqs.Load(); n != want {
			t.Fatalf("after request %d the sidecar saw %d requests, want %d", i, n, want)
		}
	}
	// The token service requires nonces too (Config.DPoPNonce, cmd/issuer's default):
	// the first refresh is answered use_dpop_nonce and retried once with the nonce...
	if err := forceRefresh(t, d, hc); err != nil {
		t.Fatal(err)
	}
	if n := d.tokReqs.Load(); n != 2 {
		t.Fatalf("%d token requests for the first refresh, want 2 (one nonce retry)", n)
	}
	// ...and the next one sends the nonce of the last answer from the start.
	if err := forceRefresh(t, d, hc); err != nil {
		t.Fatal(err)
	}
	if n := d.tokReqs.Load(); n != 3 {
		t.Fatalf("%d token requests for two refreshes, want 3 (the nonce is remembered)", n)
	}
	tok, _ := store.Load(context.Background())
	if tok.TokenType != client.TokenTypeDPoP {
		t.Fatalf("refreshed token type %q", tok.TokenType)
	}
	if d.replays() != 0 {
		t.Fatalf("%d replayed refreshes", d.replays())
	}
}

// forceRefresh steps to the refresh time of the stored token and sends a request.
func forceRefresh(t *testing.T, d *deployment, hc *http.Client) error {
	t.Helper()
	tr := hc.Transport.(*client.Transport)
	tok, err := tr.Token(context.Background())
	if err != nil {
		return err
	}
	if now := d.w.clock.Now(); tok.RefreshAt.After(now) {
		d.w.clock.Step(tok.RefreshAt.Sub(now))
	}
	before := d.rotations()
	code, err := d.post(hc, "{}")
	if err != nil || code != 200 {
		return fmt.Errorf("%d %w", code, err)
	}
	if d.rotations() != before+1 {
		return errors.New("no rotation at the refresh time")
	}
	return nil
}

func TestIssuer401RefreshAndRetryOnce(t *testing.T) {
	d := newDeployment(t, deploymentOpts{})
	store := &client.MemoryStore{}
	_, hc := d.transport(store, nil, nil)
	if code, err := d.post(hc, `{"n":0}`); err != nil || code != 200 {
		t.Fatalf("%d %v", code, err)
	}
	<-d.bodies
	// Revoke the access token (RFC 7009): a RevocationEntry for its jti reaches the
	// sidecar through the bundle, and the sidecar refuses it while it is still valid.
	old, _ := store.Load(context.Background())
	res, err := http.PostForm("http://"+d.addr+d.prefix+"/revoke", url.Values{"token": {old.AccessToken}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	eventually(t, 60*time.Second, "the sidecar to refuse the revoked token", func() bool {
		req, _ := http.NewRequest(http.MethodGet, d.rs.URL+"/orders", nil)
		req.Header.Set("Authorization", "Bearer "+old.AccessToken)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusUnauthorized
	})
	for len(d.bodies) > 0 { // the probes that went through before the revocation arrived
		<-d.bodies
	}
	reqs, refused := d.rsReqs.Load(), d.rs401.Load()
	// One 401, one refresh, one retry with the same body.
	if code, err := d.post(hc, `{"n":1}`); err != nil || code != 200 {
		t.Fatalf("after revocation: %d %v", code, err)
	}
	if d.rsReqs.Load()-reqs != 2 || d.rs401.Load()-refused != 1 || d.rotations() != 1 {
		t.Fatalf("%d requests, %d refused, %d rotations: want 2, 1, 1", d.rsReqs.Load()-reqs, d.rs401.Load()-refused, d.rotations())
	}
	if got := <-d.bodies; got != `{"n":1}` {
		t.Fatalf("the retry sent %q", got)
	}
}

func TestIssuer401RetriedOnlyOnce(t *testing.T) {
	// The sidecar verifies another issuer's tokens: it refuses every token of this one.
	d := newDeployment(t, deploymentOpts{otherIssuer: true})
	_, hc := d.transport(&client.MemoryStore{}, nil, nil)
	code, err := d.post(hc, "{}")
	if err != nil || code != http.StatusUnauthorized {
		t.Fatalf("got %d %v, want the sidecar's 401", code, err)
	}
	if d.rsReqs.Load() != 2 || d.rotations() != 1 {
		t.Fatalf("%d requests, %d rotations: want 2 and 1 (one refresh, one retry)", d.rsReqs.Load(), d.rotations())
	}
}

func TestIssuerRevokedSessionEndsWithAClearError(t *testing.T) {
	d := newDeployment(t, deploymentOpts{})
	store := &client.MemoryStore{}
	_, hc := d.transport(store, nil, nil)
	tok, _ := store.Load(context.Background())
	// Logging out everywhere: the refresh token is revoked (RFC 7009), which revokes the
	// session's access tokens too.
	res, err := http.PostForm("http://"+d.addr+d.prefix+"/revoke", url.Values{"token": {tok.RefreshToken}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	eventually(t, 60*time.Second, "the sidecar to refuse the session", func() bool {
		req, _ := http.NewRequest(http.MethodGet, d.rs.URL+"/orders", nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusUnauthorized
	})
	reqs := d.rsReqs.Load()
	_, err = d.post(hc, "{}")
	if !errors.Is(err, client.ErrSessionEnded) {
		t.Fatalf("error %v, want ErrSessionEnded", err)
	}
	t.Logf("the error a caller sees: %v", err)
	if d.rsReqs.Load()-reqs != 1 || d.rotations() != 0 {
		t.Fatalf("%d requests, %d rotations: want 1 and 0", d.rsReqs.Load()-reqs, d.rotations())
	}
}
