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

// Package store is the token service's persistence contract: refresh-token families
// (sessions) and their refresh tokens, stored by hash only. Two implementations satisfy it
// and are held to the same contract suite (storetest): an embedded store (one replica, a
// file on a volume) and PostgreSQL (several replicas).
//
// The one operation that must be atomic across replicas is Rotate: it spends a refresh
// token and issues its successor, or recognizes a benign double-submit (the same token
// presented again within the replay window: the earlier response is returned), or a reuse
// (a spent token presented later: the family is revoked in the same transaction).
package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"time"
)

// Errors every implementation returns (wrapped is fine; test with errors.Is).
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
)

// Hash is the SHA-256 of an opaque refresh token. The token itself is never stored.
type Hash [sha256.Size]byte

// HashToken hashes an opaque refresh token.
func HashToken(token string) Hash { return sha256.Sum256([]byte(token)) }

// Family is a refresh-token family: one login session. Its ID is the `sid` of every access
// token issued in it, so a RevocationEntry for the session reaches them all.
type Family struct {
	ID       string // random, URL-safe, unique
	Policy   string // "namespace/name" of the TokenPolicy
	Subject  string
	ClientID string
	Scope    string // space-separated
	JKT      string // RFC 9449 thumbprint the family is bound to; "" when unbound
	// CreatedAt + the absolute lifetime.
	CreatedAt time.Time
	ExpiresAt time.Time
	// IdleTimeout: the family expires when LastUsedAt + IdleTimeout passes (0: no idle limit).
	IdleTimeout time.Duration
	LastUsedAt  time.Time
	// Rotations counts the tokens spent in this family.
	Rotations int64
	// RevokedAt is zero while the family lives.
	RevokedAt    time.Time
	RevokeReason string
}

// Live reports whether the family may still be refreshed at now.
func (f Family) Live(now time.Time) bool {
	if !f.RevokedAt.IsZero() || !now.Before(f.ExpiresAt) {
		return false
	}
	return f.IdleTimeout == 0 || now.Before(f.LastUsedAt.Add(f.IdleTimeout))
}

// RotateRequest spends Presented and makes Next the family's current token.
type RotateRequest struct {
	Presented Hash
	Next      Hash
	Now       time.Time
	// ReplayWindow: a spent token presented again within this time of being spent is a
	// benign double-submit (two tabs, a retried request): the store returns the Replay
	// recorded when it was spent. Later, it is a reuse.
	ReplayWindow time.Duration
	// Replay is what the issuer answered for this rotation (sealed by the issuer with an
	// AEAD key; opaque to the store). Kept for ReplayWindow, then dropped.
	Replay []byte
}

// Outcome of Rotate.
type Outcome int

// Outcomes.
const (
	// Rotated: Presented was the current token; it is spent and Next is current. The
	// family's LastUsedAt is Now and Rotations grew by one.
	Rotated Outcome = iota + 1
	// Replayed: Presented was spent within ReplayWindow (Now before spent + ReplayWindow)
	// and GC has not dropped its Replay; RotateResult.Replay holds the response recorded
	// then. Nothing changes (Next is not stored).
	Replayed
	// Reused: Presented was spent longer ago, or its Replay was dropped: the family is
	// revoked (ReuseReason), in the same transaction.
	Reused
	// Unknown: no such token (never issued, or garbage-collected).
	Unknown
	// Dead: the family is revoked or expired (absolute or idle) at Now; nothing changes.
	// Checked before the others: a spent token of a dead family is Dead, never Replayed.
	Dead
)

// ReuseReason is the RevokeReason that Rotate records for Reused.
const ReuseReason = "refresh token reuse"

// RotateResult is the outcome, the family as it is after the call (zero for Unknown), and
// for Replayed the recorded response.
type RotateResult struct {
	Outcome Outcome
	Family  Family
	Replay  []byte
}

// Store is the contract. Every method is safe for concurrent use, by goroutines and (for
// PostgreSQL) by several processes.
type Store interface {
	// CreateFamily stores a new family with its first refresh token. ErrExists when the
	// family ID or the token hash exists.
	CreateFamily(ctx context.Context, f Family, first Hash) error
	// Rotate is atomic: of many concurrent calls presenting the same current token, exactly
	// one gets Rotated; the others get Replayed (within the window) with its Replay.
	// ErrExists (and no change) when Next exists already.
	Rotate(ctx context.Context, r RotateRequest) (RotateResult, error)
	// Lookup returns the family of a token and whether the token is the family's current
	// one (not spent). ErrNotFound for unknown tokens.
	Lookup(ctx context.Context, h Hash) (f Family, current bool, err error)
	// Family returns a family by ID. ErrNotFound when absent.
	Family(ctx context.Context, id string) (Family, error)
	// RevokeFamily revokes a family (idempotent: the first reason and time stay) and
	// returns it. ErrNotFound when absent.
	RevokeFamily(ctx context.Context, id, reason string, at time.Time) (Family, error)
	// RevokeSubject revokes every family of subject under policy that is Live at at;
	// returns their IDs in ascending order.
	RevokeSubject(ctx context.Context, policy, subject, reason string, at time.Time) ([]string, error)
	// RevokedSince returns the families revoked at or after since (RevokedAt ≥ since),
	// ascending by RevokedAt, then by ID; live families are never included. The token
	// service re-queues their sessions' RevocationEntries from it (a crash may lose the
	// in-memory queue between the store write and the entry's creation), so it asks only for
	// the last access-token lifetime; GC must not delete a revoked family sooner.
	RevokedSince(ctx context.Context, since time.Time) ([]Family, error)
	// GC drops Replay data older than its window (spent + replayWindow ≤ now) and deletes
	// families (and their tokens) that expired or were revoked more than retain before now
	// (dead since the earliest of RevokedAt, ExpiresAt, LastUsedAt + IdleTimeout, and that
	// + retain < now). It returns the number of families deleted.
	GC(ctx context.Context, now time.Time, replayWindow, retain time.Duration) (int, error)
	// Close releases the store.
	Close() error
}
