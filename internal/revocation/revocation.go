// Package revocation holds the revoked-token set the verifier consults after a token's
// signature and claims have been checked. A Set is built once per bundle and never
// changes, so lookups need no locking.
package revocation

import (
	"github.com/keyward-dev/keyward/internal/bundle"
)

// Token is what a revocation can match in a verified token.
type Token struct {
	JTI, Subject, SessionID, KeyID, ClientID string
	// IssuedAt is the token's iat in unix seconds, 0 if absent.
	IssuedAt int64
}

// Set is an immutable revocation set with O(1) lookups (maps), built from a bundle.
// The zero value and a nil *Set are empty sets.
type Set struct {
	jti, sid, kid map[string]struct{}
	// sub and client_id entries carry an IssuedBefore cut-off (0: every token).
	sub, clientID map[string]int64
	n             int
}

// New builds a set from a bundle's revocations. Duplicate values are merged as
// bundle.Revocations.Normalize merges them: the widest IssuedBefore wins.
func New(r bundle.Revocations) *Set {
	s := &Set{}
	s.jti = valueSet(r.JTI)
	s.sid = valueSet(r.Session)
	s.kid = valueSet(r.KeyID)
	s.sub = cutoffMap(r.Subject)
	s.clientID = cutoffMap(r.ClientID)
	s.n = len(s.jti) + len(s.sid) + len(s.kid) + len(s.sub) + len(s.clientID)
	return s
}

func valueSet(l []bundle.Revoked) map[string]struct{} {
	if len(l) == 0 {
		return nil
	}
	m := make(map[string]struct{}, len(l))
	for _, e := range l {
		m[e.Value] = struct{}{}
	}
	return m
}

func cutoffMap(l []bundle.Revoked) map[string]int64 {
	if len(l) == 0 {
		return nil
	}
	m := make(map[string]int64, len(l))
	for _, e := range l {
		b, seen := m[e.Value]
		switch {
		case !seen:
			m[e.Value] = e.IssuedBefore
		case b == 0 || e.IssuedBefore == 0:
			m[e.Value] = 0
		default:
			m[e.Value] = max(b, e.IssuedBefore)
		}
	}
	return m
}

// Len is the number of distinct revoked values.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// Check returns the claim ("jti", "sub", "sid", "kid", "client_id") of the first
// revocation that matches, or "".
// sub/client_id entries with IssuedBefore b revoke tokens with IssuedAt < b; b == 0
// revokes all; a token without iat is revoked (fail closed).
// Empty token values never match (the bundle refuses empty revoked values).
func (s *Set) Check(t Token) string {
	if s == nil || s.n == 0 {
		return ""
	}
	if t.JTI != "" {
		if _, ok := s.jti[t.JTI]; ok {
			return "jti"
		}
	}
	if t.Subject != "" && revokedAt(s.sub, t.Subject, t.IssuedAt) {
		return "sub"
	}
	if t.SessionID != "" {
		if _, ok := s.sid[t.SessionID]; ok {
			return "sid"
		}
	}
	if t.KeyID != "" {
		if _, ok := s.kid[t.KeyID]; ok {
			return "kid"
		}
	}
	if t.ClientID != "" && revokedAt(s.clientID, t.ClientID, t.IssuedAt) {
		return "client_id"
	}
	return ""
}

func revokedAt(m map[string]int64, v string, iat int64) bool {
	b, ok := m[v]
	if !ok {
		return false
	}
	return b == 0 || iat <= 0 || iat < b
}
