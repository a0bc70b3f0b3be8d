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
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyward-dev/keyward/api/v1alpha1"
)

// TestMintRefreshRotation: a login service mints a session; every refresh rotates the
// refresh token; the verifier sidecar accepts every access token.
func TestMintRefreshRotation(t *testing.T) {
	for _, kind := range storeKinds() {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{store: kind})
			v := f.verifier()
			m := f.mustMint("alice", "read write")
			tok := m.tokens
			if tok.TokenType != "Bearer" || tok.ExpiresIn != 600 || tok.Scope != "read write" || !isRefreshToken(tok.RefreshToken) {
				t.Fatalf("mint response %+v", tok)
			}
			c := claims(t, tok.AccessToken)
			sid, _ := c["sid"].(string)
			if c["iss"] != f.issuer || c["sub"] != "alice" || c["aud"] != "api" || c["client_id"] != "web" || c["scope"] != "read write" ||
				sid == "" || c["jti"] == "" || c["exp"].(float64)-c["iat"].(float64) != 600 {
				t.Fatalf("claims %v", c)
			}
			if h := header(t, tok.AccessToken); h["typ"] != "at+jwt" || h["kid"] != f.state().signer.KID() || h["alg"] != "ES256" {
				t.Fatalf("header %v", h)
			}
			if code := v.status("Bearer "+tok.AccessToken, nil); code != http.StatusOK {
				t.Fatalf("the verifier answered %d for a minted token", code)
			}

			rt := tok.RefreshToken
			seen := map[string]bool{rt: true}
			for i := range 3 {
				r := f.mustRefresh(rt)
				if seen[r.tokens.RefreshToken] || !isRefreshToken(r.tokens.RefreshToken) {
					t.Fatalf("refresh %d did not rotate the refresh token", i)
				}
				seen[r.tokens.RefreshToken] = true
				rc := claims(t, r.tokens.AccessToken)
				if rc["sid"] != sid || rc["sub"] != "alice" || rc["jti"] == c["jti"] || rc["scope"] != "read write" {
					t.Fatalf("refreshed claims %v", rc)
				}
				if code := v.status("Bearer "+r.tokens.AccessToken, nil); code != http.StatusOK {
					t.Fatalf("the verifier answered %d for a refreshed token", code)
				}
				rt = r.tokens.RefreshToken
			}
			fam, err := f.store.Family(context.Background(), sid)
			if err != nil || fam.Rotations != 3 || fam.Subject != "alice" || fam.Policy != f.ns+"/api" || !fam.Live(f.s.clock.Now()) {
				t.Fatalf("family %+v, %v", fam, err)
			}

			// Down-scoping a refresh narrows the access token, not the session.
			r := f.form(pathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"read"}}, nil)
			if r.status != http.StatusOK || claims(t, r.tokens.AccessToken)["scope"] != "read" {
				t.Fatalf("down-scoped refresh: %d %s", r.status, r.body)
			}
			rt = r.tokens.RefreshToken
			// A wider scope or another client is refused and spends nothing.
			expectError(t, f.form(pathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"read admin"}}, nil), 400, ErrInvalidScope)
			expectError(t, f.form(pathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"other"}}, nil), 400, ErrInvalidGrant)
			if r := f.mustRefresh(rt); claims(t, r.tokens.AccessToken)["scope"] != "read write" {
				t.Fatalf("the session's scope changed: %v", claims(t, r.tokens.AccessToken))
			}

			if got := testutil.ToFloat64(f.srv.metrics.Issued.WithLabelValues(f.ns+"/api", GrantMint)); got != 1 {
				t.Fatalf("issued{mint} = %v", got)
			}
			if got := testutil.ToFloat64(f.srv.metrics.Refreshed.WithLabelValues(f.ns+"/api", "rotated")); got != 5 {
				t.Fatalf("refreshes{rotated} = %v", got)
			}
			assertAuditHasNoTokens(t, f, tok.AccessToken, tok.RefreshToken, rt)
			if n := len(f.audit.records(t, AuditRefreshed)); n != 5 {
				t.Fatalf("%d refresh audit records, want 5", n)
			}
			if rec := f.audit.records(t, AuditIssued)[0]; rec.Subject != "alice" || rec.Session != sid || rec.Caller != f.ns+"/login" ||
				rec.Refresh != fingerprint(tok.RefreshToken) || rec.Access != fingerprint(tok.AccessToken) || rec.Source == "" {
				t.Fatalf("issuance audit record %+v", rec)
			}
		})
	}
}

func assertAuditHasNoTokens(t *testing.T, f *fixture, tokens ...string) {
	t.Helper()
	all := f.audit.String()
	for _, tok := range tokens {
		if strings.Contains(all, tok) || strings.Contains(all, strings.Split(tok, ".")[len(strings.Split(tok, "."))-1]) {
			t.Fatal("an audit record contains a token")
		}
	}
}

func TestMintRefused(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	login := f.saToken("login", DefaultAudience)
	ok := `{"sub":"alice","client_id":"web"}`
	tests := []struct {
		name, token, body string
		status            int
		code              string
	}{
		{"no credentials", "", ok, 401, ErrInvalidClient},
		{"a token for the API server", f.saToken("login", ""), ok, 401, ErrInvalidClient},
		{"garbage token", "not-a-token", ok, 401, ErrInvalidClient},
		{"not a mint client", f.saToken("stranger", DefaultAudience), ok, 403, ErrUnauthorizedClient},
		{"no sub", login, `{"client_id":"web"}`, 400, ErrInvalidRequest},
		{"no client_id", login, `{"sub":"alice"}`, 400, ErrInvalidRequest},
		{"unknown member", login, `{"sub":"alice","client_id":"web","admin":true}`, 400, ErrInvalidRequest},
		{"duplicate member", login, `{"sub":"alice","sub":"root","client_id":"web"}`, 400, ErrInvalidRequest},
		{"case-folded duplicate", login, `{"sub":"alice","SUB":"root","client_id":"web"}`, 400, ErrInvalidRequest},
		{"two documents", login, ok + ok, 400, ErrInvalidRequest},
		{"not an object", login, `["alice"]`, 400, ErrInvalidRequest},
		{"extra claims", login, `{"sub":"alice","client_id":"web","claims":{"role":"admin"}}`, 400, ErrInvalidRequest},
		{"scope not grantable", login, `{"sub":"alice","client_id":"web","scope":"read admin"}`, 400, ErrInvalidScope},
		{"dpop_jkt without DPoP", login, `{"sub":"alice","client_id":"web","dpop_jkt":"` + newDPoPKey(t).jkt + `"}`, 400, ErrInvalidRequest},
		{"control character", login, `{"sub":"al\u0000ice","client_id":"web"}`, 400, ErrInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.mintAs(tt.token, tt.body)
			expectError(t, r, tt.status, tt.code)
			if tt.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
	r := f.do(http.MethodPost, f.prefix+pathMint, "text/plain", ok, http.Header{"Authorization": {"Bearer " + login}})
	expectError(t, r, 400, ErrInvalidRequest)
	if n := len(f.audit.records(t, AuditRejected)); n != len(tests)+1 {
		t.Fatalf("%d rejection audit records, want %d", n, len(tests)+1)
	}
}

func TestTokenEndpointRefused(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	rt := f.mustMint("alice", "").tokens.RefreshToken
	form := "application/x-www-form-urlencoded"
	tests := []struct {
		name, contentType, body string
		status                  int
		code                    string
	}{
		{"no grant_type", form, "refresh_token=" + rt, 400, ErrInvalidRequest},
		{"unsupported grant", form, "grant_type=password&username=a&password=b", 400, ErrUnsupportedGrantType},
		{"authorization_code", form, "grant_type=authorization_code&code=x", 400, ErrUnsupportedGrantType},
		{"repeated parameter", form, "grant_type=refresh_token&refresh_token=" + rt + "&refresh_token=" + rt, 400, ErrInvalidRequest},
		{"JSON body", "application/json", `{"grant_type":"refresh_token"}`, 400, ErrInvalidRequest},
		{"bad encoding", form, "grant_type=refresh_token&refresh_token=%zz", 400, ErrInvalidRequest},
		{"no refresh token", form, "grant_type=refresh_token", 400, ErrInvalidRequest},
		{"malformed refresh token", form, "grant_type=refresh_token&refresh_token=abc", 400, ErrInvalidGrant},
		{"unknown refresh token", form, "grant_type=refresh_token&refresh_token=" + newRefreshToken(), 400, ErrInvalidGrant},
		{"exchange without subject", form, "grant_type=" + url.QueryEscape(GrantTokenExchange), 400, ErrInvalidRequest},
		{"too large", form, "grant_type=refresh_token&x=" + strings.Repeat("a", maxFormBytes), 413, ErrInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expectError(t, f.do(http.MethodPost, f.prefix+pathToken, tt.contentType, tt.body, nil), tt.status, tt.code)
		})
	}
	if r := f.do(http.MethodGet, f.prefix+pathToken, "", "", nil); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" {
		t.Fatalf("GET /token: %d %v", r.status, r.header)
	}
	for _, p := range []string{"/token", "/other/token", f.prefix + "/../" + f.ns + "/token", f.prefix + "//token", f.prefix + "/tokens"} {
		if r := f.do(http.MethodPost, p, form, "grant_type=refresh_token&refresh_token="+rt, nil); r.status != http.StatusNotFound {
			t.Fatalf("POST %s: %d, want 404", p, r.status)
		}
	}
	// None of it spent the token.
	f.mustRefresh(rt)
}

// TestTokenExchange: a workload exchanges its ServiceAccount token (TokenReview against
// the real API server) for an access token the verifier accepts.
func TestTokenExchange(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	v := f.verifier()
	exchange := func(subject string, extra url.Values) *response {
		vals := url.Values{"grant_type": {GrantTokenExchange}, "subject_token": {subject}, "subject_token_type": {TokenTypeJWT}}
		for k, x := range extra {
			vals[k] = x
		}
		return f.form(pathToken, vals, nil)
	}
	r := exchange(f.saToken("workload", DefaultAudience), nil)
	if r.status != http.StatusOK {
		t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	want := "system:serviceaccount:" + f.ns + ":workload"
	c := claims(t, r.tokens.AccessToken)
	if r.tokens.RefreshToken != "" || r.tokens.IssuedTokenType != TokenTypeAccessToken || r.tokens.TokenType != "Bearer" ||
		c["sub"] != want || c["client_id"] != want || c["scope"] != "read" || c["sid"] != nil {
		t.Fatalf("exchange response %+v claims %v", r.tokens, c)
	}
	if code := v.status("Bearer "+r.tokens.AccessToken, nil); code != http.StatusOK {
		t.Fatalf("the verifier answered %d for an exchanged token", code)
	}
	tok := f.saToken("workload", DefaultAudience)
	expectError(t, exchange(tok, url.Values{"scope": {"write"}}), 400, ErrInvalidScope)
	expectError(t, exchange(tok, url.Values{"audience": {"other"}}), 400, ErrInvalidTarget)
	expectError(t, exchange(tok, url.Values{"subject_token_type": {TokenTypeAccessToken}}), 400, ErrInvalidRequest)
	expectError(t, exchange(tok, url.Values{"actor_token": {tok}, "actor_token_type": {TokenTypeJWT}}), 400, ErrInvalidRequest)
	expectError(t, exchange(f.saToken("workload", ""), nil), 400, ErrInvalidRequest) // issued for the API server
	expectError(t, exchange(f.saToken("stranger", DefaultAudience), nil), 400, ErrInvalidRequest)
	expectError(t, exchange("eyJhbGciOiJub25lIn0.e30.", nil), 400, ErrInvalidRequest)
	if recs := f.audit.records(t, AuditRejected); len(recs) == 0 || recs[len(recs)-1].Reason != "subject_token" {
		t.Fatalf("rejection records %+v", recs)
	}
	if got := testutil.ToFloat64(f.srv.metrics.Issued.WithLabelValues(f.ns+"/api", "token_exchange")); got != 1 {
		t.Fatalf("issued{token_exchange} = %v", got)
	}

	// A policy without tokenExchange refuses the grant.
	g := newFixture(t, fixtureOpts{spec: func(s *v1alpha1.TokenPolicySpec) { s.Issuance.TokenExchange = nil }})
	vals := url.Values{"grant_type": {GrantTokenExchange}, "subject_token": {g.saToken("workload", DefaultAudience)}, "subject_token_type": {TokenTypeJWT}}
	expectError(t, g.form(pathToken, vals, nil), 400, ErrUnsupportedGrantType)
}
