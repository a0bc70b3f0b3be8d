package sidecar

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"sync"
	"time"
)

// AuditRecord is one line of the audit log: one per rejected request, and one per
// accepted request when accepted requests are audited. It never holds a token: at most
// the first 12 hex digits of the token's SHA-256.
type AuditRecord struct {
	Time        string `json:"time"`     // RFC 3339, UTC, nanoseconds
	Decision    string `json:"decision"` // "accept", "reject"
	Reason      string `json:"reason"`   // the metric reason label
	Method      string `json:"method"`
	Path        string `json:"path"` // URL path, without the query
	Status      int    `json:"status"`
	Subject     string `json:"sub,omitempty"`
	ClientID    string `json:"client_id,omitempty"`
	KID         string `json:"kid,omitempty"`
	JTI         string `json:"jti,omitempty"`
	TokenSHA256 string `json:"token_sha256,omitempty"` // first 12 hex digits
	Generation  int64  `json:"generation"`             // bundle generation in force, 0 when none
}

// Auditor writes audit records as JSON lines. Each record is written with one Write call
// under a lock, so lines never interleave.
type Auditor struct {
	mu       sync.Mutex
	w        io.Writer
	accepted bool
}

// NewAuditor writes records to w; accepted requests are audited too when accepted is true.
// A nil w discards everything.
func NewAuditor(w io.Writer, accepted bool) *Auditor {
	return &Auditor{w: w, accepted: accepted}
}

// AuditsAccepted reports whether accepted requests are audited.
func (a *Auditor) AuditsAccepted() bool { return a != nil && a.w != nil && a.accepted }

// Write writes one record.
func (a *Auditor) Write(rec *AuditRecord) {
	if a == nil || a.w == nil {
		return
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return
	}
	line = append(line, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	_, _ = a.w.Write(line)
}

// TokenFingerprint is the first 12 hex digits of the SHA-256 of the token: enough to
// correlate records, never enough to recover or replay the token.
func TokenFingerprint(token string) string {
	if token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}

func auditTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
