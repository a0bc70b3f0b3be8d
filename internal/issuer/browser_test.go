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
	"testing"
	"time"

	"github.com/keyward-dev/keyward/api/v1alpha1"
)

// TestBrowserMode: the refresh token lives in an HttpOnly, Secure, SameSite=Strict
// cookie scoped to the refresh path, never in a body; cookie-authenticated requests need
// the CSRF header; logout revokes the session and clears the cookie.
func TestBrowserMode(t *testing.T) {
	f := newFixture(t, fixtureOpts{spec: func(s *v1alpha1.TokenPolicySpec) {
		s.Issuance.Cookie = &v1alpha1.CookieSpec{}
	}})
	v := f.verifier()
	m := f.mustMint("grace", "read")
	if m.tokens.RefreshToken != "" {
		t.Fatal("browser mode returned the refresh token in the body")
	}
	c := m.cookie(DefaultCookieName)
	checkCookie := func(c *http.Cookie) {
		t.Helper()
		if c == nil || !isRefreshToken(c.Value) || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode ||
			c.Path != f.prefix+"/token" || c.Domain != "" || c.MaxAge < int((719*time.Hour).Seconds()) {
			t.Fatalf("refresh cookie %+v", c)
		}
	}
	checkCookie(c)
	browser := func(value string, extra http.Header) http.Header {
		h := http.Header{"Cookie": {DefaultCookieName + "=" + value}, CSRFHeader: {"1"}, "Sec-Fetch-Site": {"same-origin"}}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	refresh := func(hdr http.Header) *response {
		return f.form(pathToken, url.Values{"grant_type": {"refresh_token"}}, hdr)
	}

	// Refused, and nothing spent: no CSRF header, a cross-site request, the token in the
	// body, two cookies of the name (one planted by a sibling domain).
	expectError(t, refresh(http.Header{"Cookie": {DefaultCookieName + "=" + c.Value}}), 400, ErrInvalidRequest)
	expectError(t, refresh(browser(c.Value, http.Header{"Sec-Fetch-Site": {"cross-site"}})), 400, ErrInvalidRequest)
	expectError(t, refresh(browser(c.Value, http.Header{CSRFHeader: {"yes"}})), 400, ErrInvalidRequest)
	expectError(t, f.form(pathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {c.Value}}, nil), 400, ErrInvalidRequest)
	expectError(t, refresh(browser(c.Value+"; "+DefaultCookieName+"="+newRefreshToken(), nil)), 400, ErrInvalidRequest)
	expectError(t, refresh(http.Header{CSRFHeader: {"1"}}), 400, ErrInvalidGrant)

	r := refresh(browser(c.Value, nil))
	if r.status != http.StatusOK || r.tokens.RefreshToken != "" || r.tokens.AccessToken == "" {
		t.Fatalf("cookie refresh: %d %s", r.status, r.body)
	}
	next := r.cookie(DefaultCookieName)
	checkCookie(next)
	if next.Value == c.Value {
		t.Fatal("the cookie did not rotate")
	}
	if code := v.status("Bearer "+r.tokens.AccessToken, nil); code != http.StatusOK {
		t.Fatalf("the verifier answered %d", code)
	}
	// A double-submit from two tabs within the window gets the same cookie.
	if again := refresh(browser(c.Value, nil)); again.status != http.StatusOK || again.cookie(DefaultCookieName).Value != next.Value {
		t.Fatalf("replayed cookie refresh: %d", again.status)
	}

	// Logout (under the cookie's path, so the browser sends it) ends the session.
	expectError(t, f.form(pathLogout, url.Values{}, http.Header{"Cookie": {DefaultCookieName + "=" + next.Value}}), 400, ErrInvalidRequest)
	out := f.form(pathLogout, url.Values{}, browser(next.Value, nil))
	if out.status != http.StatusOK {
		t.Fatalf("logout: %d %s", out.status, out.body)
	}
	if cleared := out.cookie(DefaultCookieName); cleared == nil || cleared.MaxAge >= 0 || cleared.Value != "" || cleared.Path != f.prefix+"/token" {
		t.Fatalf("logout cookie %+v", cleared)
	}
	sid := claims(t, r.tokens.AccessToken)["sid"].(string)
	if fam, _ := f.store.Family(context.Background(), sid); fam.RevokeReason != ReasonLogout {
		t.Fatalf("family after logout %+v", fam)
	}
	expectError(t, refresh(browser(next.Value, nil)), 400, ErrInvalidGrant)
	eventually(t, 30*time.Second, "the verifier to reject the logged-out session", func() bool {
		return v.status("Bearer "+r.tokens.AccessToken, nil) == http.StatusUnauthorized
	})
	md := decodeJSON(t, f.do(http.MethodGet, f.prefix+pathDiscovery, "", "", nil).body)
	if md["keyward_refresh_cookie_path"] != f.prefix+"/token" || md["keyward_csrf_header"] != CSRFHeader {
		t.Fatalf("metadata %v", md)
	}
}

// TestHostCookie: a __Host- cookie name gets Path=/ (RFC 6265bis), pinning it to the host.
func TestHostCookie(t *testing.T) {
	f := newFixture(t, fixtureOpts{spec: func(s *v1alpha1.TokenPolicySpec) {
		s.Issuance.Cookie = &v1alpha1.CookieSpec{Name: "__Host-kw"}
	}})
	c := f.mustMint("heidi", "").cookie("__Host-kw")
	if c == nil || c.Path != "/" || c.Domain != "" || !c.Secure {
		t.Fatalf("cookie %+v", c)
	}
	r := f.form(pathToken, url.Values{"grant_type": {"refresh_token"}}, http.Header{"Cookie": {"__Host-kw=" + c.Value}, CSRFHeader: {"1"}})
	if r.status != http.StatusOK || r.cookie("__Host-kw") == nil {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
}
