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
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/keyward-dev/keyward/internal/issuer/store"
	"github.com/keyward-dev/keyward/internal/jwks"
	"github.com/keyward-dev/keyward/internal/policy"
)

// MintRequest is the body of POST <issuer>/mint: a login service, having authenticated a
// user, asks for the user's first access and refresh token.
type MintRequest struct {
	// Subject is the user (sub). Required.
	Subject string `json:"sub"`
	// Scope is space-separated; every scope must be in the policy's issuance.scopes.
	Scope string `json:"scope,omitempty"`
	// ClientID is the OAuth client the tokens are for (client_id). Required.
	ClientID string `json:"client_id"`
	// DPoPJKT binds the session to the client's DPoP key (its RFC 7638 thumbprint, as
	// RFC 9449 §10's dpop_jkt): every refresh then needs a proof by that key.
	DPoPJKT string `json:"dpop_jkt,omitempty"`
	// Claims are extra access-token claims. Not supported yet: a session must carry the
	// same claims in every access token, and the store does not keep them, so a request
	// with claims is refused rather than half-honoured.
	Claims map[string]json.RawMessage `json:"claims,omitempty"`
}

const maxClaimLen = 256

// parseMintRequest decodes a mint body strictly: one JSON object, no duplicate or unknown
// members, required members present, every value within bounds.
func parseMintRequest(body []byte) (*MintRequest, *oauthError) {
	if err := jwks.CheckNoDuplicateMembers(body); err != nil {
		return nil, invalidRequest("malformed", "the body is not one JSON object without duplicate members")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var m MintRequest
	if err := dec.Decode(&m); err != nil {
		return nil, invalidRequest("malformed", "the body is not a mint request: sub, client_id, scope, dpop_jkt")
	}
	for _, f := range []struct{ name, v string }{{"sub", m.Subject}, {"client_id", m.ClientID}} {
		if f.v == "" || len(f.v) > maxClaimLen || !utf8.ValidString(f.v) || strings.ContainsFunc(f.v, isControl) {
			return nil, invalidRequest("malformed", f.name+" is required: 1 to 256 printable characters")
		}
	}
	if len(m.Claims) > 0 {
		return nil, invalidRequest("claims_unsupported", "extra claims are not supported: a session's claims must survive refreshes, and the store does not keep them")
	}
	if m.DPoPJKT != "" {
		if b, err := base64.RawURLEncoding.Strict().DecodeString(m.DPoPJKT); err != nil || len(b) != 32 {
			return nil, invalidRequest("dpop_jkt", "dpop_jkt must be an RFC 7638 SHA-256 thumbprint (43 base64url characters)")
		}
	}
	return &m, nil
}

// authenticateMintClient checks the caller's ServiceAccount token (TokenReview) and that
// the policy lists it in issuance.mintClients.
func (s *Server) authenticateMintClient(r *http.Request, p *policyState, rec *AuditRecord) *oauthError {
	tok, e := bearerToken(r)
	if e != nil {
		return e
	}
	sa, err := s.cfg.Reviewer.Review(r.Context(), tok, s.cfg.Audience)
	if err != nil {
		if !errors.Is(err, errNotAuthenticated) {
			s.log.Error(err, "TokenReview failed", "policy", p.key)
			return unavailable("token_review", "the caller's token could not be checked; try again")
		}
		return invalidClient("not_authenticated", "the caller's ServiceAccount token is not valid for audience "+s.cfg.Audience)
	}
	rec.Caller = sa.String()
	if !p.mintClients[sa.String()] {
		return newError(http.StatusForbidden, ErrUnauthorizedClient, "not_allowed", "ServiceAccount "+sa.String()+" is not a mint client of this issuer")
	}
	return nil
}

// handleMint creates a session (refresh-token family) for an authenticated user and
// returns its first access and refresh token.
func (s *Server) handleMint(w http.ResponseWriter, r *http.Request, p *policyState) *oauthError {
	now := s.clk.Now()
	rec := &AuditRecord{Grant: GrantMint}
	fail := func(e *oauthError) *oauthError { s.reject(w, r, p, "mint", e, rec); return nil }
	if e := p.ready(); e != nil {
		return fail(e)
	}
	if e := s.authenticateMintClient(r, p, rec); e != nil {
		return fail(e)
	}
	if e := requireMediaType(r, "application/json"); e != nil {
		return fail(e)
	}
	body, e := readBody(r, maxJSONBytes)
	if e != nil {
		return fail(e)
	}
	m, e := parseMintRequest(body)
	if e != nil {
		return fail(e)
	}
	rec.Subject, rec.Client, rec.JKT = m.Subject, m.ClientID, m.DPoPJKT
	scope, e := checkScope(m.Scope, p.scopes)
	if e != nil {
		return fail(e)
	}
	switch {
	case m.DPoPJKT != "" && p.bindingMode != policy.BindingDPoP:
		return fail(invalidRequest("dpop_jkt", "this issuer does not bind tokens with DPoP"))
	case m.DPoPJKT == "" && p.bindingMode == policy.BindingDPoP && p.bindingRequired:
		return fail(invalidRequest("dpop_jkt", "this issuer requires DPoP-bound tokens: dpop_jkt is required"))
	}
	fam := store.Family{
		ID: newFamilyID(), Policy: p.key, Subject: m.Subject, ClientID: m.ClientID, Scope: scope, JKT: m.DPoPJKT,
		CreatedAt: now, ExpiresAt: now.Add(p.refreshTTL), IdleTimeout: p.idleTimeout, LastUsedAt: now,
	}
	rec.Session = fam.ID
	resp, err := s.signAccess(p, accessRequest{subject: fam.Subject, clientID: fam.ClientID, scope: scope, sid: fam.ID, jkt: fam.JKT}, now)
	if err != nil {
		s.log.Error(err, "Failed to sign an access token", "policy", p.key)
		return fail(errorAs(err))
	}
	resp.RefreshToken = newRefreshToken()
	if err := s.cfg.Store.CreateFamily(r.Context(), fam, store.HashToken(resp.RefreshToken)); err != nil {
		s.log.Error(err, "Failed to store a new session", "policy", p.key)
		return fail(serverError("store"))
	}
	s.writeTokens(w, p, resp, fam.ExpiresAt, nil, now)
	s.metrics.Issued.WithLabelValues(p.key, GrantMint).Inc()
	rec.Event, rec.Policy, rec.Access, rec.Refresh = AuditIssued, p.key, fingerprint(resp.AccessToken), fingerprint(resp.RefreshToken)
	s.audit(r, rec)
	return nil
}
