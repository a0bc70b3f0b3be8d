package sidecar

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyward-dev/keyward/internal/bundle"
)

func TestAcceptedRequestSetsIdentityAndStripsSpoofs(t *testing.T) {
	e := newEnv(t, envOpts{auditAccepted: true})
	e.load(1, testPolicy(), bundle.Revocations{})
	c := claims()
	c["email"] = "alice@example.com"
	c["tenant"] = map[string]any{"id": 7, "name": "acme"}
	tok := e.key.token(t, c)

	rec := e.do("GET", "http://api.example.com/items/42?q=1",
		bearer(tok),
		[2]string{"X-Keyward-Subject", "mallory"},
		[2]string{"x-keyward-scopes", "admin"},
		[2]string{"X-KEYWARD-CLIENT-ID", "evil"},
		[2]string{"X-Keyward-Session-Id", "stolen"},
		[2]string{"X-Keyward-Anything", "spoof"},
		[2]string{"x-user-email", "mallory@example.com"},
		[2]string{"X-Tenant", "spoof"},
		[2]string{"X-Other", "kept"},
		[2]string{"Cookie", "theme=dark; lang=en"},
		[2]string{"X-Forwarded-For", "198.51.100.7"},
		[2]string{"X-Forwarded-Proto", "https"},
	)
	s := seen(t, rec)
	want := map[string][]string{
		"X-Forwarded-For":      {"198.51.100.7, 192.0.2.1"}, // appended: httptest's RemoteAddr
		"X-Forwarded-Proto":    {"http"},                    // set by the sidecar, not taken from the client
		"X-Forwarded-Host":     {"api.example.com"},
		"X-Keyward-Subject":    {"alice"},
		"X-Keyward-Scopes":     {"items:read profile"},
		"X-Keyward-Client-Id":  {"web"},
		"X-Keyward-Session-Id": {"s-1"},
		"X-User-Email":         {"alice@example.com"},
		"X-Tenant":             {`{"id":7,"name":"acme"}`},
		"X-Other":              {"kept"},
		"Cookie":               {"theme=dark; lang=en"},
	}
	for h, v := range want {
		if got := s.Header.Values(h); !slices.Equal(got, v) {
			t.Errorf("upstream %s = %q, want %q", h, got, v)
		}
	}
	for _, h := range []string{"Authorization", "X-Keyward-Anything", "Dpop"} {
		if v := s.Header.Values(h); len(v) != 0 {
			t.Errorf("upstream received %s: %q", h, v)
		}
	}
	if s.Path != "/items/42" || s.Host != "api.example.com" {
		t.Errorf("upstream path/host = %s %s", s.Path, s.Host)
	}
	if got := testutil.ToFloat64(e.metrics.Requests.WithLabelValues(OutcomeAccepted, "ok")); got != 1 {
		t.Errorf("accepted counter = %v", got)
	}
	a := e.lastAudit()
	if a.Decision != "accept" || a.Subject != "alice" || a.JTI != c["jti"] || a.KID != e.key.kid || a.Generation != 1 ||
		len(a.TokenSHA256) != 12 || a.Path != "/items/42" {
		t.Errorf("audit record = %+v", a)
	}
	if strings.Contains(e.audit.String(), tok) || strings.Contains(e.audit.String(), strings.Split(tok, ".")[2]) {
		t.Error("the audit log holds the token")
	}
}

func TestForwardedClaimsNeverCarryControlCharacters(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.load(1, testPolicy(), bundle.Revocations{})
	c := claims()
	c["email"] = "a@example.com\r\nX-Injected: 1"
	c["sub"] = "bob\nX-Evil: 1"
	c["tenant"] = []any{"a\r\nb"} // compact JSON keeps the escape: allowed
	s := seen(t, e.do("GET", "http://api.example.com/x", bearer(e.key.token(t, c))))
	for _, h := range []string{"X-User-Email", "X-Keyward-Subject", "X-Injected", "X-Evil"} {
		if v := s.Header.Values(h); len(v) != 0 {
			t.Errorf("upstream received %s: %q", h, v)
		}
	}
	if got := s.Header.Get("X-Tenant"); got != `["a\r\nb"]` {
		t.Errorf("X-Tenant = %q", got)
	}
}

func TestRejections(t *testing.T) {
	e := newEnv(t, envOpts{})
	revoked := claims()
	rev := bundle.Revocations{JTI: []bundle.Revoked{{Value: revoked["jti"].(string), Expires: testNow.Unix() + 3600}}}
	e.load(1, testPolicy(), rev)
	good := e.key.token(t, claims())
	other := newSigningKey(t)
	expired := claims()
	expired["exp"] = testNow.Unix() - 1
	wrongAud := claims()
	wrongAud["aud"] = "other-api"
	tampered := good[:len(good)-4] + "AAAA"

	const bearerBare = `Bearer realm="keyward"`
	tests := []struct {
		name      string
		method    string
		target    string
		hdr       [][2]string
		status    int
		challenge string
		reason    string
	}{
		{"no token", "GET", "/x", nil, 401, bearerBare, "no_token"},
		{"other scheme is no token", "GET", "/x", [][2]string{{"Authorization", "Basic YTpi"}}, 401, bearerBare, "no_token"},
		{"empty cookie is no token", "GET", "/x", [][2]string{{"Cookie", "at="}}, 401, bearerBare, "no_token"},
		{"bad signature", "GET", "/x", [][2]string{bearer(tampered)}, 401, bearerBare + `, error="invalid_token"`, "signature"},
		{"unknown key", "GET", "/x", [][2]string{bearer(other.token(t, claims()))}, 401, bearerBare + `, error="invalid_token"`, "unknown_kid"},
		{"expired", "GET", "/x", [][2]string{bearer(e.key.token(t, expired))}, 401, bearerBare + `, error="invalid_token"`, "expired"},
		{"wrong audience", "GET", "/x", [][2]string{bearer(e.key.token(t, wrongAud))}, 401, bearerBare + `, error="invalid_token"`, "audience"},
		{"revoked", "GET", "/x", [][2]string{bearer(e.key.token(t, revoked))}, 401, bearerBare + `, error="invalid_token"`, "revoked"},
		{"garbage", "GET", "/x", [][2]string{bearer("abc")}, 401, bearerBare + `, error="invalid_token"`, "malformed"},
		{"two authorization headers", "GET", "/x", [][2]string{bearer(good), bearer(good)}, 400, bearerBare + `, error="invalid_request"`, "multiple_authorization"},
		{"header and cookie", "GET", "/x", [][2]string{bearer(good), {"Cookie", "at=" + good}}, 400, bearerBare + `, error="invalid_request"`, "multiple_tokens"},
		{"two cookies", "GET", "/x", [][2]string{{"Cookie", "at=" + good + "; at=" + good}}, 400, bearerBare + `, error="invalid_request"`, "multiple_tokens"},
		{"malformed credentials", "GET", "/x", [][2]string{{"Authorization", "Bearer a b"}}, 400, bearerBare + `, error="invalid_request"`, "malformed_authorization"},
		{"empty credentials", "GET", "/x", [][2]string{{"Authorization", "Bearer"}}, 400, bearerBare + `, error="invalid_request"`, "malformed_authorization"},
		{"dot segments", "GET", "/public/../items/1", [][2]string{bearer(good)}, 400, bearerBare + `, error="invalid_request"`, "path"},
		{"insufficient scope", "POST", "/items/1", [][2]string{bearer(good)}, 403, bearerBare + `, error="insufficient_scope", scope="items:write"`, "insufficient_scope"},
		{"DPoP scheme without DPoP policy", "GET", "/x", [][2]string{{"Authorization", "DPoP " + good}}, 401, bearerBare, "no_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := testutil.ToFloat64(e.metrics.Requests.WithLabelValues(OutcomeRejected, tt.reason))
			rec := e.do(tt.method, "http://api.example.com"+tt.target, tt.hdr...)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d", rec.Code, tt.status)
			}
			if got := rec.Header().Values("WWW-Authenticate"); !slices.Equal(got, []string{tt.challenge}) {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.challenge)
			}
			if body := rec.Body.String(); body != http.StatusText(tt.status)+"\n" {
				t.Errorf("body = %q: must be the fixed status text", body)
			}
			if got := testutil.ToFloat64(e.metrics.Requests.WithLabelValues(OutcomeRejected, tt.reason)); got != before+1 {
				t.Errorf("rejected{reason=%q} went from %v to %v", tt.reason, before, got)
			}
			a := e.lastAudit()
			if a.Decision != "reject" || a.Reason != tt.reason || a.Status != tt.status || a.Generation != 1 || a.Method != tt.method {
				t.Errorf("audit = %+v, want reject/%s/%d", a, tt.reason, tt.status)
			}
		})
	}
	if strings.Contains(e.audit.String(), good) || strings.Contains(e.audit.String(), strings.Split(good, ".")[1]) {
		t.Error("the audit log holds a token")
	}
}

func TestAnonymousRouteSkipsAuthButStripsIdentity(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.load(1, testPolicy(), bundle.Revocations{})
	tok := e.key.token(t, claims())
	s := seen(t, e.do("GET", "http://api.example.com/public/logo.png",
		[2]string{"X-Keyward-Subject", "mallory"},
		[2]string{"X-User-Email", "mallory@example.com"},
		bearer(tok),
		[2]string{"Cookie", "at=" + tok + "; theme=dark"},
	))
	for _, h := range []string{"X-Keyward-Subject", "X-User-Email", "Authorization"} {
		if v := s.Header.Values(h); len(v) != 0 {
			t.Errorf("upstream received %s: %q", h, v)
		}
	}
	if got := s.Header.Get("Cookie"); got != "theme=dark" {
		t.Errorf("Cookie = %q, want the token cookie removed", got)
	}
	// An invalid token does not matter on an anonymous route.
	seen(t, e.do("GET", "http://api.example.com/public/x", bearer("garbage")))
	if got := testutil.ToFloat64(e.metrics.Requests.WithLabelValues(OutcomeAnonymous, "anonymous")); got != 2 {
		t.Errorf("anonymous counter = %v", got)
	}
	if n := len(e.audit.records(t)); n != 0 {
		t.Errorf("%d audit records for anonymous requests without --audit-accepted", n)
	}
}

func TestCookieTokenAndForwardToken(t *testing.T) {
	e := newEnv(t, envOpts{})
	p := testPolicy()
	p.ForwardToken = true
	e.load(1, p, bundle.Revocations{})
	tok := e.key.token(t, claims())
	s := seen(t, e.do("GET", "http://api.example.com/x", [2]string{"Cookie", "theme=dark; at=" + tok}))
	if s.Header.Get("X-Keyward-Subject") != "alice" {
		t.Errorf("subject = %q", s.Header.Get("X-Keyward-Subject"))
	}
	if got := s.Header.Get("Cookie"); got != "theme=dark; at="+tok {
		t.Errorf("Cookie = %q: ForwardToken keeps the token cookie", got)
	}
	s = seen(t, e.do("GET", "http://api.example.com/x", bearer(tok)))
	if s.Header.Get("Authorization") != "Bearer "+tok {
		t.Error("ForwardToken: Authorization was not forwarded")
	}
}

func TestNotReadyRejectsEverything(t *testing.T) {
	e := newEnv(t, envOpts{})
	admin := AdminHandler(e.store, e.metrics, nil)
	readyz := func() int {
		rec := httptest.NewRecorder()
		admin.ServeHTTP(rec, httptest.NewRequest("GET", "http://admin/readyz", nil))
		return rec.Code
	}
	if got := readyz(); got != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d before any bundle", got)
	}
	for _, target := range []string{"/x", "/public/anonymous"} {
		rec := e.do("GET", "http://api.example.com"+target, bearer(e.key.token(t, claims())))
		if rec.Code != http.StatusServiceUnavailable || len(rec.Header().Values("WWW-Authenticate")) != 0 {
			t.Errorf("%s: status %d, challenge %q; want 503 without a challenge", target, rec.Code, rec.Header().Values("WWW-Authenticate"))
		}
	}
	if a := e.lastAudit(); a.Reason != "not_ready" || a.Status != 503 || a.Generation != 0 {
		t.Errorf("audit = %+v", a)
	}
	// A malformed first bundle leaves it not ready.
	if err := e.store.Offer(SourceDir, []byte(`{"format":"keyward.dev/bundle/v1"`)); err == nil {
		t.Fatal("malformed bundle accepted")
	}
	if got := readyz(); got != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d after a malformed bundle", got)
	}
	e.load(3, testPolicy(), bundle.Revocations{})
	if got := readyz(); got != http.StatusOK {
		t.Fatalf("/readyz = %d with a bundle", got)
	}
	seen(t, e.do("GET", "http://api.example.com/x", bearer(e.key.token(t, claims()))))
	if got := testutil.ToFloat64(e.metrics.Ready); got != 1 {
		t.Errorf("ready gauge = %v", got)
	}
}

// TestCacheHitsCounted: the second request with the same token is served from the
// verified-token cache and counted; a new bundle starts with an empty cache.
func TestCacheHitsCounted(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.load(1, testPolicy(), bundle.Revocations{})
	tok := e.key.token(t, claims())
	for range 3 {
		if rec := e.do("GET", "http://api.example.com/items/1", bearer(tok)); rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
	}
	if got := testutil.ToFloat64(e.metrics.CacheHits); got != 2 {
		t.Fatalf("cache hits = %v, want 2", got)
	}
	e.load(2, testPolicy(), bundle.Revocations{JTI: []bundle.Revoked{{Value: "another-token", Expires: 4102444800}}})
	if rec := e.do("GET", "http://api.example.com/items/1", bearer(tok)); rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	if got := testutil.ToFloat64(e.metrics.CacheHits); got != 2 {
		t.Fatalf("cache hits after a bundle change = %v, want still 2 (the cache is dropped)", got)
	}
}
