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
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyward-dev/keyward/internal/binding"
	"github.com/keyward-dev/keyward/internal/verify"
)

// Grant types and token types.
const (
	GrantRefreshToken  = "refresh_token"
	GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	GrantMint          = "mint" // the internal mint endpoint (audit and metric label)

	TokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"

	tokenTypeBearer = "Bearer"
	tokenTypeDPoP   = "DPoP"
)

// tokenResponse is the RFC 6749 §5.1 (and RFC 8693 §2.2.1) success response.
type tokenResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type,omitempty"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	RefreshToken    string `json:"refresh_token,omitempty"`
	Scope           string `json:"scope,omitempty"`
}

// sealedPair is what the replay window keeps of a rotation (sealed): the response, the
// key its access token is bound to, and when the family ends (the cookie's expiry).
type sealedPair struct {
	Response tokenResponse `json:"r"`
	JKT      string        `json:"j,omitempty"`
	Expires  int64         `json:"x"`
}

// accessClaims are the claims of an access token (RFC 9068 §2.2).
type accessClaims struct {
	Issuer   string               `json:"iss"`
	Subject  string               `json:"sub"`
	Audience any                  `json:"aud"`
	Expiry   int64                `json:"exp"`
	IssuedAt int64                `json:"iat"`
	JTI      string               `json:"jti"`
	ClientID string               `json:"client_id"`
	Scope    string               `json:"scope,omitempty"`
	Session  string               `json:"sid,omitempty"`
	Cnf      *verify.Confirmation `json:"cnf,omitempty"`
}

// accessRequest is what an access token says.
type accessRequest struct {
	subject, clientID, scope, sid, jkt string
	audience                           string // one of the policy's audiences; "" for all
}

// signAccess signs an access token for p and returns it with its response fields.
func (s *Server) signAccess(p *policyState, a accessRequest, now time.Time) (tokenResponse, error) {
	if p.signer == nil {
		return tokenResponse{}, unavailable("not_ready", "the token service cannot sign for this issuer yet")
	}
	c := accessClaims{
		Issuer:   p.issuer,
		Subject:  a.subject,
		Expiry:   now.Add(p.accessTTL).Unix(),
		IssuedAt: now.Unix(),
		JTI:      newJTI(),
		ClientID: a.clientID,
		Scope:    a.scope,
		Session:  a.sid,
	}
	switch {
	case a.audience != "":
		c.Audience = a.audience
	case len(p.audiences) == 1:
		c.Audience = p.audiences[0]
	default:
		c.Audience = p.audiences
	}
	typ, tokenType := "at+jwt", tokenTypeBearer
	if p.tokenType == "JWT" {
		typ = "JWT"
	}
	if a.jkt != "" {
		c.Cnf = &verify.Confirmation{JKT: a.jkt}
		tokenType = tokenTypeDPoP
	}
	tok, err := p.signer.Sign(c, typ)
	if err != nil {
		return tokenResponse{}, err
	}
	return tokenResponse{AccessToken: tok, TokenType: tokenType, ExpiresIn: int64(p.accessTTL / time.Second), Scope: a.scope}, nil
}

// writeTokens writes a token response. In browser mode the refresh token goes into the
// cookie, never into the body.
func (s *Server) writeTokens(w http.ResponseWriter, p *policyState, resp tokenResponse, familyExpires time.Time, proof *binding.Proof, now time.Time) {
	if p.cookie != nil && resp.RefreshToken != "" {
		maxAge := int(familyExpires.Sub(now) / time.Second)
		http.SetCookie(w, &http.Cookie{
			Name: p.cookie.name, Value: resp.RefreshToken, Path: p.cookie.path, MaxAge: max(maxAge, 1),
			HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
		})
		resp.RefreshToken = ""
	}
	if proof != nil && s.dpop.require {
		w.Header().Set("DPoP-Nonce", s.dpop.nonce(now))
	}
	writeJSON(w, http.StatusOK, resp)
}

// clearCookie ends the browser's refresh-token cookie.
func clearCookie(w http.ResponseWriter, p *policyState) {
	http.SetCookie(w, &http.Cookie{
		Name: p.cookie.name, Value: "", Path: p.cookie.path, MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request, p *policyState) *oauthError {
	f, e := readForm(r)
	if e != nil {
		return e
	}
	switch f.get("grant_type") {
	case GrantRefreshToken:
		s.refreshGrant(w, r, p, f)
		return nil
	case GrantTokenExchange:
		s.exchangeGrant(w, r, p, f)
		return nil
	case "":
		return invalidRequest("no_grant_type", "grant_type is required")
	default:
		return newError(http.StatusBadRequest, ErrUnsupportedGrantType, "unsupported_grant_type",
			"supported grant types: refresh_token, "+GrantTokenExchange)
	}
}

// presentedRefreshToken returns the refresh token of a request: the form parameter, or in
// browser mode the cookie (and then only with the CSRF header, never cross-site).
func presentedRefreshToken(r *http.Request, p *policyState, f form) (string, *oauthError) {
	if p.cookie == nil {
		rt := f.get("refresh_token")
		if rt == "" {
			return "", invalidRequest("no_refresh_token", "refresh_token is required")
		}
		return rt, nil
	}
	if _, ok := f["refresh_token"]; ok {
		return "", invalidRequest("refresh_token_in_body", "this issuer keeps refresh tokens in a cookie; send the cookie, not refresh_token")
	}
	return cookieToken(r, p)
}

// cookieToken reads the refresh-token cookie of a browser-mode request.
func cookieToken(r *http.Request, p *policyState) (string, *oauthError) {
	if e := checkCSRF(r); e != nil {
		return "", e
	}
	var values []string
	for _, c := range r.Cookies() {
		if c.Name == p.cookie.name {
			values = append(values, c.Value)
		}
	}
	switch len(values) {
	case 0:
		return "", invalidGrant("no_cookie", "no refresh-token cookie")
	case 1:
		return values[0], nil
	default:
		// Two cookies of the name: one was planted (cookie tossing from a sibling domain).
		return "", invalidRequest("cookie_ambiguous", "more than one refresh-token cookie")
	}
}

// checkCSRF refuses cookie-authenticated requests without the custom header, and any
// the browser marks cross-site (Sec-Fetch-Site).
func checkCSRF(r *http.Request) *oauthError {
	if v := r.Header.Values(CSRFHeader); len(v) != 1 || v[0] != "1" {
		return invalidRequest("csrf", "cookie-authenticated requests must send "+CSRFHeader+": 1")
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "same-site" && site != "none" {
		return invalidRequest("csrf", "cross-site request refused")
	}
	return nil
}

// checkScope validates a requested scope against what may be granted and returns it
// normalized (space-separated, in request order, without duplicates).
func checkScope(requested string, grantable []string) (string, *oauthError) {
	if requested == "" {
		return "", nil
	}
	var out []string
	for _, s := range strings.Split(requested, " ") {
		if s == "" {
			return "", invalidScope("scope must be space-separated scope tokens")
		}
		if !validScopeToken(s) {
			return "", invalidScope("scope contains an invalid character")
		}
		if !slices.Contains(grantable, s) {
			return "", invalidScope("scope " + strconv.Quote(s) + " may not be granted")
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return strings.Join(out, " "), nil
}

// validScopeToken: RFC 6749 §3.3 scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b < 0x21 || b > 0x7e || b == '"' || b == '\\' {
			return false
		}
	}
	return true
}
