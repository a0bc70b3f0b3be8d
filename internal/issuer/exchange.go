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
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/keyward-dev/keyward/internal/binding"
	"github.com/keyward-dev/keyward/internal/policy"
)

// exchangeGrant answers RFC 8693 token exchange of a Kubernetes ServiceAccount token for
// a workload access token: sub system:serviceaccount:<ns>:<name>, no refresh token.
// Per RFC 8693 §2.2.2 a subject token that is invalid or not acceptable by policy is an
// invalid_request.
func (s *Server) exchangeGrant(w http.ResponseWriter, r *http.Request, p *policyState, f form) {
	now := s.clk.Now()
	rec := &AuditRecord{Grant: GrantTokenExchange}
	fail := func(e *oauthError) { s.reject(w, r, p, "token", e, rec) }
	if p.exchange == nil {
		fail(newError(http.StatusBadRequest, ErrUnsupportedGrantType, "exchange_disabled", "this issuer does not exchange tokens"))
		return
	}
	if e := p.ready(); e != nil {
		fail(e)
		return
	}
	subject := f.get("subject_token")
	switch {
	case subject == "":
		fail(invalidRequest("no_subject_token", "subject_token is required"))
		return
	case f.get("subject_token_type") != TokenTypeJWT:
		fail(invalidRequest("subject_token_type", "subject_token_type must be "+TokenTypeJWT+" (a Kubernetes ServiceAccount token)"))
		return
	case f.get("actor_token") != "" || f.get("actor_token_type") != "":
		fail(invalidRequest("actor_token", "delegation (actor_token) is not supported"))
		return
	}
	if rt := f.get("requested_token_type"); rt != "" && rt != TokenTypeAccessToken && rt != TokenTypeJWT {
		fail(invalidRequest("requested_token_type", "requested_token_type must be "+TokenTypeAccessToken))
		return
	}
	if _, ok := f["resource"]; ok {
		fail(newError(http.StatusBadRequest, ErrInvalidTarget, "resource", "resource is not supported; use audience"))
		return
	}
	audience := f.get("audience")
	if audience != "" && !slices.Contains(p.audiences, audience) {
		fail(newError(http.StatusBadRequest, ErrInvalidTarget, "audience", "audience is not one of this issuer's audiences"))
		return
	}
	scope := strings.Join(p.exchange.scopes, " ")
	if req, ok := f["scope"]; ok {
		var e *oauthError
		if scope, e = checkScope(req, p.exchange.scopes); e != nil {
			fail(e)
			return
		}
	}
	proof, jkt, e := s.exchangeBinding(r, p)
	if e != nil {
		fail(e)
		return
	}
	aud := p.exchange.audience
	if aud == "" {
		aud = s.cfg.Audience
	}
	sa, err := s.cfg.Reviewer.Review(r.Context(), subject, aud)
	if err != nil {
		if !errors.Is(err, errNotAuthenticated) {
			s.log.Error(err, "TokenReview failed", "policy", p.key)
			fail(unavailable("token_review", "the ServiceAccount token could not be checked; try again"))
			return
		}
		fail(invalidRequest("subject_token", "the subject_token is not a valid ServiceAccount token for audience "+aud))
		return
	}
	rec.Subject, rec.Client = sa.Username(), sa.Username()
	if !p.exchange.allows(sa) {
		fail(invalidRequest("not_allowed", "ServiceAccount "+sa.String()+" may not exchange its token for this issuer"))
		return
	}
	resp, err := s.signAccess(p, accessRequest{subject: sa.Username(), clientID: sa.Username(), scope: scope, jkt: jkt, audience: audience}, now)
	if err != nil {
		s.log.Error(err, "Failed to sign an access token", "policy", p.key)
		fail(errorAs(err))
		return
	}
	resp.IssuedTokenType = TokenTypeAccessToken
	s.writeTokens(w, p, resp, now, proof, now)
	s.metrics.Issued.WithLabelValues(p.key, "token_exchange").Inc()
	rec.Event, rec.Policy, rec.Access, rec.JKT = AuditIssued, p.key, fingerprint(resp.AccessToken), jkt
	s.audit(r, rec)
}

// exchangeBinding binds an exchanged token to the DPoP proof's key when the policy uses
// DPoP; without a proof the token is a bearer token unless the policy requires binding.
func (s *Server) exchangeBinding(r *http.Request, p *policyState) (*binding.Proof, string, *oauthError) {
	if p.bindingMode != policy.BindingDPoP {
		return nil, "", nil
	}
	proof, e := s.dpop.check(r, p.endpoint(pathToken), "")
	if e != nil {
		return nil, "", e
	}
	if proof == nil {
		if p.bindingRequired {
			return nil, "", invalidDPoP("missing", "this issuer requires DPoP-bound tokens: send a DPoP proof")
		}
		return nil, "", nil
	}
	return proof, proof.JKT, nil
}
