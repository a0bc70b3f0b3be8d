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

// Package client is a Go client for services behind Keyward: an http.RoundTripper that
// sends the access token of a session, refreshes it before it expires with the Keyward
// token service (or any OAuth 2.0 server with the refresh_token grant), and keeps the
// rotating refresh token in a TokenStore.
//
//	store := &client.FileStore{Path: "/var/lib/app/token.json"}
//	tr, err := client.NewTransport(client.Config{
//		TokenURL: "https://auth.example/shop/token",
//		Store:    store,
//	})
//	httpClient := &http.Client{Transport: tr}
//
// The store must hold the session's first token (from the login service, which calls the
// token service's mint endpoint, or from a token exchange): Transport.SetToken, or a
// FileStore written beforehand.
//
// What the Transport does on every request:
//
//   - it attaches the access token: "Authorization: Bearer <token>", or, for a token of
//     type DPoP, "Authorization: DPoP <token>" with a fresh DPoP proof (htm, htu, iat,
//     jti, ath, and the server's nonce) signed by Config.DPoPKey;
//   - it refreshes between 75 % and 90 % of the token's lifetime (drawn per token), once
//     for all goroutines (single flight); while the token is still valid, only the
//     request that starts the refresh waits for it, at most EarlyRefreshWait, and a
//     failed refresh is retried after RetryInterval while requests go on with the valid
//     token; an expired token is refreshed before the request is sent;
//   - it stores the rotated refresh token before it sends the new access token;
//   - on a 401 it refreshes and retries once; on a 401 asking for a DPoP nonce
//     (WWW-Authenticate: DPoP error="use_dpop_nonce", RFC 9449 §9) it retries once with
//     the nonce of the DPoP-Nonce header. Requests with a body are retried only when the
//     body can be replayed (http.Request.GetBody, which http.NewRequest sets for
//     in-memory bodies).
//
// It never logs a token, and its errors never contain one.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

// Defaults of Config.
const (
	DefaultMinRefreshFraction = 0.75
	DefaultMaxRefreshFraction = 0.90
	DefaultRefreshTimeout     = 30 * time.Second
	DefaultRetryInterval      = 5 * time.Second
	DefaultEarlyRefreshWait   = 2 * time.Second
)

// Config configures a Transport. TokenURL and Store are required.
type Config struct {
	// TokenURL is the token endpoint as the server advertises it, e.g.
	// https://auth.example/shop/token (the Keyward token service: <issuer>/token). It is
	// also the htu of the DPoP proofs sent there, so it must be the advertised URL, not an
	// internal address of the same server.
	TokenURL string
	// ClientID and ClientSecret authenticate the client at the token endpoint: with a
	// secret, HTTP Basic (RFC 6749 §2.3.1); without, client_id is sent in the form when
	// set (a public client). The Keyward token service needs neither.
	ClientID     string
	ClientSecret string
	// Scope, when set, is requested at every refresh (a subset of the session's scope).
	Scope string
	// Store keeps the tokens.
	Store TokenStore
	// DPoPKey signs DPoP proofs: at the token endpoint on every refresh, and on every
	// request sent with a DPoP-bound access token. Nil: no DPoP.
	DPoPKey *DPoPKey
	// Clock reads the time (default: the real clock).
	Clock clock.PassiveClock
	// Base sends the requests (default http.DefaultTransport).
	Base http.RoundTripper
	// TokenTransport sends the token endpoint requests (default Base).
	TokenTransport http.RoundTripper
	// MinRefreshFraction and MaxRefreshFraction bound when a token is refreshed, as
	// fractions of its lifetime (defaults 0.75 and 0.90); each token draws its time
	// uniformly in between.
	MinRefreshFraction, MaxRefreshFraction float64
	// Jitter returns a number in [0, 1) for the draw (default math/rand/v2.Float64).
	Jitter func() float64
	// RefreshTimeout bounds one refresh (default 30 s). A refresh outlives the request
	// that started it: other requests wait for it, and a rotation cut short loses the
	// new refresh token.
	RefreshTimeout time.Duration
	// RetryInterval is how long after a failed refresh the next early refresh is tried
	// while the access token is still valid (default 5 s). An expired token is refreshed
	// on every request that needs it.
	RetryInterval time.Duration
	// EarlyRefreshWait is how long the request that starts a refresh of a token that is
	// due but still valid waits for it before it goes out with the valid token (default
	// 2 s); other requests never wait for an early refresh.
	EarlyRefreshWait time.Duration
	// Origins, when set, are the only origins ("https://api.example", scheme://host[:port])
	// that receive the token; requests elsewhere (a redirect to another host) are sent
	// without it.
	Origins []string
	// Log receives refreshes (V(1)) and failed refreshes; never tokens.
	Log logr.Logger
}

// Transport is an http.RoundTripper that authenticates requests with a session's access
// token and keeps it fresh. It is safe for concurrent use.
type Transport struct {
	cfg      Config
	clk      clock.PassiveClock
	tokenURL *url.URL
	base     http.RoundTripper
	tokenRT  http.RoundTripper
	dpop     *DPoPKey
	origins  map[string]bool
	log      logr.Logger

	mu      sync.Mutex
	loaded  bool
	gen     int     // counts SetToken calls: a refresh started before one is discarded
	cur     *Token  // the token in use; nil when the store is empty
	unsaved bool    // cur is a rotated token the store has not taken yet
	ended   error   // the server refused the refresh token (invalid_grant)
	flight  *flight // the refresh in progress
	retryAt time.Time

	nonceMu sync.Mutex
	nonces  map[string]string // origin → last DPoP-Nonce
}

// flight is one refresh; every caller that needs it waits on done.
type flight struct {
	done chan struct{}
	tok  *Token
	err  error
}

// NewTransport checks cfg and returns a Transport.
func NewTransport(cfg Config) (*Transport, error) {
	u, err := url.Parse(cfg.TokenURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("keyward client: TokenURL must be an absolute http(s) URL")
	}
	if cfg.Store == nil {
		return nil, errors.New("keyward client: no TokenStore")
	}
	if cfg.ClientSecret != "" && cfg.ClientID == "" {
		return nil, errors.New("keyward client: ClientSecret needs ClientID")
	}
	if cfg.MinRefreshFraction == 0 && cfg.MaxRefreshFraction == 0 {
		cfg.MinRefreshFraction, cfg.MaxRefreshFraction = DefaultMinRefreshFraction, DefaultMaxRefreshFraction
	}
	if cfg.MinRefreshFraction <= 0 || cfg.MaxRefreshFraction >= 1 || cfg.MinRefreshFraction > cfg.MaxRefreshFraction {
		return nil, errors.New("keyward client: refresh fractions must satisfy 0 < MinRefreshFraction <= MaxRefreshFraction < 1")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Jitter == nil {
		cfg.Jitter = rand.Float64
	}
	if cfg.RefreshTimeout <= 0 {
		cfg.RefreshTimeout = DefaultRefreshTimeout
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = DefaultRetryInterval
	}
	if cfg.EarlyRefreshWait <= 0 {
		cfg.EarlyRefreshWait = DefaultEarlyRefreshWait
	}
	t := &Transport{cfg: cfg, clk: cfg.Clock, tokenURL: u, base: cfg.Base, tokenRT: cfg.TokenTransport, dpop: cfg.DPoPKey,
		log: cfg.Log, nonces: map[string]string{}}
	if t.log.GetSink() == nil {
		t.log = logr.Discard()
	}
	if t.base == nil {
		t.base = http.DefaultTransport
	}
	if t.tokenRT == nil {
		t.tokenRT = t.base
	}
	if len(cfg.Origins) > 0 {
		t.origins = map[string]bool{}
		for _, o := range cfg.Origins {
			ou, err := url.Parse(o)
			if err != nil || ou.Host == "" || (ou.Path != "" && ou.Path != "/") {
				return nil, fmt.Errorf("keyward client: origin %q is not scheme://host[:port]", o)
			}
			t.origins[origin(ou)] = true
		}
	}
	return t, nil
}

// SetToken stores a new session's token (from a login or a token exchange) and uses it
// from now on. A token without RefreshAt gets one drawn over its remaining lifetime.
func (t *Transport) SetToken(ctx context.Context, tok *Token) error {
	if tok == nil || tok.AccessToken == "" {
		return errors.New("keyward client: SetToken needs an access token")
	}
	c := *tok
	t.drawRefresh(&c, t.clk.Now())
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.cfg.Store.Save(ctx, &c); err != nil {
		return err
	}
	// A refresh of the previous session still in flight must not overwrite this one.
	t.gen++
	t.cur, t.loaded, t.unsaved, t.ended, t.retryAt = &c, true, false, nil, time.Time{}
	return nil
}

// Token returns the access token to send now, refreshing first when it is due. The
// returned Token is a copy.
func (t *Transport) Token(ctx context.Context) (*Token, error) {
	tok, err := t.current(ctx, "")
	if err != nil {
		return nil, err
	}
	c := *tok
	return &c, nil
}

// drawRefresh gives a token without RefreshAt one: over its whole lifetime from issued.
func (t *Transport) drawRefresh(tok *Token, issued time.Time) {
	if tok.RefreshAt.IsZero() && !tok.Expiry.IsZero() {
		tok.RefreshAt = refreshTime(issued, tok.Expiry, t.cfg.MinRefreshFraction, t.cfg.MaxRefreshFraction, t.cfg.Jitter())
	}
}

// current returns the token to send. rejected is the access token a server just refused
// (401), which forces a refresh unless another goroutine already replaced it.
func (t *Transport) current(ctx context.Context, rejected string) (*Token, error) {
	t.mu.Lock()
	if err := t.loadLocked(ctx); err != nil {
		t.mu.Unlock()
		return nil, err
	}
	if t.unsaved { // store before use
		if err := t.cfg.Store.Save(ctx, t.cur); err != nil {
			t.mu.Unlock()
			return nil, fmt.Errorf("keyward client: storing the rotated refresh token failed, so the new access token is not used yet: %w", err)
		}
		t.unsaved = false
	}
	now := t.clk.Now()
	tok := t.cur
	if rejected != "" && tok != nil && tok.AccessToken != rejected {
		t.mu.Unlock()
		return tok, nil // refreshed meanwhile
	}
	need := rejected != "" || !tok.usable(now) // a refresh is needed before sending
	if !need && !tok.due(now) {
		t.mu.Unlock()
		return tok, nil
	}
	if t.ended != nil {
		t.mu.Unlock()
		if need {
			return nil, t.ended
		}
		return tok, nil
	}
	f := t.flight
	if f == nil {
		if !need && now.Before(t.retryAt) {
			t.mu.Unlock()
			return tok, nil // the last early refresh failed; retried after RetryInterval
		}
		if tok == nil || tok.RefreshToken == "" {
			t.mu.Unlock()
			switch {
			case tok == nil:
				return nil, ErrNoToken
			case !need:
				return tok, nil // nothing to refresh with; valid until it expires
			}
			return nil, errors.New("keyward client: the access token expired or was refused, and there is no refresh token")
		}
		f = t.startLocked(ctx, tok)
	} else if !need {
		t.mu.Unlock()
		return tok, nil // another goroutine is refreshing; the token is still valid
	}
	t.mu.Unlock()
	var early <-chan time.Time // a bound on waiting, not a clock reading: real time
	if !need {
		timer := time.NewTimer(t.cfg.EarlyRefreshWait)
		defer timer.Stop()
		early = timer.C
	}
	select {
	case <-f.done:
	case <-early:
		return tok, nil // the refresh goes on; this request goes out with the valid token
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if f.err != nil {
		if !need {
			return tok, nil // logged; the valid token goes out
		}
		return nil, f.err
	}
	return f.tok, nil
}

// loadLocked reads the store once.
func (t *Transport) loadLocked(ctx context.Context) error {
	if t.loaded {
		return nil
	}
	tok, err := t.cfg.Store.Load(ctx)
	switch {
	case errors.Is(err, ErrNoToken):
	case err != nil:
		return err
	default:
		t.drawRefresh(tok, t.clk.Now())
		t.cur = tok
	}
	t.loaded = true
	return nil
}

// startLocked starts a refresh from base. It runs on its own context (the caller's values,
// not its cancellation, bounded by RefreshTimeout): a rotation cut short when one caller
// gives up would spend the refresh token of every other caller.
func (t *Transport) startLocked(ctx context.Context, base *Token) *flight {
	f := &flight{done: make(chan struct{})}
	t.flight = f
	gen := t.gen
	go func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.RefreshTimeout)
		defer cancel()
		tok, err := t.refresh(rctx, base)
		t.mu.Lock()
		defer t.mu.Unlock()
		defer close(f.done)
		t.flight = nil
		if gen != t.gen {
			f.err = errors.New("keyward client: a new session was set while the old one was refreshing")
			return
		}
		if err != nil {
			f.err = &RefreshError{TokenURL: t.tokenURL.String(), Err: err}
			if errors.Is(err, ErrSessionEnded) {
				t.ended = f.err
			}
			t.retryAt = t.clk.Now().Add(t.cfg.RetryInterval)
			t.log.Info("Failed to refresh the access token", "tokenURL", t.tokenURL.String(), "error", err.Error())
			return
		}
		// Stored before anyone can send the new access token: with rotating refresh
		// tokens, the old one is already spent. Saves happen under t.mu, so they never
		// interleave with SetToken's.
		t.cur, t.retryAt = tok, time.Time{}
		if saveErr := t.cfg.Store.Save(rctx, tok); saveErr != nil {
			// Keep the new token in memory and send nothing until the store takes it.
			t.unsaved = true
			f.err = fmt.Errorf("keyward client: storing the rotated refresh token failed, so the new access token is not used yet: %w", saveErr)
			t.log.Info("Failed to store the rotated refresh token", "error", saveErr.Error())
			return
		}
		f.tok = tok
		t.log.V(1).Info("Refreshed the access token", "tokenType", tok.TokenType, "expiry", tok.Expiry, "refreshAt", tok.RefreshAt)
	}()
	return f
}

// refresh obtains a new token from base's refresh token. The store is read first: when
// another process sharing it has rotated the token meanwhile, its token is adopted (if
// not due) or refreshed, never the spent one.
func (t *Transport) refresh(ctx context.Context, base *Token) (*Token, error) {
	if stored, err := t.cfg.Store.Load(ctx); err == nil && stored.RefreshToken != "" && stored.RefreshToken != base.RefreshToken {
		now := t.clk.Now()
		t.drawRefresh(stored, now)
		if stored.AccessToken != base.AccessToken && stored.usable(now) && !stored.due(now) {
			return stored, nil
		}
		base = stored
	}
	tok, err := t.exchange(ctx, base.RefreshToken, base.Scope)
	if err != nil {
		return nil, err
	}
	t.drawRefresh(tok, t.clk.Now())
	return tok, nil
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.origins != nil && !t.origins[origin(req.URL)] {
		return t.base.RoundTrip(req)
	}
	ctx := req.Context()
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	tok, err := t.current(ctx, "")
	if err != nil {
		closeBody(req)
		return nil, err
	}
	nonceRetried, refreshed := false, false
	for attempt := 0; ; attempt++ {
		out, err := t.authorize(req, tok, attempt > 0)
		if err != nil {
			if attempt == 0 {
				closeBody(req)
			}
			return nil, err
		}
		res, err := t.base.RoundTrip(out)
		if err != nil {
			return nil, err
		}
		t.rememberNonce(req.URL, res)
		if res.StatusCode != http.StatusUnauthorized || !replayable {
			return res, nil
		}
		chs := parseChallenges(res.Header.Values("WWW-Authenticate"))
		switch {
		case wantsNonce(chs):
			if nonceRetried || !tok.isDPoP() || t.dpop == nil || res.Header.Get("DPoP-Nonce") == "" {
				return res, nil
			}
			nonceRetried = true
		case !refreshed:
			refreshed = true
			next, err := t.current(ctx, tok.AccessToken)
			if err != nil {
				drain(res)
				return nil, fmt.Errorf("keyward client: %s answered 401 and the token could not be refreshed: %w", origin(req.URL), err)
			}
			tok = next
		default:
			return res, nil // refused again after a refresh: the server's answer stands
		}
		drain(res)
	}
}

// authorize returns a copy of req carrying tok (and a DPoP proof for a DPoP token); a
// retry gets a fresh copy of the body.
func (t *Transport) authorize(req *http.Request, tok *Token, retry bool) (*http.Request, error) {
	out := req.Clone(req.Context())
	if retry && req.Body != nil && req.Body != http.NoBody {
		body, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("keyward client: replaying the request body: %w", err)
		}
		out.Body = body
	}
	if !tok.isDPoP() {
		out.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		return out, nil
	}
	if t.dpop == nil {
		return nil, errors.New("keyward client: the access token is DPoP-bound, and the client has no DPoP key")
	}
	proof, err := t.dpop.Proof(req.Method, req.URL, t.nonce(req.URL), tok.AccessToken, t.clk.Now())
	if err != nil {
		return nil, err
	}
	out.Header.Set("Authorization", "DPoP "+tok.AccessToken)
	out.Header.Set("DPoP", proof)
	return out, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// drain reads a little of a response body, so its connection can be reused, and closes it.
func drain(res *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	_ = res.Body.Close()
}
