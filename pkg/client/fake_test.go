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
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keyward-dev/keyward/internal/binding"
	"github.com/keyward-dev/keyward/pkg/client"
)

// fakeAS is an OAuth 2.0 token endpoint and a resource server sharing its token table,
// implementing what the client relies on: rotating refresh tokens (each usable once; a
// spent one replayed within the window gets the same answer, after it revokes the
// family), expires_in, DPoP-bound tokens with server nonces at the token endpoint
// (error use_dpop_nonce + DPoP-Nonce) and at the resource server (401 with
// WWW-Authenticate: DPoP error="use_dpop_nonce"), checked by Keyward's own DPoP checker.
// It also checks, on the first use of every access token, that the client's store
// already held the rotated refresh token.
type fakeAS struct {
	t     *testing.T
	clk   *clocktesting.FakeClock
	ttl   time.Duration
	store client.TokenStore // the client's store (store-before-use check)

	asNonce bool                 // the token endpoint requires DPoP nonces
	rsNonce bool                 // the resource server requires DPoP nonces
	asDPoP  *binding.DPoPChecker // with nonces
	rsDPoP  *binding.DPoPChecker
	asPlain *binding.DPoPChecker // without
	rsPlain *binding.DPoPChecker

	mu        sync.Mutex
	refresh   map[string]*rtState  // refresh token → state
	access    map[string]*atState  // access token → state
	families  map[string]bool      // family → revoked
	seen      map[string]bool      // access tokens the resource server has seen
	alwaysRej bool                 // the resource server refuses every token
	bodies    []string             // bodies the resource server received
	failures  []string             // store-before-use violations
	seq       int                  // issuance counter
	lastBody  map[string][]byte    // spent refresh token → the answer it got (replay window)
	spentAt   map[string]time.Time //

	refreshes atomic.Int64 // successful rotations
	tokenReqs atomic.Int64 // token endpoint requests
	rsReqs    atomic.Int64 // resource server requests
	down      atomic.Bool  // the token endpoint is unreachable (connections are refused)
	delay     atomic.Int64 // the token endpoint answers after this long (real time, ns)

	as, rs *httptest.Server
	asAddr string
}

type rtState struct {
	family string
	jkt    string
	seq    int
}

type atState struct {
	family  string
	exp     time.Time
	jkt     string
	seq     int
	revoked bool
}

const replayWindow = 2 * time.Second

func newFakeAS(t *testing.T, clk *clocktesting.FakeClock, ttl time.Duration) *fakeAS {
	f := &fakeAS{
		t: t, clk: clk, ttl: ttl,
		asDPoP:   binding.NewDPoPChecker(binding.DPoPOptions{RequireNonce: true}, clk),
		rsDPoP:   binding.NewDPoPChecker(binding.DPoPOptions{RequireNonce: true}, clk),
		asPlain:  binding.NewDPoPChecker(binding.DPoPOptions{}, clk),
		rsPlain:  binding.NewDPoPChecker(binding.DPoPOptions{}, clk),
		refresh:  map[string]*rtState{},
		access:   map[string]*atState{},
		families: map[string]bool{},
		seen:     map[string]bool{},
		lastBody: map[string][]byte{},
		spentAt:  map[string]time.Time{},
	}
	f.as = httptest.NewServer(http.HandlerFunc(f.token))
	f.asAddr = f.as.Listener.Addr().String()
	f.rs = httptest.NewServer(http.HandlerFunc(f.resource))
	t.Cleanup(func() { f.as.Close(); f.rs.Close() })
	return f
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// setDown makes the token endpoint unreachable (its listener closed: connection refused)
// or brings it back on the same address.
func (f *fakeAS) setDown(down bool) {
	f.t.Helper()
	if down == f.down.Load() {
		return
	}
	f.down.Store(down)
	if down {
		f.as.Close()
		return
	}
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", f.asAddr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		f.t.Fatalf("re-listening on %s: %v", f.asAddr, err)
	}
	f.as = httptest.NewUnstartedServer(http.HandlerFunc(f.token))
	f.as.Listener.Close()
	f.as.Listener = ln
	f.as.Start()
}

func (f *fakeAS) tokenURL() string { return "http://" + f.asAddr + "/token" }

// session mints a new session and returns its first token response body.
func (f *fakeAS) session(jkt string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	fam := randomString(8)
	f.families[fam] = false
	return f.issueLocked(fam, jkt)
}

func (f *fakeAS) issueLocked(fam, jkt string) []byte {
	f.seq++
	at, rt := "at-"+randomString(16), "rt-"+randomString(16)
	f.access[at] = &atState{family: fam, exp: f.clk.Now().Add(f.ttl), jkt: jkt, seq: f.seq}
	f.refresh[rt] = &rtState{family: fam, jkt: jkt, seq: f.seq}
	typ := "Bearer"
	if jkt != "" {
		typ = "DPoP"
	}
	b, _ := json.Marshal(map[string]any{"access_token": at, "token_type": typ, "expires_in": int64(f.ttl / time.Second),
		"refresh_token": rt, "scope": "read"})
	return b
}

func oauthError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `{"error":%q,"error_description":"fake"}`, code)
}

func (f *fakeAS) token(w http.ResponseWriter, r *http.Request) {
	f.tokenReqs.Add(1)
	time.Sleep(time.Duration(f.delay.Load()))
	if r.Method != http.MethodPost || r.URL.Path != "/token" || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		oauthError(w, 400, "invalid_request")
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "refresh_token" {
		oauthError(w, 400, "invalid_request")
		return
	}
	rt := r.PostForm.Get("refresh_token")
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.refresh[rt]
	if !ok {
		oauthError(w, 400, "invalid_grant")
		return
	}
	if st.jkt != "" {
		u, _ := url.Parse("http://" + f.asAddr + "/token")
		checker := f.asPlain
		if f.asNonce {
			checker = f.asDPoP
		}
		if _, err := checker.Check(r.Header.Get("DPoP"), r.Method, u, "", st.jkt); err != nil {
			var be *binding.Error
			if asBindingError(err, &be) && be.Reason == binding.ReasonNonce {
				w.Header().Set("DPoP-Nonce", f.asDPoP.Nonce())
				oauthError(w, 400, "use_dpop_nonce")
				return
			}
			oauthError(w, 400, "invalid_dpop_proof")
			return
		}
	}
	if f.families[st.family] {
		oauthError(w, 400, "invalid_grant")
		return
	}
	if at, spent := f.spentAt[rt]; spent {
		if f.clk.Since(at) <= replayWindow {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(f.lastBody[rt])
			return
		}
		f.families[st.family] = true // reuse: the family dies
		oauthError(w, 400, "invalid_grant")
		return
	}
	body := f.issueLocked(st.family, st.jkt)
	f.spentAt[rt], f.lastBody[rt] = f.clk.Now(), body
	f.refreshes.Add(1)
	if f.asNonce && st.jkt != "" {
		w.Header().Set("DPoP-Nonce", f.asDPoP.Nonce())
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}

func asBindingError(err error, be **binding.Error) bool {
	e, ok := err.(*binding.Error)
	if ok {
		*be = e
	}
	return ok
}

func (f *fakeAS) resource(w http.ResponseWriter, r *http.Request) {
	f.rsReqs.Add(1)
	body, _ := io.ReadAll(r.Body)
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	st, ok, rej := func() (*atState, bool, bool) {
		f.mu.Lock()
		defer f.mu.Unlock()
		st, ok := f.access[tok]
		if ok && !f.seen[tok] {
			f.seen[tok] = true
			f.checkStoredLocked(st)
		}
		f.bodies = append(f.bodies, string(body))
		return st, ok, f.alwaysRej
	}()
	deny := func(ch string) {
		w.Header().Set("WWW-Authenticate", ch)
		w.WriteHeader(http.StatusUnauthorized)
	}
	switch {
	case rej || !ok || st.revoked || !f.clk.Now().Before(st.exp) || f.isDead(st.family):
		deny(`Bearer error="invalid_token"`)
		return
	case st.jkt == "" && scheme != "Bearer", st.jkt != "" && scheme != "DPoP":
		deny(`Bearer error="invalid_token"`)
		return
	case st.jkt != "":
		u, _ := url.Parse("http://" + r.Host + r.URL.Path)
		checker := f.rsPlain
		if f.rsNonce {
			checker = f.rsDPoP
		}
		if _, err := checker.Check(r.Header.Get("DPoP"), r.Method, u, tok, st.jkt); err != nil {
			var be *binding.Error
			if asBindingError(err, &be) && be.Reason == binding.ReasonNonce {
				w.Header().Set("DPoP-Nonce", f.rsDPoP.Nonce())
				deny(`DPoP algs="ES256", error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`)
				return
			}
			deny(`DPoP error="invalid_dpop_proof"`)
			return
		}
	}
	_, _ = io.WriteString(w, "ok")
}

func (f *fakeAS) isDead(fam string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.families[fam]
}

// checkStoredLocked records a violation when the client sends an access token before
// its store holds that token's refresh token (or a newer one).
func (f *fakeAS) checkStoredLocked(st *atState) {
	if f.store == nil {
		return
	}
	stored, err := f.store.Load(context.Background())
	if err != nil {
		f.failures = append(f.failures, "store: "+err.Error())
		return
	}
	// The stored token must be this one or a later one (by issuance order).
	as, ok := f.access[stored.AccessToken]
	if !ok {
		f.failures = append(f.failures, fmt.Sprintf("access token #%d used while the store held an unknown token", st.seq))
		return
	}
	if as.seq < st.seq {
		f.failures = append(f.failures, fmt.Sprintf("access token #%d used while the store held token #%d", st.seq, as.seq))
	}
}

// revokeAccess makes the resource server refuse an access token.
func (f *fakeAS) revokeAccess(tok string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.access[tok].revoked = true
}

func (f *fakeAS) assertNoFailures() {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.failures {
		f.t.Error(m)
	}
}
