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
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// OAuth 2.0 error codes (RFC 6749 §5.2, RFC 7009 §2.2.1, RFC 8693 §2.2.2, RFC 9449 §7/§8).
const (
	ErrInvalidRequest       = "invalid_request"
	ErrInvalidClient        = "invalid_client"
	ErrInvalidGrant         = "invalid_grant"
	ErrUnauthorizedClient   = "unauthorized_client"
	ErrUnsupportedGrantType = "unsupported_grant_type"
	ErrInvalidScope         = "invalid_scope"
	ErrInvalidTarget        = "invalid_target"
	ErrInvalidDPoPProof     = "invalid_dpop_proof"
	ErrUseDPoPNonce         = "use_dpop_nonce"
	ErrServerError          = "server_error"
	ErrTemporarilyUnavail   = "temporarily_unavailable"
)

// Limits on what a request may carry; larger requests are refused before parsing.
const (
	maxFormBytes = 16 << 10
	maxJSONBytes = 16 << 10
	maxTokenLen  = 8 << 10
)

// oauthError is an error response. Description is for the client and never quotes a
// token; Reason is a stable low-cardinality label for metrics and audit records.
type oauthError struct {
	Status      int
	Code        string
	Description string
	Reason      string
	// Nonce is sent as DPoP-Nonce (use_dpop_nonce, RFC 9449 §8).
	Nonce string
	// Challenge is sent as WWW-Authenticate (401 responses).
	Challenge string
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

func newError(status int, code, reason, description string) *oauthError {
	return &oauthError{Status: status, Code: code, Reason: reason, Description: description}
}

func invalidRequest(reason, description string) *oauthError {
	return newError(http.StatusBadRequest, ErrInvalidRequest, reason, description)
}

func invalidGrant(reason, description string) *oauthError {
	return newError(http.StatusBadRequest, ErrInvalidGrant, reason, description)
}

func invalidScope(description string) *oauthError {
	return newError(http.StatusBadRequest, ErrInvalidScope, "scope", description)
}

func invalidDPoP(reason, description string) *oauthError {
	return newError(http.StatusBadRequest, ErrInvalidDPoPProof, "dpop_"+reason, description)
}

// invalidClient is a failed caller authentication (mint and introspection callers).
func invalidClient(reason, description string) *oauthError {
	e := newError(http.StatusUnauthorized, ErrInvalidClient, reason, description)
	e.Challenge = `Bearer error="invalid_token"`
	return e
}

func unavailable(reason, description string) *oauthError {
	return newError(http.StatusServiceUnavailable, ErrTemporarilyUnavail, reason, description)
}

func serverError(reason string) *oauthError {
	return newError(http.StatusInternalServerError, ErrServerError, reason, "the token service failed; try again")
}

// writeError writes an OAuth error response.
func writeError(w http.ResponseWriter, e *oauthError) {
	h := w.Header()
	if e.Challenge != "" {
		h.Set("WWW-Authenticate", e.Challenge)
	}
	if e.Nonce != "" {
		h.Set("DPoP-Nonce", e.Nonce)
	}
	if e.Status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	body := map[string]string{"error": e.Code}
	if e.Description != "" {
		body["error_description"] = e.Description
	}
	writeJSON(w, e.Status, body)
}

// writeJSON writes a JSON response that no cache may keep (RFC 6749 §5.1).
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
	}
	writeRaw(w, status, "application/json", b)
}

func writeRaw(w http.ResponseWriter, status int, contentType string, b []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// form is a parsed application/x-www-form-urlencoded body in which every parameter
// appears at most once (RFC 6749 §3.2).
type form map[string]string

// get returns a parameter, "" when absent.
func (f form) get(name string) string { return f[name] }

// readForm parses the request body strictly: the media type must be
// application/x-www-form-urlencoded, the body at most maxFormBytes, and no parameter
// may repeat. Parameters in the URL query are never read.
func readForm(r *http.Request) (form, *oauthError) {
	if err := requireMediaType(r, "application/x-www-form-urlencoded"); err != nil {
		return nil, err
	}
	body, err := readBody(r, maxFormBytes)
	if err != nil {
		return nil, err
	}
	return parseForm(string(body))
}

// parseForm is readForm's parser (fuzzed).
func parseForm(body string) (form, *oauthError) {
	values, perr := url.ParseQuery(body)
	if perr != nil {
		return nil, invalidRequest("malformed", "the request body is not valid form encoding")
	}
	f := make(form, len(values))
	for k, v := range values {
		if len(v) != 1 {
			return nil, invalidRequest("repeated_parameter", "parameter "+strconv.Quote(safeName(k))+" is repeated")
		}
		if strings.ContainsFunc(v[0], isControl) {
			return nil, invalidRequest("malformed", "parameter "+strconv.Quote(safeName(k))+" contains control characters")
		}
		f[k] = v[0]
	}
	return f, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// safeName bounds a client-supplied parameter name before it is echoed in an error.
func safeName(s string) string {
	if len(s) > 64 || strings.ContainsFunc(s, isControl) {
		return "(invalid name)"
	}
	return s
}

func requireMediaType(r *http.Request, want string) *oauthError {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !strings.EqualFold(mt, want) {
		return invalidRequest("content_type", "the request body must be "+want)
	}
	return nil
}

func readBody(r *http.Request, limit int64) ([]byte, *oauthError) {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, invalidRequest("malformed", "the request body could not be read")
	}
	if int64(len(body)) > limit {
		return nil, newError(http.StatusRequestEntityTooLarge, ErrInvalidRequest, "too_large",
			"the request body is larger than "+strconv.FormatInt(limit, 10)+" bytes")
	}
	return body, nil
}

// bearerToken returns the token of the one Authorization: Bearer header (RFC 6750 §2.1).
func bearerToken(r *http.Request) (string, *oauthError) {
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return "", invalidClient("no_credentials", "the caller must authenticate with its ServiceAccount token (Authorization: Bearer)")
	}
	if len(values) > 1 {
		return "", invalidClient("malformed", "more than one Authorization header")
	}
	scheme, tok, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || len(tok) > maxTokenLen || strings.ContainsAny(tok, " \t") {
		return "", invalidClient("malformed", "the Authorization header must be Bearer <ServiceAccount token>")
	}
	return tok, nil
}

// errorAs returns err as an *oauthError, or a server error.
func errorAs(err error) *oauthError {
	var oe *oauthError
	if errors.As(err, &oe) {
		return oe
	}
	return serverError("internal")
}
