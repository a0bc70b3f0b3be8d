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

// Package storetest is the contract suite for store.Store: every implementation runs it
// from its own tests, so the embedded store and PostgreSQL behave the same.
//
//	func TestContract(t *testing.T) { storetest.Run(t, openForTest) }
//
// Time never comes from the wall clock: every call gets its Now from a fixed base time, so
// boundaries are tested exactly. Times are compared at microsecond precision (PostgreSQL's).
//
// Beyond the comments in package store, the suite pins these decisions:
//
//   - Rotate decides in this order: Unknown (no such token) → Dead (the family is not Live
//     at Now) → Rotated (the token is current) → Replayed (spent, Now before SpentAt +
//     ReplayWindow, and its Replay not yet dropped by GC) → Reused. So a spent token of a
//     revoked or expired family is Dead, never Replayed (a logout inside the window is not
//     undone) nor Reused (nothing left to revoke).
//   - The window is half-open: presented at exactly SpentAt + ReplayWindow is a reuse.
//   - A spent token whose Replay GC has dropped is Reused even within the caller's window:
//     the store has nothing to replay. (The issuer passes GC the same window it passes
//     Rotate, so this happens only when the window shrank.)
//   - Rotate with a Next that already exists fails with ErrExists and changes nothing.
//   - Lookup's current means "not spent"; whether the family may be refreshed is
//     Family.Live.
//   - RevokeSubject returns the IDs it revoked in ascending order; families already
//     revoked or expired at `at` are left alone.
//   - RevokedSince includes a family revoked exactly at since (microsecond precision),
//     orders by RevokedAt then ID, reports a re-revoked family at its first revocation, and
//     never lists a live or a merely expired family, however revocation happened (RevokeFamily,
//     RevokeSubject, or Rotate detecting a reuse).
//   - GC drops a Replay once now ≥ SpentAt + replayWindow, and deletes a family (with all
//     its tokens, spent or not) once it has been dead — revoked, expired, or idle, whichever
//     came first — for more than retain; its tokens are Unknown afterwards.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward-dev/keyward/internal/issuer/store"
)

// base is the fixed "now" the suite starts from; every time is derived from it.
var base = time.Date(2026, time.March, 14, 15, 9, 26, 0, time.UTC)

const window = 30 * time.Second

// Run runs the contract suite. open returns a new, empty store for one subtest and
// arranges (t.Cleanup) for it to be closed and removed.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	cases := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CreateAndLookup", testCreateAndLookup},
		{"CreateDuplicate", testCreateDuplicate},
		{"NotFound", testNotFound},
		{"RotateCurrent", testRotateCurrent},
		{"RotateNextExists", testRotateNextExists},
		{"ReplayWithinWindow", testReplayWithinWindow},
		{"ReuseAfterWindow", testReuseAfterWindow},
		{"Unknown", testUnknown},
		{"Dead", testDead},
		{"DeadBeforeReplayAndReuse", testDeadBeforeReplayAndReuse},
		{"RevokeFamilyIdempotent", testRevokeFamilyIdempotent},
		{"RevokeSubject", testRevokeSubject},
		{"RevokedSince", testRevokedSince},
		{"GCReplay", testGCReplay},
		{"GCFamilies", testGCFamilies},
		{"Chain100", testChain100},
		{"RaceRotate", func(t *testing.T, s store.Store) { raceRotate(t, []store.Store{s}) }},
		{"RaceReuse", func(t *testing.T, s store.Store) { raceReuse(t, []store.Store{s}) }},
		{"ConcurrentFamilies", testConcurrentFamilies},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, open(t)) })
	}
}

// RunReplicas runs the races across two Store instances opened on the same database (two
// replicas of the issuer). open returns both and arranges for them to be closed.
func RunReplicas(t *testing.T, open func(t *testing.T) (a, b store.Store)) {
	t.Helper()
	t.Run("RaceRotate", func(t *testing.T) {
		a, b := open(t)
		raceRotate(t, []store.Store{a, b})
	})
	t.Run("RaceReuse", func(t *testing.T) {
		a, b := open(t)
		raceReuse(t, []store.Store{a, b})
	})
	t.Run("SeenByTheOther", func(t *testing.T) {
		a, b := open(t)
		ctx := t.Context()
		f := family("fam-replicas")
		mustCreate(t, a, f, tok("r0"))
		now := base.Add(time.Minute)
		res := mustRotate(t, b, req(tok("r0"), tok("r1"), now, "one"))
		wantOutcome(t, res, store.Rotated)
		res = mustRotate(t, a, req(tok("r0"), tok("r2"), now.Add(time.Second), "two"))
		wantOutcome(t, res, store.Replayed)
		wantReplay(t, res, "one")
		res = mustRotate(t, a, req(tok("r0"), tok("r3"), now.Add(window), "three"))
		wantOutcome(t, res, store.Reused)
		got, err := b.Family(ctx, f.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.RevokedAt.IsZero() || got.RevokeReason != store.ReuseReason {
			t.Fatalf("replica b sees family %+v, want it revoked for reuse", got)
		}
	})
}

// ---- fixtures

func tok(name string) store.Hash { return store.HashToken("token-" + name) }

// family is a live family created at base: 24h absolute, no idle limit.
func family(id string) store.Family {
	return store.Family{
		ID:         id,
		Policy:     "team-a/web",
		Subject:    "alice",
		ClientID:   "web-app",
		Scope:      "openid offline_access orders:read",
		JKT:        "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
		CreatedAt:  base,
		ExpiresAt:  base.Add(24 * time.Hour),
		LastUsedAt: base,
	}
}

func req(presented, next store.Hash, now time.Time, replay string) store.RotateRequest {
	return store.RotateRequest{
		Presented:    presented,
		Next:         next,
		Now:          now,
		ReplayWindow: window,
		Replay:       []byte(replay),
	}
}

func mustCreate(t testing.TB, s store.Store, f store.Family, first store.Hash) {
	t.Helper()
	if err := s.CreateFamily(context.Background(), f, first); err != nil {
		t.Fatalf("CreateFamily(%s): %v", f.ID, err)
	}
}

func mustRotate(t testing.TB, s store.Store, r store.RotateRequest) store.RotateResult {
	t.Helper()
	res, err := s.Rotate(context.Background(), r)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	return res
}

func mustFamily(t testing.TB, s store.Store, id string) store.Family {
	t.Helper()
	f, err := s.Family(context.Background(), id)
	if err != nil {
		t.Fatalf("Family(%s): %v", id, err)
	}
	return f
}

func wantOutcome(t testing.TB, res store.RotateResult, want store.Outcome) {
	t.Helper()
	if res.Outcome != want {
		t.Fatalf("outcome %s, want %s (family %+v)", OutcomeName(res.Outcome), OutcomeName(want), res.Family)
	}
}

func wantReplay(t testing.TB, res store.RotateResult, want string) {
	t.Helper()
	if !bytes.Equal(res.Replay, []byte(want)) {
		t.Fatalf("replay %q, want %q", res.Replay, want)
	}
}

// wantFamily fails unless got equals want (times compared with Equal).
func wantFamily(t testing.TB, got, want store.Family) {
	t.Helper()
	if d := DiffFamily(got, want); d != "" {
		t.Fatalf("family %s differs: %s", want.ID, d)
	}
}

// wantToken fails unless h belongs to family id and is (or is not) current.
func wantToken(t testing.TB, s store.Store, h store.Hash, id string, current bool) {
	t.Helper()
	f, cur, err := s.Lookup(context.Background(), h)
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	if f.ID != id || cur != current {
		t.Fatalf("Lookup: family %q current %t, want family %q current %t", f.ID, cur, id, current)
	}
}

func wantNoToken(t testing.TB, s store.Store, h store.Hash) {
	t.Helper()
	if _, _, err := s.Lookup(context.Background(), h); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Lookup of a token that should not exist: err %v, want ErrNotFound", err)
	}
}

// DiffFamily describes how got differs from want ("" when equal); times are compared with
// time.Equal, so locations and monotonic readings do not matter.
func DiffFamily(got, want store.Family) string {
	var d []string
	str := func(name, g, w string) {
		if g != w {
			d = append(d, fmt.Sprintf("%s %q, want %q", name, g, w))
		}
	}
	tm := func(name string, g, w time.Time) {
		if !g.Equal(w) {
			d = append(d, fmt.Sprintf("%s %s, want %s", name, g, w))
		}
	}
	str("ID", got.ID, want.ID)
	str("Policy", got.Policy, want.Policy)
	str("Subject", got.Subject, want.Subject)
	str("ClientID", got.ClientID, want.ClientID)
	str("Scope", got.Scope, want.Scope)
	str("JKT", got.JKT, want.JKT)
	str("RevokeReason", got.RevokeReason, want.RevokeReason)
	tm("CreatedAt", got.CreatedAt, want.CreatedAt)
	tm("ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	tm("LastUsedAt", got.LastUsedAt, want.LastUsedAt)
	tm("RevokedAt", got.RevokedAt, want.RevokedAt)
	if got.IdleTimeout != want.IdleTimeout {
		d = append(d, fmt.Sprintf("IdleTimeout %s, want %s", got.IdleTimeout, want.IdleTimeout))
	}
	if got.Rotations != want.Rotations {
		d = append(d, fmt.Sprintf("Rotations %d, want %d", got.Rotations, want.Rotations))
	}
	return strings.Join(d, "; ")
}

// OutcomeName names an outcome for messages.
func OutcomeName(o store.Outcome) string {
	switch o {
	case store.Rotated:
		return "Rotated"
	case store.Replayed:
		return "Replayed"
	case store.Reused:
		return "Reused"
	case store.Unknown:
		return "Unknown"
	case store.Dead:
		return "Dead"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// ---- cases

func testCreateAndLookup(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := family("fam-1")
	f.IdleTimeout = 90 * time.Minute
	mustCreate(t, s, f, tok("a"))
	wantFamily(t, mustFamily(t, s, f.ID), f)

	got, current, err := s.Lookup(ctx, tok("a"))
	if err != nil {
		t.Fatal(err)
	}
	if !current {
		t.Fatal("the first token is not current")
	}
	wantFamily(t, got, f)

	// Empty optional fields round-trip too.
	g := store.Family{ID: "fam-2", Policy: "p/q", Subject: "bob", CreatedAt: base, ExpiresAt: base.Add(time.Hour), LastUsedAt: base}
	mustCreate(t, s, g, tok("b"))
	wantFamily(t, mustFamily(t, s, g.ID), g)
}

func testCreateDuplicate(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := family("fam-1")
	mustCreate(t, s, f, tok("a"))

	// Same family ID, new token: refused, and the token was not stored.
	if err := s.CreateFamily(ctx, f, tok("b")); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate family ID: err %v, want ErrExists", err)
	}
	wantNoToken(t, s, tok("b"))

	// New family ID, existing token: refused, and the family was not stored.
	g := family("fam-2")
	if err := s.CreateFamily(ctx, g, tok("a")); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate token: err %v, want ErrExists", err)
	}
	if _, err := s.Family(ctx, g.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("family of a refused create: err %v, want ErrNotFound", err)
	}
	wantToken(t, s, tok("a"), f.ID, true)
	wantFamily(t, mustFamily(t, s, f.ID), f)
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, family("fam-1"), tok("a"))
	if _, _, err := s.Lookup(ctx, tok("nope")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Lookup: err %v, want ErrNotFound", err)
	}
	if _, err := s.Family(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Family: err %v, want ErrNotFound", err)
	}
	if _, err := s.RevokeFamily(ctx, "nope", "logout", base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeFamily: err %v, want ErrNotFound", err)
	}
}

func testRotateCurrent(t *testing.T, s store.Store) {
	f := family("fam-1")
	f.IdleTimeout = time.Hour
	mustCreate(t, s, f, tok("a"))

	now := base.Add(50 * time.Minute)
	res := mustRotate(t, s, req(tok("a"), tok("b"), now, "pair-1"))
	wantOutcome(t, res, store.Rotated)
	if res.Replay != nil {
		t.Errorf("Rotated carries a replay %q", res.Replay)
	}
	want := f
	want.Rotations = 1
	want.LastUsedAt = now
	wantFamily(t, res.Family, want)
	wantFamily(t, mustFamily(t, s, f.ID), want)
	wantToken(t, s, tok("a"), f.ID, false)
	wantToken(t, s, tok("b"), f.ID, true)

	// The idle clock restarted at now: 50m later is still live (base+1h passed long ago).
	now2 := now.Add(50 * time.Minute)
	res = mustRotate(t, s, req(tok("b"), tok("c"), now2, "pair-2"))
	wantOutcome(t, res, store.Rotated)
	want.Rotations, want.LastUsedAt = 2, now2
	wantFamily(t, res.Family, want)
	wantToken(t, s, tok("b"), f.ID, false)
	wantToken(t, s, tok("c"), f.ID, true)
}

func testRotateNextExists(t *testing.T, s store.Store) {
	ctx := t.Context()
	f, g := family("fam-1"), family("fam-2")
	mustCreate(t, s, f, tok("a"))
	mustCreate(t, s, g, tok("b"))
	for _, next := range []store.Hash{tok("b"), tok("a")} {
		_, err := s.Rotate(ctx, req(tok("a"), next, base.Add(time.Minute), "x"))
		if !errors.Is(err, store.ErrExists) {
			t.Fatalf("Rotate to an existing Next: err %v, want ErrExists", err)
		}
	}
	wantFamily(t, mustFamily(t, s, f.ID), f)
	wantToken(t, s, tok("a"), f.ID, true)
	wantToken(t, s, tok("b"), g.ID, true)
	// And the token still rotates normally.
	wantOutcome(t, mustRotate(t, s, req(tok("a"), tok("c"), base.Add(time.Minute), "y")), store.Rotated)
}

func testReplayWithinWindow(t *testing.T, s store.Store) {
	f := family("fam-1")
	mustCreate(t, s, f, tok("a"))
	spent := base.Add(time.Minute)
	replay := "sealed\x00pair\xff" // arbitrary bytes, returned exactly
	first := mustRotate(t, s, req(tok("a"), tok("b"), spent, replay))
	wantOutcome(t, first, store.Rotated)

	for _, after := range []time.Duration{0, time.Second, window - time.Microsecond} {
		res := mustRotate(t, s, req(tok("a"), tok("x-"+after.String()), spent.Add(after), "other"))
		wantOutcome(t, res, store.Replayed)
		wantReplay(t, res, replay)
		wantFamily(t, res.Family, first.Family)
		wantNoToken(t, s, tok("x-"+after.String())) // Next is not stored
	}
	wantFamily(t, mustFamily(t, s, f.ID), first.Family)
	wantToken(t, s, tok("a"), f.ID, false)
	wantToken(t, s, tok("b"), f.ID, true)
}

func testReuseAfterWindow(t *testing.T, s store.Store) {
	f := family("fam-1")
	mustCreate(t, s, f, tok("a"))
	spent := base.Add(time.Minute)
	rotated := mustRotate(t, s, req(tok("a"), tok("b"), spent, "pair-1"))
	wantOutcome(t, rotated, store.Rotated)

	reuseAt := spent.Add(window) // the window is half-open
	res := mustRotate(t, s, req(tok("a"), tok("x"), reuseAt, "other"))
	wantOutcome(t, res, store.Reused)
	if res.Replay != nil {
		t.Errorf("Reused carries a replay %q", res.Replay)
	}
	revoked := rotated.Family
	revoked.RevokedAt = reuseAt
	revoked.RevokeReason = store.ReuseReason
	wantFamily(t, res.Family, revoked)
	wantFamily(t, mustFamily(t, s, f.ID), revoked)
	wantNoToken(t, s, tok("x"))

	// The successor dies with the family; the spent token stays dead; nothing changes.
	for _, p := range []store.Hash{tok("b"), tok("a")} {
		res = mustRotate(t, s, req(p, tok("y"), reuseAt.Add(time.Second), "late"))
		wantOutcome(t, res, store.Dead)
		wantFamily(t, res.Family, revoked)
	}
	wantNoToken(t, s, tok("y"))
	wantToken(t, s, tok("b"), f.ID, true) // not spent, but its family is not Live
	wantFamily(t, mustFamily(t, s, f.ID), revoked)
}

func testUnknown(t *testing.T, s store.Store) {
	mustCreate(t, s, family("fam-1"), tok("a"))
	res := mustRotate(t, s, req(tok("never-issued"), tok("b"), base.Add(time.Minute), "x"))
	wantOutcome(t, res, store.Unknown)
	wantFamily(t, res.Family, store.Family{})
	if res.Replay != nil {
		t.Errorf("Unknown carries a replay %q", res.Replay)
	}
	wantNoToken(t, s, tok("b"))
}

func testDead(t *testing.T, s store.Store) {
	ctx := t.Context()
	cases := []struct {
		name   string
		modify func(f *store.Family)
		revoke bool // revoked at base+1m with reason "logout"
		at     time.Duration
		want   store.Outcome
	}{
		{name: "absolute/before", modify: func(f *store.Family) { f.ExpiresAt = base.Add(time.Hour) }, at: time.Hour - time.Millisecond, want: store.Rotated},
		{name: "absolute/at", modify: func(f *store.Family) { f.ExpiresAt = base.Add(time.Hour) }, at: time.Hour, want: store.Dead},
		{name: "absolute/after", modify: func(f *store.Family) { f.ExpiresAt = base.Add(time.Hour) }, at: 48 * time.Hour, want: store.Dead},
		{name: "idle/before", modify: func(f *store.Family) { f.IdleTimeout = 10 * time.Minute }, at: 10*time.Minute - time.Millisecond, want: store.Rotated},
		{name: "idle/at", modify: func(f *store.Family) { f.IdleTimeout = 10 * time.Minute }, at: 10 * time.Minute, want: store.Dead},
		{name: "idle/no-limit", modify: func(f *store.Family) { f.IdleTimeout = 0 }, at: 23 * time.Hour, want: store.Rotated},
		{name: "revoked", revoke: true, at: 2 * time.Minute, want: store.Dead},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := family(fmt.Sprintf("fam-%d", i))
			if c.modify != nil {
				c.modify(&f)
			}
			first, next := tok(fmt.Sprintf("%d-a", i)), tok(fmt.Sprintf("%d-b", i))
			mustCreate(t, s, f, first)
			if c.revoke {
				var err error
				if f, err = s.RevokeFamily(ctx, f.ID, "logout", base.Add(time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
			res := mustRotate(t, s, req(first, next, base.Add(c.at), "pair"))
			wantOutcome(t, res, c.want)
			if c.want != store.Dead {
				return
			}
			if res.Replay != nil {
				t.Errorf("Dead carries a replay %q", res.Replay)
			}
			wantFamily(t, res.Family, f)
			wantFamily(t, mustFamily(t, s, f.ID), f)
			wantToken(t, s, first, f.ID, true)
			wantNoToken(t, s, next)
		})
	}
}

// A spent token of a family that died inside the window is Dead: neither the recorded
// pair (a logout is not undone by a replay) nor a reuse (nothing left to revoke).
func testDeadBeforeReplayAndReuse(t *testing.T, s store.Store) {
	ctx := t.Context()

	f := family("fam-logout")
	mustCreate(t, s, f, tok("a"))
	spent := base.Add(time.Minute)
	wantOutcome(t, mustRotate(t, s, req(tok("a"), tok("b"), spent, "pair")), store.Rotated)
	revoked, err := s.RevokeFamily(ctx, f.ID, "logout", spent.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	res := mustRotate(t, s, req(tok("a"), tok("c"), spent.Add(2*time.Second), "other"))
	wantOutcome(t, res, store.Dead)
	if res.Replay != nil {
		t.Errorf("Dead carries a replay %q", res.Replay)
	}
	wantFamily(t, res.Family, revoked)

	g := family("fam-expired")
	g.ExpiresAt = base.Add(time.Hour)
	mustCreate(t, s, g, tok("d"))
	rotated := mustRotate(t, s, req(tok("d"), tok("e"), spent, "pair"))
	wantOutcome(t, rotated, store.Rotated)
	res = mustRotate(t, s, req(tok("d"), tok("f"), base.Add(2*time.Hour), "other"))
	wantOutcome(t, res, store.Dead)
	wantFamily(t, mustFamily(t, s, g.ID), rotated.Family) // not revoked: it had expired
}

func testRevokeFamilyIdempotent(t *testing.T, s store.Store) {
	f := family("fam-1")
	mustCreate(t, s, f, tok("a"))
	t1, t2 := base.Add(time.Minute), base.Add(2*time.Minute)
	got, err := s.RevokeFamily(t.Context(), f.ID, "logout", t1)
	if err != nil {
		t.Fatal(err)
	}
	want := f
	want.RevokedAt, want.RevokeReason = t1, "logout"
	wantFamily(t, got, want)

	got, err = s.RevokeFamily(t.Context(), f.ID, "admin", t2)
	if err != nil {
		t.Fatal(err)
	}
	wantFamily(t, got, want)
	wantFamily(t, mustFamily(t, s, f.ID), want)
	wantToken(t, s, tok("a"), f.ID, true)
}

func testRevokeSubject(t *testing.T, s store.Store) {
	ctx := t.Context()
	at := base.Add(2 * time.Hour)
	type fam struct {
		f       store.Family
		revoked bool // want revoked by the call
	}
	mk := func(id, policy, subject string, mod func(*store.Family)) store.Family {
		f := family(id)
		f.Policy, f.Subject = policy, subject
		if mod != nil {
			mod(&f)
		}
		return f
	}
	fams := []fam{
		{mk("b-live", "team-a/web", "alice", nil), true},
		{mk("a-live", "team-a/web", "alice", func(f *store.Family) { f.IdleTimeout = 3 * time.Hour }), true},
		{mk("expired", "team-a/web", "alice", func(f *store.Family) { f.ExpiresAt = base.Add(time.Hour) }), false},
		{mk("idle", "team-a/web", "alice", func(f *store.Family) { f.IdleTimeout = time.Hour }), false},
		{mk("logged-out", "team-a/web", "alice", nil), false},
		{mk("other-subject", "team-a/web", "bob", nil), false},
		{mk("other-policy", "team-b/api", "alice", nil), false},
	}
	for i := range fams {
		mustCreate(t, s, fams[i].f, tok(fams[i].f.ID))
	}
	loggedOut, err := s.RevokeFamily(ctx, "logged-out", "logout", base.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	fams[4].f = loggedOut

	ids, err := s.RevokeSubject(ctx, "team-a/web", "alice", "subject revoked", at)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a-live", "b-live"}; !slices.Equal(ids, want) {
		t.Fatalf("RevokeSubject revoked %q, want %q", ids, want)
	}
	for _, x := range fams {
		want := x.f
		if x.revoked {
			want.RevokedAt, want.RevokeReason = at, "subject revoked"
		}
		wantFamily(t, mustFamily(t, s, x.f.ID), want)
	}

	ids, err = s.RevokeSubject(ctx, "team-a/web", "alice", "again", at.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 0 {
		t.Fatalf("second RevokeSubject revoked %q, want none", ids)
	}
	ids, err = s.RevokeSubject(ctx, "team-a/web", "nobody", "none", at)
	if err != nil || len(ids) != 0 {
		t.Fatalf("RevokeSubject of an unknown subject: %q, %v; want none, nil", ids, err)
	}
}

func testRevokedSince(t *testing.T, s store.Store) {
	ctx := t.Context()
	since := base.Add(time.Hour)
	list := func(since time.Time) []store.Family {
		t.Helper()
		fams, err := s.RevokedSince(ctx, since)
		if err != nil {
			t.Fatalf("RevokedSince(base+%s): %v", since.Sub(base), err)
		}
		return fams
	}
	if got := list(base); len(got) != 0 {
		t.Fatalf("RevokedSince on an empty store: %d families", len(got))
	}

	revoke := func(id string, at time.Time) {
		t.Helper()
		if _, err := s.RevokeFamily(ctx, id, "logout", at); err != nil {
			t.Fatal(err)
		}
	}
	live := family("live")
	expired := family("expired")
	expired.ExpiresAt = since.Add(time.Minute) // expired, never revoked: not listed
	for _, id := range []string{"before", "at", "b-tie", "a-tie", "later", "reused"} {
		mustCreate(t, s, family(id), tok(id))
	}
	mustCreate(t, s, live, tok("live"))
	mustCreate(t, s, expired, tok("expired"))
	subj := family("subject")
	subj.Subject = "bob"
	mustCreate(t, s, subj, tok("subject"))

	revoke("before", since.Add(-time.Microsecond))
	revoke("at", since)
	revoke("b-tie", since.Add(time.Minute))
	revoke("a-tie", since.Add(time.Minute))
	revoke("later", since.Add(3*time.Minute))
	revoke("later", since.Add(4*time.Minute)) // idempotent: still listed at its first revocation
	if _, err := s.RevokeSubject(ctx, subj.Policy, subj.Subject, "offboarded", since.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Reuse detection revokes in Rotate.
	spent := since.Add(-time.Hour)
	wantOutcome(t, mustRotate(t, s, req(tok("reused"), tok("reused-1"), spent, "p")), store.Rotated)
	wantOutcome(t, mustRotate(t, s, req(tok("reused"), tok("reused-2"), since.Add(90*time.Second), "p")), store.Reused)

	got := list(since)
	ids := make([]string, 0, len(got))
	for _, f := range got {
		ids = append(ids, f.ID)
	}
	if want := []string{"at", "a-tie", "b-tie", "reused", "subject", "later"}; !slices.Equal(ids, want) {
		t.Fatalf("RevokedSince(since) = %q, want %q (by RevokedAt, then ID)", ids, want)
	}
	for _, f := range got {
		wantFamily(t, f, mustFamily(t, s, f.ID))
	}
	if f := got[len(got)-1]; !f.RevokedAt.Equal(since.Add(3 * time.Minute)) {
		t.Fatalf("re-revoked family listed with RevokedAt %s, want its first revocation", f.RevokedAt)
	}
	if got := list(since.Add(-time.Microsecond)); len(got) != 7 || got[0].ID != "before" {
		t.Fatalf("RevokedSince one microsecond earlier: %d families; want 7, the first \"before\"", len(got))
	}
	if got := list(since.Add(3*time.Minute + time.Microsecond)); len(got) != 0 {
		t.Fatalf("RevokedSince after the last revocation: %d families", len(got))
	}
}

func testGCReplay(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := family("fam-1")
	mustCreate(t, s, f, tok("a"))
	spent := base.Add(time.Minute)
	wantOutcome(t, mustRotate(t, s, req(tok("a"), tok("b"), spent, "pair")), store.Rotated)
	now := spent.Add(10 * time.Second)

	// GC with the same window keeps the replay: it is still usable at now.
	n, err := s.GC(ctx, now, window, time.Hour)
	if err != nil || n != 0 {
		t.Fatalf("GC: %d, %v; want 0, nil", n, err)
	}
	res := mustRotate(t, s, req(tok("a"), tok("c"), now, "other"))
	wantOutcome(t, res, store.Replayed)
	wantReplay(t, res, "pair")

	// GC with a window that has passed (spent + 10s ≤ now) drops it: a presentation inside
	// the caller's (longer) window now finds nothing to replay and is a reuse.
	if n, err = s.GC(ctx, now, 10*time.Second, time.Hour); err != nil || n != 0 {
		t.Fatalf("GC: %d, %v; want 0, nil", n, err)
	}
	res = mustRotate(t, s, req(tok("a"), tok("d"), now, "other"))
	wantOutcome(t, res, store.Reused)
	if res.Family.RevokeReason != store.ReuseReason {
		t.Fatalf("family %+v, want revoked for reuse", res.Family)
	}
	wantNoToken(t, s, tok("d"))
}

func testGCFamilies(t *testing.T, s store.Store) {
	ctx := t.Context()
	retain := time.Hour
	deadAt := base.Add(time.Hour)

	revoked := family("revoked")
	expired := family("expired")
	expired.ExpiresAt = deadAt
	idle := family("idle")
	idle.IdleTimeout = time.Hour // dead at base+1h
	rotatedIdle := family("rotated-idle")
	rotatedIdle.IdleTimeout = time.Hour // rotated at base+30m: dead at base+90m
	live := family("live")
	live.ExpiresAt = base.Add(48 * time.Hour)
	for _, f := range []store.Family{revoked, expired, idle, rotatedIdle, live} {
		mustCreate(t, s, f, tok(f.ID+"-0"))
	}
	if _, err := s.RevokeFamily(ctx, revoked.ID, "logout", deadAt); err != nil {
		t.Fatal(err)
	}
	for _, f := range []store.Family{rotatedIdle, live} {
		wantOutcome(t, mustRotate(t, s, req(tok(f.ID+"-0"), tok(f.ID+"-1"), base.Add(30*time.Minute), "p")), store.Rotated)
	}

	gc := func(now time.Time, want int) {
		t.Helper()
		n, err := s.GC(ctx, now, window, retain)
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Fatalf("GC at base+%s deleted %d families, want %d", now.Sub(base), n, want)
		}
	}
	gone := func(f store.Family, tokens ...string) {
		t.Helper()
		if _, err := s.Family(ctx, f.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("family %s after GC: err %v, want ErrNotFound", f.ID, err)
		}
		for _, name := range tokens {
			wantNoToken(t, s, tok(name))
			res := mustRotate(t, s, req(tok(name), tok(name+"-next"), deadAt.Add(3*time.Hour), "p"))
			wantOutcome(t, res, store.Unknown)
		}
	}

	gc(deadAt.Add(retain), 0) // dead exactly retain ago: kept
	gc(deadAt.Add(retain+time.Millisecond), 3)
	gone(revoked, "revoked-0")
	gone(expired, "expired-0")
	gone(idle, "idle-0")
	wantToken(t, s, tok("rotated-idle-0"), rotatedIdle.ID, false)
	wantToken(t, s, tok("rotated-idle-1"), rotatedIdle.ID, true)

	gc(base.Add(90*time.Minute).Add(retain+time.Millisecond), 1)
	gone(rotatedIdle, "rotated-idle-0", "rotated-idle-1") // spent and current tokens alike

	gc(base.Add(47*time.Hour), 0)
	wantToken(t, s, tok("live-0"), live.ID, false)
	wantToken(t, s, tok("live-1"), live.ID, true)
	if f := mustFamily(t, s, live.ID); f.Rotations != 1 {
		t.Fatalf("live family after GC: %+v", f)
	}
}

func testChain100(t *testing.T, s store.Store) {
	f := family("fam-chain")
	f.IdleTimeout = time.Hour
	mustCreate(t, s, f, tok("0"))
	const n = 100
	for i := 1; i <= n; i++ {
		res := mustRotate(t, s, req(tok(fmt.Sprint(i-1)), tok(fmt.Sprint(i)), base.Add(time.Duration(i)*time.Minute), fmt.Sprint("pair-", i)))
		wantOutcome(t, res, store.Rotated)
		if res.Family.Rotations != int64(i) {
			t.Fatalf("rotation %d: Rotations %d", i, res.Family.Rotations)
		}
	}
	current := 0
	for i := 0; i <= n; i++ {
		got, cur, err := s.Lookup(t.Context(), tok(fmt.Sprint(i)))
		if err != nil || got.ID != f.ID {
			t.Fatalf("Lookup(%d): %+v, %v", i, got, err)
		}
		if cur {
			current++
			if i != n {
				t.Fatalf("token %d of %d is current", i, n)
			}
		}
	}
	if current != 1 {
		t.Fatalf("%d current tokens, want 1", current)
	}
	last := base.Add(n * time.Minute)
	want := f
	want.Rotations, want.LastUsedAt = n, last
	wantFamily(t, mustFamily(t, s, f.ID), want)

	// An old link presented later is a reuse that kills the chain's head.
	wantOutcome(t, mustRotate(t, s, req(tok("50"), tok("x"), last.Add(time.Minute), "x")), store.Reused)
	wantOutcome(t, mustRotate(t, s, req(tok(fmt.Sprint(n)), tok("y"), last.Add(time.Minute), "y")), store.Dead)
}

// raceRotate: 64 goroutines, spread over stores, present the same current token at once,
// each with its own Next and Replay. Exactly one rotates; every other one gets the
// winner's Replay; the family stays live with one rotation and one current token.
func raceRotate(t *testing.T, stores []store.Store) {
	const n = 64
	ctx := t.Context()
	f := family("fam-race")
	mustCreate(t, stores[0], f, tok("first"))
	now := base.Add(time.Minute)

	results := make([]store.RotateResult, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = stores[i%len(stores)].Rotate(ctx, req(tok("first"), tok(fmt.Sprint("next-", i)), now, fmt.Sprint("replay-", i)))
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if results[i].Outcome == store.Rotated {
			if winner >= 0 {
				t.Fatalf("goroutines %d and %d both rotated", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("no goroutine rotated")
	}
	want := f
	want.Rotations, want.LastUsedAt = 1, now
	for i := range n {
		wantFamily(t, results[i].Family, want)
		if i == winner {
			continue
		}
		if results[i].Outcome != store.Replayed {
			t.Fatalf("goroutine %d: %s, want Replayed", i, OutcomeName(results[i].Outcome))
		}
		wantReplay(t, results[i], fmt.Sprint("replay-", winner))
	}
	for _, s := range stores {
		got := mustFamily(t, s, f.ID)
		wantFamily(t, got, want)
		if !got.Live(now) {
			t.Fatal("the family died in a benign race")
		}
		wantToken(t, s, tok("first"), f.ID, false)
		for i := range n {
			if i == winner {
				wantToken(t, s, tok(fmt.Sprint("next-", i)), f.ID, true)
			} else {
				wantNoToken(t, s, tok(fmt.Sprint("next-", i)))
			}
		}
	}
}

// raceReuse: 16 goroutines present a token spent long ago at once: one revokes the family
// (Reused), the others find it revoked (Dead); it is revoked once, at that time.
func raceReuse(t *testing.T, stores []store.Store) {
	const n = 16
	ctx := t.Context()
	f := family("fam-reuse")
	mustCreate(t, stores[0], f, tok("first"))
	wantOutcome(t, mustRotate(t, stores[0], req(tok("first"), tok("second"), base.Add(time.Minute), "p")), store.Rotated)
	now := base.Add(time.Hour)

	var reused, dead atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			res, err := stores[i%len(stores)].Rotate(ctx, req(tok("first"), tok(fmt.Sprint("x-", i)), now, "x"))
			errs[i] = err
			switch res.Outcome {
			case store.Reused:
				reused.Add(1)
			case store.Dead:
				dead.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if reused.Load() != 1 || dead.Load() != n-1 {
		t.Fatalf("%d Reused and %d Dead, want 1 and %d", reused.Load(), dead.Load(), n-1)
	}
	got := mustFamily(t, stores[len(stores)-1], f.ID)
	if !got.RevokedAt.Equal(now) || got.RevokeReason != store.ReuseReason || got.Rotations != 1 {
		t.Fatalf("family after the reuse race: %+v", got)
	}
}

// testConcurrentFamilies: rotations of different families do not interfere.
func testConcurrentFamilies(t *testing.T, s store.Store) {
	const families, rotations = 8, 10
	errs := make([]error, families)
	var wg sync.WaitGroup
	for g := range families {
		f := family(fmt.Sprint("fam-", g))
		mustCreate(t, s, f, tok(fmt.Sprint(g, "-0")))
		wg.Go(func() {
			for i := 1; i <= rotations; i++ {
				res, err := s.Rotate(t.Context(), req(tok(fmt.Sprint(g, "-", i-1)), tok(fmt.Sprint(g, "-", i)), base.Add(time.Duration(i)*time.Second), "p"))
				if err == nil && res.Outcome != store.Rotated {
					err = fmt.Errorf("family %d rotation %d: %s", g, i, OutcomeName(res.Outcome))
				}
				if err != nil {
					errs[g] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for g := range families {
		if f := mustFamily(t, s, fmt.Sprint("fam-", g)); f.Rotations != rotations {
			t.Fatalf("family %d: %d rotations, want %d", g, f.Rotations, rotations)
		}
	}
}

// ---- benchmarks

// BenchRotate measures Rotate (the Rotated path: spend, issue, update the family) with
// 1 KiB replays, as sub-benchmarks "sequential" (one chain) and "parallel" (8 goroutines
// per GOMAXPROCS, each rotating its own chain). open returns a fresh store and arranges for
// it to be closed.
func BenchRotate(b *testing.B, open func(tb testing.TB) store.Store) {
	replay := bytes.Repeat([]byte{0xa5}, 1024)
	// chain creates family id and rotates its token while next() says so. It returns errors
	// rather than failing, because RunParallel bodies run on goroutines of their own.
	chain := func(s store.Store, id string, next func() bool) error {
		f := family(id)
		f.ExpiresAt = base.Add(10 * 365 * 24 * time.Hour)
		prev := store.HashToken(id + "/0")
		if err := s.CreateFamily(context.Background(), f, prev); err != nil {
			return err
		}
		for i := 1; next(); i++ {
			h := store.HashToken(fmt.Sprint(id, "/", i))
			res, err := s.Rotate(context.Background(), store.RotateRequest{
				Presented: prev, Next: h, Now: base.Add(time.Duration(i) * time.Millisecond),
				ReplayWindow: window, Replay: replay,
			})
			if err == nil && res.Outcome != store.Rotated {
				err = fmt.Errorf("rotation %d of %s: %s", i, id, OutcomeName(res.Outcome))
			}
			if err != nil {
				return err
			}
			prev = h
		}
		return nil
	}
	b.Run("sequential", func(b *testing.B) {
		s := open(b)
		n := 0
		b.ReportAllocs()
		b.ResetTimer()
		if err := chain(s, "bench-seq", func() bool { n++; return n <= b.N }); err != nil {
			b.Fatal(err)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		s := open(b)
		var ids atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			if err := chain(s, fmt.Sprint("bench-par-", ids.Add(1)), pb.Next); err != nil {
				b.Error(err)
			}
		})
	})
}
