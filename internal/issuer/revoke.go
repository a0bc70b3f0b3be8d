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
	"errors"
	"net/http"
	"strings"

	"github.com/keyward-dev/keyward/internal/issuer/store"
	"github.com/keyward-dev/keyward/internal/revocation"
	"github.com/keyward-dev/keyward/internal/verify"
)

// handleRevoke is RFC 7009 revocation. A refresh token revokes its session: the family
// in the store, and a RevocationEntry for the session so every verifier drops the
// session's access tokens. An access token (verified against the policy's bundle) gets a
// RevocationEntry for its jti. The answer is 200 for any token, known or not (§2.2).
// Possession of the token is the authority to revoke it, so no client authentication.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request, p *policyState) *oauthError {
	f, e := readForm(r)
	if e != nil {
		return e
	}
	tok := f.get("token")
	if tok == "" {
		return invalidRequest("no_token", "token is required")
	}
	rec := &AuditRecord{Grant: "revoke"}
	if isRefreshToken(tok) {
		rec.Refresh = fingerprint(tok)
		s.revokeRefresh(r.Context(), r, p, tok, ReasonClient, "client", rec)
	} else if len(tok) <= maxTokenLen && p.bundle != nil {
		rec.Access = fingerprint(tok)
		if c, err := p.bundle.Verifier.Verify(tok); err == nil && c.JTI != "" {
			s.revoker.add(jtiEntry(p, c.JTI, ReasonClient))
			s.metrics.Revocations.WithLabelValues(p.key, "client").Inc()
			rec.Event, rec.Policy, rec.Subject, rec.Session, rec.Client, rec.Reason = AuditRevoked, p.key, c.Subject, c.SessionID, c.ClientID, ReasonClient
			s.audit(r, rec)
		}
	}
	writeRaw(w, http.StatusOK, "application/json", []byte("{}"))
	return nil
}

// revokeRefresh revokes the family of a refresh token of this policy (nothing for an
// unknown token or another policy's).
func (s *Server) revokeRefresh(ctx context.Context, r *http.Request, p *policyState, tok, reason, cause string, rec *AuditRecord) {
	fam, _, err := s.cfg.Store.Lookup(ctx, store.HashToken(tok))
	if err != nil || fam.Policy != p.key {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Error(err, "Failed to look up a refresh token for revocation", "policy", p.key)
		}
		return
	}
	if _, err := s.cfg.Store.RevokeFamily(ctx, fam.ID, reason, s.clk.Now()); err != nil {
		s.log.Error(err, "Failed to revoke a session in the store", "policy", p.key, "sid", fam.ID)
	}
	s.revoker.add(sessionEntry(p, fam.ID, reason))
	s.metrics.Revocations.WithLabelValues(p.key, cause).Inc()
	rec.Event, rec.Policy, rec.Subject, rec.Session, rec.Client, rec.Reason = AuditRevoked, p.key, fam.Subject, fam.ID, fam.ClientID, reason
	s.audit(r, rec)
}

// handleLogout ends a browser session: the refresh-token cookie's family is revoked and
// the cookie cleared. It lives under the cookie's path (<issuer>/token/logout), so the
// browser sends the cookie; like a refresh, it needs the CSRF header.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request, p *policyState) *oauthError {
	if p.cookie == nil {
		return invalidRequest("no_cookie_mode", "this issuer does not use refresh-token cookies; use the revocation endpoint")
	}
	tok, e := cookieToken(r, p)
	if e != nil && e.Reason != "no_cookie" {
		return e
	}
	if tok != "" && isRefreshToken(tok) {
		s.revokeRefresh(r.Context(), r, p, tok, ReasonLogout, "logout", &AuditRecord{Grant: "logout", Refresh: fingerprint(tok)})
	}
	clearCookie(w, p)
	writeRaw(w, http.StatusOK, "application/json", []byte("{}"))
	return nil
}

// introspection is the RFC 7662 response.
type introspection struct {
	Active    bool                 `json:"active"`
	Scope     string               `json:"scope,omitempty"`
	ClientID  string               `json:"client_id,omitempty"`
	TokenType string               `json:"token_type,omitempty"`
	Expiry    int64                `json:"exp,omitempty"`
	IssuedAt  int64                `json:"iat,omitempty"`
	Subject   string               `json:"sub,omitempty"`
	Audience  []string             `json:"aud,omitempty"`
	Issuer    string               `json:"iss,omitempty"`
	JTI       string               `json:"jti,omitempty"`
	Session   string               `json:"sid,omitempty"`
	Cnf       *verify.Confirmation `json:"cnf,omitempty"`
}

// handleIntrospect is RFC 7662 introspection for the policy's mint clients: an access
// token is active when the policy's verifier accepts it (signature, claims, revocations,
// exactly as a sidecar decides); a refresh token when it is its live family's current one.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request, p *policyState) *oauthError {
	rec := &AuditRecord{Grant: "introspect"}
	fail := func(e *oauthError) *oauthError { s.reject(w, r, p, "introspect", e, rec); return nil }
	if e := s.authenticateMintClient(r, p, rec); e != nil {
		return fail(e)
	}
	f, e := readForm(r)
	if e != nil {
		return fail(e)
	}
	tok := f.get("token")
	if tok == "" {
		return fail(invalidRequest("no_token", "token is required"))
	}
	out := introspection{}
	if isRefreshToken(tok) {
		rec.Refresh = fingerprint(tok)
		out = s.introspectRefresh(r.Context(), p, tok)
	} else if len(tok) <= maxTokenLen && p.bundle != nil {
		rec.Access = fingerprint(tok)
		if c, err := p.bundle.Verifier.Verify(tok); err == nil {
			out = introspection{
				Active: true, Scope: strings.Join(c.Scopes, " "), ClientID: c.ClientID, TokenType: tokenTypeBearer,
				Expiry: c.Expiry, IssuedAt: c.IssuedAt, Subject: c.Subject, Audience: c.Audience, Issuer: c.Issuer,
				JTI: c.JTI, Session: c.SessionID, Cnf: c.Cnf,
			}
			if c.Cnf != nil && c.Cnf.JKT != "" {
				out.TokenType = tokenTypeDPoP
			}
		}
	}
	rec.Event, rec.Policy, rec.Subject, rec.Session, rec.Client = AuditIntrospect, p.key, out.Subject, out.Session, out.ClientID
	if !out.Active {
		rec.Reason = "inactive"
	}
	s.audit(r, rec)
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) introspectRefresh(ctx context.Context, p *policyState, tok string) introspection {
	fam, current, err := s.cfg.Store.Lookup(ctx, store.HashToken(tok))
	now := s.clk.Now()
	if err != nil || !current || fam.Policy != p.key || !fam.Live(now) || p.bundle == nil ||
		p.bundle.Revoked.Check(revocation.Token{Subject: fam.Subject, SessionID: fam.ID, ClientID: fam.ClientID, IssuedAt: fam.CreatedAt.Unix()}) != "" {
		return introspection{}
	}
	exp := fam.ExpiresAt
	if fam.IdleTimeout > 0 && fam.LastUsedAt.Add(fam.IdleTimeout).Before(exp) {
		exp = fam.LastUsedAt.Add(fam.IdleTimeout)
	}
	out := introspection{
		Active: true, Scope: fam.Scope, ClientID: fam.ClientID, TokenType: "refresh_token", Expiry: exp.Unix(),
		IssuedAt: fam.CreatedAt.Unix(), Subject: fam.Subject, Issuer: p.issuer, Session: fam.ID,
	}
	if fam.JKT != "" {
		out.Cnf = &verify.Confirmation{JKT: fam.JKT}
	}
	return out
}
