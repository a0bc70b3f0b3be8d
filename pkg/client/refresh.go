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

package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// OAuth 2.0 error codes the client acts on.
const (
	errInvalidGrant = "invalid_grant"
	errUseDPoPNonce = "use_dpop_nonce"
)

// ErrSessionEnded matches (errors.Is) the error of a refresh the server refused with
// invalid_grant: the refresh token is expired, revoked or was already used, and only a
// new login (a new token in the store, Transport.SetToken) helps.
var ErrSessionEnded = errors.New("keyward client: the session has ended (invalid_grant); log in again")

// OAuthError is an error response of the token endpoint (RFC 6749 §5.2).
type OAuthError struct {
	StatusCode  int
	Code        string // error
	Description string // error_description, truncated
}

func (e *OAuthError) Error() string {
	s := fmt.Sprintf("the token endpoint answered %d %s", e.StatusCode, e.Code)
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// Is makes an invalid_grant error match ErrSessionEnded.
func (e *OAuthError) Is(target error) bool {
	return target == ErrSessionEnded && e.Code == errInvalidGrant
}

// RefreshError is a failed refresh. The refresh token was not lost: it is still in the
// store (unless the server refused it, see ErrSessionEnded), and the next request that
// needs a token tries again.
type RefreshError struct {
	TokenURL string
	Err      error
}

func (e *RefreshError) Error() string {
	msg := fmt.Sprintf("keyward client: refreshing the access token at %s failed: %v", e.TokenURL, e.Err)
	if !errors.Is(e.Err, ErrSessionEnded) {
		msg += " (the refresh token is kept; the next request retries)"
	}
	return msg
}

func (e *RefreshError) Unwrap() error { return e.Err }

// exchange performs one refresh_token grant with refreshToken and returns the new token
// (RefreshAt not yet drawn). It retries once when the server asks for a DPoP nonce, and
// once after a transport error: a response lost after the server rotated the token
// would otherwise lose the session, and the server's replay window answers a prompt
// retry of the same refresh token with the same new pair.
func (t *Transport) exchange(ctx context.Context, refreshToken, scope string) (*Token, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	if t.cfg.ClientID != "" && t.cfg.ClientSecret == "" {
		form.Set("client_id", t.cfg.ClientID)
	}
	if t.cfg.Scope != "" {
		form.Set("scope", t.cfg.Scope)
	}
	body := form.Encode()
	nonceRetried, netRetried := false, false
	for {
		issued := t.clk.Now()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.tokenURL.String(), strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		if t.cfg.ClientSecret != "" {
			// RFC 6749 §2.3.1: both form-urlencoded before Basic encoding.
			req.SetBasicAuth(url.QueryEscape(t.cfg.ClientID), url.QueryEscape(t.cfg.ClientSecret))
		}
		if t.dpop != nil {
			proof, err := t.dpop.Proof(http.MethodPost, t.tokenURL, t.nonce(t.tokenURL), "", issued)
			if err != nil {
				return nil, err
			}
			req.Header.Set("DPoP", proof)
		}
		res, err := t.tokenRT.RoundTrip(req)
		if err != nil {
			if !netRetried && ctx.Err() == nil {
				netRetried = true
				continue
			}
			return nil, err
		}
		t.rememberNonce(t.tokenURL, res)
		b, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes+1))
		_ = res.Body.Close()
		if err != nil {
			if !netRetried && ctx.Err() == nil {
				netRetried = true
				continue
			}
			return nil, fmt.Errorf("reading the token response: %w", err)
		}
		if len(b) > maxResponseBytes {
			return nil, errors.New("the token response is larger than 1 MiB")
		}
		if res.StatusCode != http.StatusOK {
			oe := parseOAuthError(res.StatusCode, b)
			if oe.Code == errUseDPoPNonce && t.dpop != nil && !nonceRetried && res.Header.Get("DPoP-Nonce") != "" {
				nonceRetried = true
				continue
			}
			return nil, oe
		}
		tok, err := ParseTokenResponse(b, issued)
		if err != nil {
			return nil, err
		}
		if tok.isDPoP() && t.dpop == nil {
			return nil, errors.New("the token endpoint issued a DPoP-bound token, and the client has no DPoP key")
		}
		if tok.RefreshToken == "" {
			tok.RefreshToken = refreshToken // a server that does not rotate
		}
		if tok.Scope == "" {
			tok.Scope = scope
		}
		return tok, nil
	}
}

func parseOAuthError(status int, body []byte) *OAuthError {
	var e struct {
		Code        string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(body, &e)
	if e.Code == "" {
		e.Code = "(no OAuth error code)"
	}
	return &OAuthError{StatusCode: status, Code: truncate(e.Code, 64), Description: truncate(e.Description, 200)}
}

// origin is scheme://host[:port] of u, lowercased: the key of DPoP nonces.
func origin(u *url.URL) string { return strings.ToLower(u.Scheme + "://" + u.Host) }

// nonce returns the last DPoP nonce the server of u gave.
func (t *Transport) nonce(u *url.URL) string {
	t.nonceMu.Lock()
	defer t.nonceMu.Unlock()
	return t.nonces[origin(u)]
}

// rememberNonce keeps the DPoP-Nonce of a response (RFC 9449 §8.2: a server may send a
// new nonce with any response).
func (t *Transport) rememberNonce(u *url.URL, res *http.Response) {
	n := res.Header.Get("DPoP-Nonce")
	if n == "" || t.dpop == nil || len(n) > 512 {
		return
	}
	t.nonceMu.Lock()
	t.nonces[origin(u)] = n
	t.nonceMu.Unlock()
}
