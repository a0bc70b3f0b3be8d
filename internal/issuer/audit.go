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
	"io"
	"sync"
	"time"
)

// Audit events.
const (
	AuditIssued     = "issued"       // tokens issued by mint or token exchange
	AuditRefreshed  = "refreshed"    // a refresh token rotated
	AuditReplayed   = "replayed"     // a double-submit within the replay window got the same pair
	AuditReuse      = "reuse"        // a spent refresh token came back: family revoked
	AuditRevoked    = "revoked"      // a family or an access token revoked (RFC 7009, logout, anomaly)
	AuditRejected   = "rejected"     // any refused request
	AuditBurst      = "burst"        // refreshes above the policy's per-minute limit
	AuditIntrospect = "introspected" // an introspection answered
)

// AuditRecord is one JSON line. It never holds a token: `access` and `refresh` are
// fingerprints (first 12 hex digits of the token's SHA-256; the verifier's audit records
// fingerprint access tokens the same way, and the store keys refresh tokens by the full
// hash).
type AuditRecord struct {
	Time    string `json:"time"`
	Event   string `json:"event"`
	Policy  string `json:"policy,omitempty"`
	Grant   string `json:"grant,omitempty"`
	Subject string `json:"sub,omitempty"`
	Session string `json:"sid,omitempty"`
	Client  string `json:"client_id,omitempty"`
	Caller  string `json:"caller,omitempty"` // the authenticated ServiceAccount of a mint or introspection call
	Access  string `json:"access,omitempty"`
	Refresh string `json:"refresh,omitempty"`
	JKT     string `json:"jkt,omitempty"`
	Error   string `json:"error,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Source  string `json:"source,omitempty"`
}

// Auditor writes records as JSON lines; a nil Auditor or writer drops them.
type Auditor struct {
	mu      sync.Mutex
	w       io.Writer
	onError func(error)
}

// NewAuditor writes to w; onError (may be nil) sees write failures.
func NewAuditor(w io.Writer, onError func(error)) *Auditor {
	return &Auditor{w: w, onError: onError}
}

// Write stamps and writes rec.
func (a *Auditor) Write(now time.Time, rec *AuditRecord) {
	if a == nil || a.w == nil {
		return
	}
	rec.Time = now.UTC().Format(time.RFC3339Nano)
	line, err := json.Marshal(rec)
	if err != nil {
		return
	}
	line = append(line, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.w.Write(line); err != nil && a.onError != nil {
		a.onError(err)
	}
}
