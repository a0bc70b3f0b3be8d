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
	"net/http"
	"net/url"
	"testing"

	"github.com/keyward-dev/keyward/api/v1alpha1"
)

// TestDPoPBoundSession: a session bound to the client's DPoP key at login (dpop_jkt)
// refreshes only with proofs by that key, with the server nonce of RFC 9449 §8; its
// access tokens carry cnf.jkt and the verifier sidecar accepts them with a proof.
func TestDPoPBoundSession(t *testing.T) {
	f := newFixture(t, fixtureOpts{spec: func(s *v1alpha1.TokenPolicySpec) {
		s.Binding = v1alpha1.BindingSpec{Mode: v1alpha1.BindingDPoP}
	}})
	v := f.verifier()
	alice, mallory := newDPoPKey(t), newDPoPKey(t)
	m := f.mint(`{"sub":"alice","client_id":"spa","dpop_jkt":"` + alice.jkt + `"}`)
	if m.status != http.StatusOK || m.tokens.TokenType != "DPoP" {
		t.Fatalf("mint: %d %s", m.status, m.body)
	}
	if cnf, _ := claims(t, m.tokens.AccessToken)["cnf"].(map[string]any); cnf["jkt"] != alice.jkt {
		t.Fatalf("cnf %v", cnf)
	}
	api := func(at string, k *dpopKey) int {
		hdr := http.Header{}
		if k != nil {
			hdr.Set("DPoP", k.proof(t, http.MethodGet, "http://api.example/orders", "", at, f.s.clock.Now()))
		}
		return v.status("DPoP "+at, hdr)
	}
	if code := api(m.tokens.AccessToken, alice); code != http.StatusOK {
		t.Fatalf("the verifier answered %d with the key's proof", code)
	}
	if code := v.status("Bearer "+m.tokens.AccessToken, nil); code != http.StatusUnauthorized {
		t.Fatalf("a bound token as a bearer token: %d", code)
	}

	htu := f.issuer + "/token"
	rt := m.tokens.RefreshToken
	refresh := func(proof string) *response {
		hdr := http.Header{}
		if proof != "" {
			hdr.Set("DPoP", proof)
		}
		return f.refresh(rt, hdr)
	}
	expectError(t, refresh(""), 400, ErrInvalidDPoPProof)
	r := refresh(alice.proof(t, http.MethodPost, htu, "", "", f.s.clock.Now()))
	expectError(t, r, 400, ErrUseDPoPNonce)
	nonce := r.header.Get("DPoP-Nonce")
	if nonce == "" {
		t.Fatal("use_dpop_nonce without a DPoP-Nonce header")
	}
	expectError(t, refresh(mallory.proof(t, http.MethodPost, htu, nonce, "", f.s.clock.Now())), 400, ErrInvalidDPoPProof)
	expectError(t, refresh(alice.proof(t, http.MethodPost, "https://elsewhere.example/token", nonce, "", f.s.clock.Now())), 400, ErrInvalidDPoPProof)
	expectError(t, refresh(alice.proof(t, http.MethodPost, htu, "stale", "", f.s.clock.Now())), 400, ErrUseDPoPNonce)
	if recs := f.audit.records(t, AuditRejected); recs[len(recs)-3].Reason != "dpop_jkt" {
		t.Fatalf("the refresh with another key was audited as %+v", recs[len(recs)-3])
	}

	proof := alice.proof(t, http.MethodPost, htu, nonce, "", f.s.clock.Now())
	ok := refresh(proof)
	if ok.status != http.StatusOK || ok.tokens.TokenType != "DPoP" || ok.header.Get("DPoP-Nonce") == "" {
		t.Fatalf("refresh with the key's proof: %d %s", ok.status, ok.body)
	}
	if cnf, _ := claims(t, ok.tokens.AccessToken)["cnf"].(map[string]any); cnf["jkt"] != alice.jkt {
		t.Fatalf("refreshed cnf %v", cnf)
	}
	if code := api(ok.tokens.AccessToken, alice); code != http.StatusOK {
		t.Fatalf("the verifier answered %d for the refreshed token", code)
	}
	if code := api(ok.tokens.AccessToken, mallory); code == http.StatusOK {
		t.Fatal("the verifier accepted another key's proof")
	}
	// A proof is single-use.
	rt = ok.tokens.RefreshToken
	expectError(t, refresh(proof), 400, ErrInvalidDPoPProof)

	// An unbound session in a DPoP policy: a proof at the token endpoint binds the access
	// token (the session stays unbound).
	u := f.mustMint("bob", "")
	hdr := http.Header{"DPoP": {mallory.proof(t, http.MethodPost, htu, nonce, "", f.s.clock.Now())}}
	b := f.refresh(u.tokens.RefreshToken, hdr)
	if cnf, _ := claims(t, b.tokens.AccessToken)["cnf"].(map[string]any); b.status != http.StatusOK || b.tokens.TokenType != "DPoP" || cnf["jkt"] != mallory.jkt {
		t.Fatalf("binding refresh: %d %s", b.status, b.body)
	}
	// Token exchange binds too.
	x := f.form(pathToken, url.Values{"grant_type": {GrantTokenExchange}, "subject_token": {f.saToken("workload", DefaultAudience)},
		"subject_token_type": {TokenTypeJWT}}, http.Header{"DPoP": {alice.proof(t, http.MethodPost, htu, nonce, "", f.s.clock.Now())}})
	if cnf, _ := claims(t, x.tokens.AccessToken)["cnf"].(map[string]any); x.status != http.StatusOK || cnf["jkt"] != alice.jkt {
		t.Fatalf("bound exchange: %d %s", x.status, x.body)
	}
}

// TestDPoPRequired: with binding.required, unbound issuance is refused.
func TestDPoPRequired(t *testing.T) {
	f := newFixture(t, fixtureOpts{spec: func(s *v1alpha1.TokenPolicySpec) {
		s.Binding = v1alpha1.BindingSpec{Mode: v1alpha1.BindingDPoP, Required: true}
	}})
	expectError(t, f.mint(`{"sub":"alice","client_id":"spa"}`), 400, ErrInvalidRequest)
	x := f.form(pathToken, url.Values{"grant_type": {GrantTokenExchange}, "subject_token": {f.saToken("workload", DefaultAudience)},
		"subject_token_type": {TokenTypeJWT}}, nil)
	expectError(t, x, 400, ErrInvalidDPoPProof)
}
