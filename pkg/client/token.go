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
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Token types of a token response (RFC 6749 §7.1, RFC 9449 §5), compared case-insensitively.
const (
	TokenTypeBearer = "Bearer"
	TokenTypeDPoP   = "DPoP"
)

// Token is what the client keeps of a session: the access token, the refresh token that
// gets the next one, and when to refresh. Its String and GoString methods never print a
// token, so a Token in a log line or an error message stays redacted.
type Token struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	// Expiry is when the access token expires by the client's clock (the time the request
	// was sent plus expires_in, so a little early rather than late); zero when the server
	// did not say, and then only a 401 triggers a refresh.
	Expiry time.Time `json:"expiry,omitzero"`
	// RefreshAt is when the client refreshes: between MinRefreshFraction and
	// MaxRefreshFraction of the lifetime, drawn once per token, so that many clients
	// started together do not refresh together.
	RefreshAt time.Time `json:"refresh_at,omitzero"`
}

// String describes the token without its secrets.
func (t Token) String() string {
	return fmt.Sprintf("Token{type: %s, expiry: %s, refresh token: %t, scope: %q}",
		t.TokenType, t.Expiry.UTC().Format(time.RFC3339), t.RefreshToken != "", t.Scope)
}

// GoString is String, so %#v does not print the tokens either.
func (t Token) GoString() string { return t.String() }

// isDPoP reports whether the access token is DPoP-bound (token_type DPoP).
func (t *Token) isDPoP() bool { return strings.EqualFold(t.TokenType, TokenTypeDPoP) }

// margin is how long before Expiry the access token is no longer sent: 10 s, or less for
// short lifetimes (half the time between RefreshAt and Expiry).
func (t *Token) margin() time.Duration {
	m := 10 * time.Second
	if !t.RefreshAt.IsZero() {
		m = min(m, t.Expiry.Sub(t.RefreshAt)/2)
	}
	return max(m, 0)
}

// usable reports whether the access token may still be sent at now.
func (t *Token) usable(now time.Time) bool {
	if t == nil || t.AccessToken == "" {
		return false
	}
	return t.Expiry.IsZero() || now.Before(t.Expiry.Add(-t.margin()))
}

// due reports whether the token should be refreshed at now.
func (t *Token) due(now time.Time) bool {
	return !t.RefreshAt.IsZero() && !now.Before(t.RefreshAt)
}

// refreshTime draws the refresh time of a token obtained at issued that expires at expiry:
// issued + lifetime × (lo + (hi-lo) × u), with u in [0, 1).
func refreshTime(issued, expiry time.Time, lo, hi, u float64) time.Time {
	if expiry.IsZero() || !expiry.After(issued) {
		return time.Time{}
	}
	f := lo + (hi-lo)*u
	return issued.Add(time.Duration(float64(expiry.Sub(issued)) * f))
}

// maxResponseBytes bounds a token endpoint response.
const maxResponseBytes = 1 << 20

// tokenResponse is the RFC 6749 §5.1 success response.
type tokenResponse struct {
	AccessToken  string          `json:"access_token"`
	TokenType    string          `json:"token_type"`
	ExpiresIn    json.RawMessage `json:"expires_in"`
	RefreshToken string          `json:"refresh_token"`
	Scope        string          `json:"scope"`
}

// ParseTokenResponse reads a token endpoint success response (RFC 6749 §5.1: a token
// response of the refresh grant, a token exchange, or the Keyward issuer's mint call)
// obtained at issued (the time the request was sent), for seeding a TokenStore or
// Transport.SetToken. RefreshAt is left zero; SetToken draws it.
func ParseTokenResponse(body []byte, issued time.Time) (*Token, error) {
	var r tokenResponse
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&r); err != nil {
		return nil, errors.New("the token response is not a JSON object")
	}
	if r.AccessToken == "" {
		return nil, errors.New("the token response has no access_token")
	}
	switch {
	case strings.EqualFold(r.TokenType, TokenTypeBearer):
		r.TokenType = TokenTypeBearer
	case strings.EqualFold(r.TokenType, TokenTypeDPoP):
		r.TokenType = TokenTypeDPoP
	default:
		return nil, fmt.Errorf("the token response has an unsupported token_type %q", truncate(r.TokenType, 32))
	}
	t := &Token{AccessToken: r.AccessToken, TokenType: r.TokenType, RefreshToken: r.RefreshToken, Scope: r.Scope}
	secs, err := expiresIn(r.ExpiresIn)
	if err != nil {
		return nil, err
	}
	if secs > 0 {
		t.Expiry = issued.Add(time.Duration(secs) * time.Second)
	}
	return t, nil
}

// expiresIn reads expires_in: a number of seconds, or (as some servers send it) a string
// of one; absent or null is 0 (unknown).
func expiresIn(raw json.RawMessage) (int64, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return 0, nil
	}
	if u, err := strconv.Unquote(s); err == nil {
		s = u
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1<<31 {
		return 0, errors.New("the token response has an invalid expires_in")
	}
	return int64(f), nil
}

// truncate bounds a server-supplied string before it goes into an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
