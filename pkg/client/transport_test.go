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

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keyward-dev/keyward/pkg/client"
)

// setup is one test's world: the fake server, a fake clock, a memory store and a
// Transport seeded with a new session (bound to key when not nil).
type setup struct {
	t     *testing.T
	clk   *clocktesting.FakeClock
	as    *fakeAS
	store *client.MemoryStore
	tr    *client.Transport
	http  *http.Client
	key   *client.DPoPKey
	logs  *bytes.Buffer
}

func newSetup(t *testing.T, ttl time.Duration, key *client.DPoPKey, mutate func(*client.Config)) *setup {
	t.Helper()
	s := &setup{t: t, clk: clocktesting.NewFakeClock(time.Unix(1_800_000_000, 0)), store: &client.MemoryStore{}, key: key, logs: &bytes.Buffer{}}
	s.as = newFakeAS(t, s.clk, ttl)
	s.as.store = s.store
	var mu sync.Mutex
	cfg := client.Config{
		TokenURL: s.as.tokenURL(), Store: s.store, DPoPKey: key, Clock: s.clk,
		Jitter: func() float64 { return 0 }, // refresh at exactly 75 % of the lifetime
		Log: funcr.New(func(prefix, args string) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintln(s.logs, prefix, args)
		}, funcr.Options{Verbosity: 1}),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	var err error
	if s.tr, err = client.NewTransport(cfg); err != nil {
		t.Fatal(err)
	}
	jkt := ""
	if key != nil {
		jkt = key.Thumbprint()
	}
	tok, err := client.ParseTokenResponse(s.as.session(jkt), s.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.tr.SetToken(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	s.http = &http.Client{Transport: s.tr}
	t.Cleanup(func() {
		s.as.assertNoFailures()
		s.assertNoTokensLogged()
	})
	return s
}

// get sends GET / to the resource server and returns the status.
func (s *setup) get() (int, error) {
	res, err := s.http.Get(s.as.rs.URL + "/orders?id=1")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode, nil
}

func (s *setup) mustGet() {
	s.t.Helper()
	code, err := s.get()
	if err != nil || code != http.StatusOK {
		s.t.Fatalf("GET: %d, %v", code, err)
	}
}

func (s *setup) stored() *client.Token {
	s.t.Helper()
	tok, err := s.store.Load(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// assertNoTokensLogged fails when any token the fake server issued appears in the logs.
func (s *setup) assertNoTokensLogged() {
	s.as.mu.Lock()
	defer s.as.mu.Unlock()
	logs := s.logs.String()
	for tok := range s.as.access {
		if strings.Contains(logs, tok) {
			s.t.Error("an access token was logged")
		}
	}
	for tok := range s.as.refresh {
		if strings.Contains(logs, tok) {
			s.t.Error("a refresh token was logged")
		}
	}
}

func TestBearerRefreshesBetween75And90PercentOfTheLifetime(t *testing.T) {
	s := newSetup(t, 100*time.Second, nil, nil)
	first := s.stored()
	s.mustGet()
	s.clk.Step(74 * time.Second)
	s.mustGet()
	if n := s.as.refreshes.Load(); n != 0 {
		t.Fatalf("refreshed %d times before 75 %% of the lifetime", n)
	}
	s.clk.Step(2 * time.Second) // 76 s: due
	s.mustGet()
	if n := s.as.refreshes.Load(); n != 1 {
		t.Fatalf("refreshes at 76 %%: %d, want 1", n)
	}
	second := s.stored()
	if second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
		t.Fatal("the store does not hold the rotated tokens")
	}
	if want := s.clk.Now().Add(100 * time.Second); !second.Expiry.Equal(want) {
		t.Fatalf("expiry %s, want %s", second.Expiry, want)
	}
	if want := s.clk.Now().Add(75 * time.Second); !second.RefreshAt.Equal(want) {
		t.Fatalf("refreshAt %s, want %s", second.RefreshAt, want)
	}
	if !strings.Contains(s.logs.String(), "Refreshed the access token") {
		t.Fatalf("no V(1) log of the refresh: %s", s.logs)
	}
}

func TestJitterSpreadsRefreshTimes(t *testing.T) {
	for _, tc := range []struct {
		u    float64
		want time.Duration
	}{{0, 75 * time.Second}, {0.5, 82500 * time.Millisecond}, {0.999999, 89999990 * time.Microsecond}} {
		s := newSetup(t, 100*time.Second, nil, func(c *client.Config) { c.Jitter = func() float64 { return tc.u } })
		got := s.stored().RefreshAt.Sub(s.clk.Now())
		if d := got - tc.want; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("jitter %v: refresh after %s, want %s", tc.u, got, tc.want)
		}
	}
}

func TestLongTaskAcrossManyLifetimes(t *testing.T) {
	s := newSetup(t, 60*time.Second, nil, func(c *client.Config) { c.Jitter = nil }) // real jitter
	for i := 0; i < 600; i++ {                                                       // 600 requests, 2 s apart: 20 lifetimes
		s.mustGet()
		s.clk.Step(2 * time.Second)
	}
	n := s.as.refreshes.Load()
	// 1200 s at one refresh every 45-54 s of the lifetime, rounded up to the 2 s
	// between requests.
	if n < 1200/56 || n > 1200/45+1 {
		t.Fatalf("%d refreshes over 1200 s with a 60 s lifetime, want 21-27", n)
	}
	if rs := s.as.rsReqs.Load(); rs != 600 {
		t.Fatalf("the resource server saw %d requests, want 600 (no 401 retries)", rs)
	}
}

func TestConcurrentCallersShareOneRefresh(t *testing.T) {
	s := newSetup(t, 60*time.Second, nil, nil)
	for round := 1; round <= 3; round++ {
		s.clk.Step(61 * time.Second) // expired: every caller needs the refresh
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if code, err := s.get(); err != nil || code != 200 {
					errs <- fmt.Errorf("%d %v", code, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := s.as.refreshes.Load(); n != int64(round) {
			t.Fatalf("round %d: %d refreshes in total, want exactly one per expiry", round, n)
		}
	}
}

func TestConcurrentCallersDuringAnEarlyRefresh(t *testing.T) {
	s := newSetup(t, 60*time.Second, nil, nil)
	s.clk.Step(50 * time.Second) // due, still valid
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, err := s.get(); err != nil || code != 200 {
				t.Errorf("%d %v", code, err)
			}
		}()
	}
	wg.Wait()
	if n := s.as.refreshes.Load(); n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}
}

func TestSlowEarlyRefreshDoesNotHoldRequests(t *testing.T) {
	s := newSetup(t, 60*time.Second, nil, func(c *client.Config) { c.EarlyRefreshWait = 50 * time.Millisecond })
	old := s.stored().AccessToken
	s.as.delay.Store(int64(time.Second))
	s.clk.Step(50 * time.Second) // due, still valid
	start := time.Now()
	s.mustGet()
	if d := time.Since(start); d > 700*time.Millisecond {
		t.Fatalf("the request waited %s for a refresh it did not need", d)
	}
	if n := s.as.refreshes.Load(); n != 0 {
		t.Fatalf("%d refreshes finished already", n)
	}
	// The refresh goes on in the background and takes over when it completes.
	deadline := time.Now().Add(5 * time.Second)
	for s.as.refreshes.Load() != 1 || s.stored().AccessToken == old {
		if time.Now().After(deadline) {
			t.Fatal("the background refresh did not complete")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.mustGet()
	if n := s.as.tokenReqs.Load(); n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}
}

func TestSetTokenWinsOverARefreshInFlight(t *testing.T) {
	s := newSetup(t, 60*time.Second, nil, nil)
	s.as.delay.Store(int64(300 * time.Millisecond))
	s.clk.Step(61 * time.Second) // expired: the next request refreshes and waits
	done := make(chan error, 1)
	go func() { _, err := s.tr.Token(context.Background()); done <- err }()
	for s.as.tokenReqs.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	// A new login meanwhile (e.g. the user signed in again).
	fresh, _ := client.ParseTokenResponse(s.as.session(""), s.clk.Now())
	if err := s.tr.SetToken(context.Background(), fresh); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("the caller waiting for the old session's refresh got no error")
	}
	if got := s.stored(); got.AccessToken != fresh.AccessToken || got.RefreshToken != fresh.RefreshToken {
		t.Fatal("the old session's refresh overwrote the new session in the store")
	}
	tok, err := s.tr.Token(context.Background())
	if err != nil || tok.AccessToken != fresh.AccessToken {
		t.Fatalf("token %v, %v: want the new session's", tok, err)
	}
	s.mustGet()
}

func TestDueTokenWithoutRefreshTokenIsUsedUntilItExpires(t *testing.T) {
	s := newSetup(t, 60*time.Second, nil, nil)
	tok := s.stored()
	tok.RefreshToken = ""
	tok.RefreshAt = time.Time{}
	if err := s.tr.SetToken(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	s.clk.Step(50 * time.Second) // due, valid
	s.mustGet()
	s.clk.Step(20 * time.Second) // expired
	if _, err := s.get(); err == nil || !strings.Contains(err.Error(), "no refresh token") {
		t.Fatalf("error %v", err)
	}
}

func TestRetryOnceAfter401WithAFreshToken(t *testing.T) {
	s := newSetup(t, 60*time.Second, nil, nil)
	s.as.revokeAccess(s.stored().AccessToken)
	// A POST with a replayable body: the retry must send the same body.
	res, err := s.http.Post(s.as.rs.URL+"/orders", "application/json", strings.NewReader(`{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if n := s.as.refreshes.Load(); n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}
	if got := s.as.bodies; len(got) != 2 || got[0] != `{"n":1}` || got[1] != `{"n":1}` {
		t.Fatalf("bodies %q: the retry must replay the body", got)
	}
}

func TestRetryAfter401OnlyOnce(t *testing.T) {
	s := newSetup(t, 60*time.Second, nil, nil)
	s.as.mu.Lock()
	s.as.alwaysRej = true
	s.as.mu.Unlock()
	code, err := s.get()
	if err != nil || code != 401 {
		t.Fatalf("got %d %v, want the server's 401", code, err)
	}
	if rs, n := s.as.rsReqs.Load(), s.as.refreshes.Load(); rs != 2 || n != 1 {
		t.Fatalf("%d requests and %d refreshes, want 2 and 1", rs, n)
	}
}

func TestNoRetryForABodyThatCannotBeReplayed(t *testing.T) {
	s := newSetup(t, 60*time.Second, nil, nil)
	s.as.revokeAccess(s.stored().AccessToken)
	req, _ := http.NewRequest(http.MethodPost, s.as.rs.URL+"/orders", io.NopCloser(strings.NewReader("stream")))
	req.GetBody = nil
	res, err := s.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 || s.as.rsReqs.Load() != 1 || s.as.refreshes.Load() != 0 {
		t.Fatalf("status %d after %d requests, %d refreshes: want the 401, unretried", res.StatusCode, s.as.rsReqs.Load(), s.as.refreshes.Load())
	}
}

func TestDPoPBoundTokensAndNonces(t *testing.T) {
	key, err := client.GenerateDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	s := newSetup(t, 60*time.Second, key, nil)
	s.as.asNonce, s.as.rsNonce = true, true

	// Resource server: the first request has no nonce, is refused with use_dpop_nonce,
	// and is retried once with it; the next request carries it from the start.
	s.mustGet()
	if n := s.as.rsReqs.Load(); n != 2 {
		t.Fatalf("%d resource requests, want 2 (one nonce retry)", n)
	}
	s.mustGet()
	if n := s.as.rsReqs.Load(); n != 3 {
		t.Fatalf("%d resource requests, want 3 (the nonce is remembered)", n)
	}
	// Token endpoint: the same at the first refresh, then the nonce of its last answer.
	s.clk.Step(46 * time.Second)
	s.mustGet()
	if n, reqs := s.as.refreshes.Load(), s.as.tokenReqs.Load(); n != 1 || reqs != 2 {
		t.Fatalf("%d refreshes in %d token requests, want 1 in 2 (one nonce retry)", n, reqs)
	}
	s.clk.Step(46 * time.Second)
	s.mustGet()
	if n, reqs := s.as.refreshes.Load(), s.as.tokenReqs.Load(); n != 2 || reqs != 3 {
		t.Fatalf("%d refreshes in %d token requests, want 2 in 3", n, reqs)
	}
	if tok := s.stored(); tok.TokenType != client.TokenTypeDPoP {
		t.Fatalf("token type %q", tok.TokenType)
	}
}

func TestNonceRetryOnlyOnce(t *testing.T) {
	key, _ := client.GenerateDPoPKey()
	s := newSetup(t, 60*time.Second, key, nil)
	s.as.rsNonce = true
	// A server that wants a nonce but never accepts one: the rotation of nonces every
	// request is simulated by a nonce that is stale by the time the retry arrives.
	var wrap http.RoundTripper = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		res, err := http.DefaultTransport.RoundTrip(r)
		if err == nil && res.StatusCode == 401 {
			res.Header.Set("DPoP-Nonce", "stale-"+randomString(4))
		}
		return res, err
	})
	tr, err := client.NewTransport(client.Config{TokenURL: s.as.tokenURL(), Store: s.store, DPoPKey: key, Clock: s.clk, Base: wrap})
	if err != nil {
		t.Fatal(err)
	}
	res, err := (&http.Client{Transport: tr}).Get(s.as.rs.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 || s.as.rsReqs.Load() != 2 {
		t.Fatalf("status %d after %d requests: want the 401 after one nonce retry", res.StatusCode, s.as.rsReqs.Load())
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestTokenEndpointUnreachableThenBack(t *testing.T) {
	s := newSetup(t, 60*time.Second, nil, func(c *client.Config) { c.RetryInterval = 10 * time.Second })
	before := s.stored()
	s.as.setDown(true)

	// Due but valid: the request goes out with the valid token; one attempt (plus its
	// immediate retry), then none until RetryInterval has passed.
	s.clk.Step(50 * time.Second)
	s.mustGet()
	s.mustGet()
	if !strings.Contains(s.logs.String(), "Failed to refresh the access token") {
		t.Fatalf("the failed early refresh was not logged: %s", s.logs)
	}

	// Expired: the request fails with a clear error, and the refresh token is kept.
	s.clk.Step(20 * time.Second)
	_, err := s.get()
	var re *client.RefreshError
	if !errors.As(err, &re) || errors.Is(err, client.ErrSessionEnded) {
		t.Fatalf("error %v, want a *client.RefreshError", err)
	}
	if !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "the refresh token is kept") {
		t.Fatalf("unclear error: %v", err)
	}
	if after := s.stored(); after.RefreshToken != before.RefreshToken {
		t.Fatal("the refresh token was lost")
	}

	s.as.setDown(false)
	s.mustGet()
	if n := s.as.refreshes.Load(); n != 1 {
		t.Fatalf("%d refreshes after recovery, want 1", n)
	}
}

func TestSessionEnded(t *testing.T) {
	s := newSetup(t, 60*time.Second, nil, nil)
	s.as.mu.Lock()
	for fam := range s.as.families {
		s.as.families[fam] = true
	}
	s.as.mu.Unlock()
	s.clk.Step(61 * time.Second)
	_, err := s.get()
	if !errors.Is(err, client.ErrSessionEnded) {
		t.Fatalf("error %v, want ErrSessionEnded", err)
	}
	reqs := s.as.tokenReqs.Load()
	if _, err := s.get(); !errors.Is(err, client.ErrSessionEnded) {
		t.Fatalf("second error %v", err)
	}
	if s.as.tokenReqs.Load() != reqs {
		t.Fatal("a refused refresh token was presented again")
	}
}

// failingStore refuses to save while fail is set.
type failingStore struct {
	client.MemoryStore
	mu   sync.Mutex
	fail bool
}

func (f *failingStore) Save(ctx context.Context, t *client.Token) error {
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail {
		return errors.New("disk full")
	}
	return f.MemoryStore.Save(ctx, t)
}

func TestRotatedTokenIsStoredBeforeUse(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1_800_000_000, 0))
	as := newFakeAS(t, clk, 60*time.Second)
	st := &failingStore{}
	as.store = st
	tr, _ := client.NewTransport(client.Config{TokenURL: as.tokenURL(), Store: st, Clock: clk})
	tok, _ := client.ParseTokenResponse(as.session(""), clk.Now())
	if err := tr.SetToken(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: tr}
	clk.Step(61 * time.Second)
	st.mu.Lock()
	st.fail = true
	st.mu.Unlock()
	res, err := hc.Get(as.rs.URL)
	if err == nil {
		res.Body.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "storing the rotated refresh token failed") {
		t.Fatalf("error %v", err)
	}
	if as.rsReqs.Load() != 0 {
		t.Fatal("the new access token was sent before it was stored")
	}
	st.mu.Lock()
	st.fail = false
	st.mu.Unlock()
	res, err = hc.Get(as.rs.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || as.refreshes.Load() != 1 {
		t.Fatalf("status %d, %d refreshes: the rotated token must be kept in memory and used once stored", res.StatusCode, as.refreshes.Load())
	}
	as.assertNoFailures()
}

func TestTokenGoesOnlyToConfiguredOrigins(t *testing.T) {
	s := newSetup(t, 60*time.Second, nil, func(c *client.Config) { c.Origins = []string{"https://api.example"} })
	code, err := s.get() // the fake resource server is not an allowed origin
	if err != nil || code != 401 {
		t.Fatalf("got %d %v: the token must not be sent to another origin", code, err)
	}
}

func TestOtherProcessRotatedTheStoredToken(t *testing.T) {
	s := newSetup(t, 60*time.Second, nil, nil)
	// Another process with the same store refreshes first.
	other, _ := client.NewTransport(client.Config{TokenURL: s.as.tokenURL(), Store: s.store, Clock: s.clk})
	s.clk.Step(50 * time.Second)
	if _, err := other.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	// This one must adopt it rather than present the spent refresh token.
	s.mustGet()
	if n := s.as.refreshes.Load(); n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}
	s.clk.Step(55 * time.Second) // due again; presenting the spent token now would be a reuse
	s.mustGet()
	if n := s.as.refreshes.Load(); n != 2 {
		t.Fatalf("%d refreshes, want 2", n)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []client.Config{
		{TokenURL: "/token", Store: &client.MemoryStore{}},
		{TokenURL: "https://a/token"},
		{TokenURL: "https://a/token", Store: &client.MemoryStore{}, ClientSecret: "x"},
		{TokenURL: "https://a/token", Store: &client.MemoryStore{}, MinRefreshFraction: 0.9, MaxRefreshFraction: 0.8},
		{TokenURL: "https://a/token", Store: &client.MemoryStore{}, Origins: []string{"https://a/path"}},
	} {
		if _, err := client.NewTransport(c); err == nil {
			t.Errorf("%+v: no error", c.TokenURL)
		}
	}
}

func TestEmptyStore(t *testing.T) {
	tr, _ := client.NewTransport(client.Config{TokenURL: "https://a/token", Store: &client.MemoryStore{}})
	if _, err := tr.Token(context.Background()); !errors.Is(err, client.ErrNoToken) {
		t.Fatalf("error %v, want ErrNoToken", err)
	}
}

func TestTokenIsRedacted(t *testing.T) {
	tok := client.Token{AccessToken: "secret-access", RefreshToken: "secret-refresh", TokenType: "Bearer"}
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s", tok, tok, tok, &tok), fmt.Sprintf("%v", &tok)} {
		if strings.Contains(s, "secret") {
			t.Fatalf("a token was printed: %s", s)
		}
	}
}
