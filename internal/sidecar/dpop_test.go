package sidecar

import (
	"net/http"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyward-dev/keyward/internal/bundle"
)

const dpopAlgs = `DPoP algs="ES256 ES384 EdDSA RS256 PS256"`

func dpopPolicy(required bool) bundle.Policy {
	p := testPolicy()
	p.Binding = bundle.Binding{Mode: "DPoP", Required: required}
	return p
}

func boundClaims(jkt string) map[string]any {
	c := claims()
	c["cnf"] = map[string]any{"jkt": jkt}
	return c
}

func TestDPoPBoundToken(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.load(1, dpopPolicy(false), bundle.Revocations{})
	client := newDPoPKey(t)
	tok := e.key.token(t, boundClaims(client.jkt))
	const url = "http://api.example.com/items/1"
	dpopAuth := [2]string{"Authorization", "DPoP " + tok}

	good := client.proof(t, "GET", url, tok, nil)
	s := seen(t, e.do("GET", url+"?page=2", dpopAuth, [2]string{"DPoP", good}))
	if s.Header.Get("X-Keyward-Subject") != "alice" {
		t.Errorf("subject = %q", s.Header.Get("X-Keyward-Subject"))
	}
	for _, h := range []string{"Authorization", "Dpop"} {
		if v := s.Header.Values(h); len(v) != 0 {
			t.Errorf("upstream received %s", h)
		}
	}

	// Unbound tokens still pass as bearer tokens when binding is optional.
	seen(t, e.do("GET", url, bearer(e.key.token(t, claims()))))

	invalidProof := dpopAlgs + `, error="invalid_dpop_proof"`
	invalidToken := dpopAlgs + `, error="invalid_token"`
	bare := `Bearer realm="keyward"`
	other := newDPoPKey(t)
	tests := []struct {
		name       string
		method     string
		hdr        [][2]string
		status     int
		challenges []string
		reason     string
	}{
		{"replayed proof", "GET", [][2]string{dpopAuth, {"DPoP", good}}, 401, []string{bare, invalidProof}, "dpop_replay"},
		{"bearer downgrade of a bound token", "GET", [][2]string{bearer(tok)}, 401,
			[]string{bare + `, error="invalid_token"`, dpopAlgs}, "dpop_downgrade"},
		{"bearer downgrade with a proof", "GET", [][2]string{bearer(tok), {"DPoP", client.proof(t, "GET", url, tok, nil)}}, 401,
			[]string{bare + `, error="invalid_token"`, dpopAlgs}, "dpop_downgrade"},
		{"no proof", "GET", [][2]string{dpopAuth}, 401, []string{bare, invalidProof}, "dpop_missing"},
		{"two proofs", "GET", [][2]string{dpopAuth, {"DPoP", client.proof(t, "GET", url, tok, nil)}, {"DPoP", client.proof(t, "GET", url, tok, nil)}}, 400,
			[]string{bare, dpopAlgs + `, error="invalid_request"`}, "dpop_multiple"},
		{"proof for another URL", "GET", [][2]string{dpopAuth, {"DPoP", client.proof(t, "GET", "http://api.example.com/other", tok, nil)}}, 401,
			[]string{bare, invalidProof}, "dpop_htu"},
		{"proof for another method", "GET", [][2]string{dpopAuth, {"DPoP", client.proof(t, "POST", url, tok, nil)}}, 401,
			[]string{bare, invalidProof}, "dpop_htm"},
		{"proof by another key", "GET", [][2]string{dpopAuth, {"DPoP", other.proof(t, "GET", url, tok, nil)}}, 401,
			[]string{bare, invalidProof}, "dpop_jkt"},
		{"proof for another token", "GET", [][2]string{dpopAuth, {"DPoP", client.proof(t, "GET", url, "other-token", nil)}}, 401,
			[]string{bare, invalidProof}, "dpop_ath"},
		{"unbound token with the DPoP scheme", "GET", [][2]string{{"Authorization", "DPoP " + e.key.token(t, claims())}, {"DPoP", client.proof(t, "GET", url, tok, nil)}}, 401,
			[]string{bare, invalidToken}, "dpop_unbound"},
		{"no token", "GET", nil, 401, []string{bare, dpopAlgs}, "no_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := e.do(tt.method, url, tt.hdr...)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d", rec.Code, tt.status)
			}
			if got := rec.Header().Values("WWW-Authenticate"); !slices.Equal(got, tt.challenges) {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.challenges)
			}
			if a := e.lastAudit(); a.Reason != tt.reason || a.Status != tt.status {
				t.Errorf("audit = %+v, want reason %s", a, tt.reason)
			}
		})
	}
	if got := testutil.ToFloat64(e.metrics.Requests.WithLabelValues(OutcomeRejected, "dpop_replay")); got != 1 {
		t.Errorf("dpop_replay counter = %v", got)
	}
}

func TestDPoPRequired(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.load(1, dpopPolicy(true), bundle.Revocations{})
	rec := e.do("GET", "http://api.example.com/x", bearer(e.key.token(t, claims())))
	if rec.Code != 401 || !slices.Equal(rec.Header().Values("WWW-Authenticate"), []string{dpopAlgs + `, error="invalid_token"`}) {
		t.Fatalf("unbound bearer token under required DPoP: %d %q", rec.Code, rec.Header().Values("WWW-Authenticate"))
	}
	if a := e.lastAudit(); a.Reason != "unbound" {
		t.Errorf("reason = %s", a.Reason)
	}
	rec = e.do("GET", "http://api.example.com/x")
	if !slices.Equal(rec.Header().Values("WWW-Authenticate"), []string{dpopAlgs}) {
		t.Errorf("no token under required DPoP: challenge %q", rec.Header().Values("WWW-Authenticate"))
	}
	client := newDPoPKey(t)
	tok := e.key.token(t, boundClaims(client.jkt))
	seen(t, e.do("GET", "http://api.example.com/x", [2]string{"Authorization", "DPoP " + tok},
		[2]string{"DPoP", client.proof(t, "GET", "http://api.example.com/x", tok, nil)}))
	// Scope errors of a DPoP request use the DPoP challenge.
	rec = e.do("POST", "http://api.example.com/items/1", [2]string{"Authorization", "DPoP " + tok},
		[2]string{"DPoP", client.proof(t, "POST", "http://api.example.com/items/1", tok, nil)})
	if rec.Code != 403 || !slices.Equal(rec.Header().Values("WWW-Authenticate"),
		[]string{dpopAlgs + `, error="insufficient_scope", scope="items:write"`}) {
		t.Errorf("insufficient scope: %d %q", rec.Code, rec.Header().Values("WWW-Authenticate"))
	}
}

func TestDPoPNonce(t *testing.T) {
	e := newEnv(t, envOpts{requireNonce: true})
	e.load(1, dpopPolicy(true), bundle.Revocations{})
	client := newDPoPKey(t)
	tok := e.key.token(t, boundClaims(client.jkt))
	const url = "http://api.example.com/x"
	auth := [2]string{"Authorization", "DPoP " + tok}
	rec := e.do("GET", url, auth, [2]string{"DPoP", client.proof(t, "GET", url, tok, nil)})
	if rec.Code != 401 || !slices.Equal(rec.Header().Values("WWW-Authenticate"), []string{dpopAlgs + `, error="use_dpop_nonce"`}) {
		t.Fatalf("proof without nonce: %d %q", rec.Code, rec.Header().Values("WWW-Authenticate"))
	}
	nonce := rec.Header().Get("DPoP-Nonce")
	if nonce == "" {
		t.Fatal("no DPoP-Nonce header")
	}
	if a := e.lastAudit(); a.Reason != "dpop_nonce" {
		t.Errorf("reason = %s", a.Reason)
	}
	seen(t, e.do("GET", url, auth, [2]string{"DPoP", client.proof(t, "GET", url, tok, map[string]any{"nonce": nonce})}))
}

func TestDPoPPublicURL(t *testing.T) {
	e := newEnv(t, envOpts{publicURL: "https://shop.example.com/api/"})
	e.load(1, dpopPolicy(true), bundle.Revocations{})
	client := newDPoPKey(t)
	tok := e.key.token(t, boundClaims(client.jkt))
	auth := [2]string{"Authorization", "DPoP " + tok}
	// The proof names the public URL, whatever Host the request carries.
	seen(t, e.do("GET", "http://10.0.0.7:8443/items/1", auth,
		[2]string{"DPoP", client.proof(t, "GET", "https://shop.example.com/api/items/1", tok, nil)}))
	rec := e.do("GET", "http://10.0.0.7:8443/items/1", auth,
		[2]string{"DPoP", client.proof(t, "GET", "http://10.0.0.7:8443/items/1", tok, nil)})
	if rec.Code != http.StatusUnauthorized || e.lastAudit().Reason != "dpop_htu" {
		t.Errorf("proof naming the internal URL: %d %s", rec.Code, e.lastAudit().Reason)
	}
}

func TestBindingUnsupportedIsNotDowngraded(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.load(1, testPolicy(), bundle.Revocations{}) // binding None
	for name, cnf := range map[string]map[string]any{
		"jkt":      {"jkt": newDPoPKey(t).jkt},
		"x5t#S256": {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"},
	} {
		c := claims()
		c["cnf"] = cnf
		rec := e.do("GET", "http://api.example.com/x", bearer(e.key.token(t, c)))
		if rec.Code != 401 || e.lastAudit().Reason != "binding_unsupported" {
			t.Errorf("%s-bound token under binding None: %d %s", name, rec.Code, e.lastAudit().Reason)
		}
	}
}
