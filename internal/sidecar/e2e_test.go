package sidecar

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyward-dev/keyward/internal/bundle"
)

// TestEndToEndRotationUnderLoad runs the whole sidecar (proxy and admin listeners, the
// directory source with the kubelet layout, a real upstream) while bundles are swapped
// under concurrent load: a key rotation must not fail a single valid request, a
// revocation must take effect, and a malformed bundle must leave the last good one.
func TestEndToEndRotationUnderLoad(t *testing.T) {
	e := newEnv(t, envOpts{})
	keyA, keyB := e.key, newSigningKey(t)
	kd := newKubeletDir(t)
	kd.write(bundleDoc(t, 1, testPolicy(), bundle.Revocations{}, keyA))

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	src := &DirSource{Dir: kd.dir, Store: e.store, Clock: e.clk, Log: logr.Discard()}
	wg.Go(func() { _ = src.Run(ctx) })
	cfg := ServerConfig{ShutdownGrace: 5 * time.Second, ReadHeaderTimeout: 5 * time.Second}
	proxyLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var draining atomic.Bool
	wg.Go(func() {
		_ = Serve(ctx, cfg, NewProxyServer(cfg, e.handler), NewAdminServer(AdminHandler(e.store, e.metrics, &draining)),
			proxyLn, adminLn, &draining, e.metrics, logr.Discard())
	})
	proxyURL := "http://" + proxyLn.Addr().String()
	adminURL := "http://" + adminLn.Addr().String()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func(url, tok string) (int, string, error) {
		req, _ := http.NewRequest("GET", url, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	eventually(t, 10*time.Second, "/readyz 200", func() bool {
		code, _, _ := get(adminURL+"/readyz", "")
		return code == 200
	})

	mint := func(k *signingKey, n int) []string {
		var out []string
		for range n {
			out = append(out, k.token(t, claims()))
		}
		return out
	}
	tokensA, tokensB := mint(keyA, 20), mint(keyB, 20)
	var pool atomic.Pointer[[]string]
	pool.Store(&tokensA)

	// The load: workers send valid tokens until stopped.
	var total, failed atomic.Int64
	var failMu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var load sync.WaitGroup
	for w := range 6 {
		load.Go(func() {
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				toks := *pool.Load()
				code, _, err := get(proxyURL+"/items/"+fmt.Sprint(i), toks[i%len(toks)])
				total.Add(1)
				if err != nil || code != 200 {
					failed.Add(1)
					failMu.Lock()
					failures = append(failures, fmt.Sprintf("status %d err %v", code, err))
					failMu.Unlock()
				}
			}
		})
	}
	// progress waits until the load has sent n more requests.
	progress := func(n int64) {
		t.Helper()
		target := total.Load() + n
		eventually(t, 30*time.Second, "load progress", func() bool { return total.Load() >= target })
	}
	var loading atomic.Bool
	loading.Store(true)
	swap := func(gen int64, p bundle.Policy, rev bundle.Revocations, keys ...*signingKey) {
		t.Helper()
		if loading.Load() {
			progress(50)
		}
		kd.write(bundleDoc(t, gen, p, rev, keys...))
		eventually(t, 10*time.Second, fmt.Sprintf("generation %d", gen), func() bool { return generation(e.store) == gen })
		if loading.Load() {
			progress(50)
		}
	}

	// Rotation: B is pre-published next to A, then signs; A stays published (retired).
	swap(2, testPolicy(), bundle.Revocations{}, keyA, keyB)
	both := append(append([]string{}, tokensA...), tokensB...)
	pool.Store(&both)
	unrelated := bundle.Revocations{JTI: []bundle.Revoked{{Value: "someone-else", Expires: testNow.Unix() + 600}}}
	swap(3, testPolicy(), unrelated, keyB, keyA)
	p4 := testPolicy()
	p4.Routes = append(p4.Routes, bundle.Route{Path: "/reports/*", Scopes: []string{"reports"}})
	swap(4, p4, unrelated, keyB, keyA)
	swap(5, p4, bundle.Revocations{}, keyA, keyB)
	close(stop)
	load.Wait()
	loading.Store(false)

	t.Logf("%d requests under load across 4 bundle swaps", total.Load())
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d valid requests failed during rotation, e.g. %v", n, total.Load(), failures[:min(len(failures), 5)])
	}

	// Revocation: the token's jti is revoked by the next bundle.
	victim, bystander := tokensA[0], tokensB[0]
	victimJTI := jtiOf(t, e, victim)
	swap(6, p4, bundle.Revocations{JTI: []bundle.Revoked{{Value: victimJTI, Expires: testNow.Unix() + 600}}}, keyA, keyB)
	if code, _, err := get(proxyURL+"/x", victim); err != nil || code != 401 {
		t.Fatalf("revoked token: %d %v", code, err)
	}
	if a := e.lastAudit(); a.Reason != "revoked" || a.TokenSHA256 != TokenFingerprint(victim) || a.Generation != 6 {
		t.Errorf("audit = %+v", a)
	}
	if code, _, _ := get(proxyURL+"/x", bystander); code != 200 {
		t.Fatalf("other token after the revocation: %d", code)
	}

	// A malformed bundle: refused, generation 6 stays, tokens keep working.
	kd.write([]byte(`{"format":"keyward.dev/bundle/v1","generation":7,"hash":"sha256:`))
	eventually(t, 10*time.Second, "refusal", func() bool {
		return testutil.ToFloat64(e.metrics.BundleRefusals.WithLabelValues(SourceDir, "decode")) == 1
	})
	if code, _, _ := get(proxyURL+"/x", bystander); code != 200 || generation(e.store) != 6 {
		t.Fatalf("after a malformed bundle: %d, generation %d", code, generation(e.store))
	}
	if code, _, _ := get(proxyURL+"/x", victim); code != 401 {
		t.Fatalf("revoked token after a malformed bundle: %d", code)
	}

	// The admin port exposes what is in force.
	code, metrics, err := get(adminURL+"/metrics", "")
	if err != nil || code != 200 {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	for _, want := range []string{
		"keyward_verifier_bundle_generation 6",
		`keyward_verifier_bundle_info{hash="` + e.store.Current().Hash + `"} 1`,
		`keyward_verifier_bundle_refusals_total{reason="decode",source="dir"} 1`,
		`keyward_verifier_bundle_reloads_total{source="dir"} 6`,
		`keyward_verifier_requests_total{outcome="rejected",reason="revoked"}`,
		"keyward_verifier_verify_duration_seconds_bucket",
		"keyward_verifier_ready 1",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, _, _ := get(adminURL+"/healthz", ""); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
}

// jtiOf verifies tok with the bundle in force and returns its jti.
func jtiOf(t testing.TB, e *env, tok string) string {
	t.Helper()
	c, err := e.store.Current().Verifier.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	return c.JTI
}
