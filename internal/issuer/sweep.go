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
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/issuer/store"
)

// The revocation sweep closes the gap between a session's revocation in the store and its
// RevocationEntry in the API server. A revocation writes the store first and then queues
// the entry in memory (revocationQueue); a crash in between, or with the entry still
// waiting for a retry, would leave the session's access tokens valid at the sidecars until
// they expire. The store is the record: the sweep reads the families revoked recently
// enough that a verifier may still accept one of their access tokens, and queues their
// session entries again. The names are deterministic and AlreadyExists is success, so this
// is idempotent, across replicas too. GC runs it at start and after every collection.
//
// The window never reaches an entry the RevocationEntry controller has already expired.
// The controller deletes a session entry at its creation + max(accessToken.ttl,
// refreshToken.ttl) + leeway (an entry is created at or after its session's revocation),
// while the sweep stops at the revocation + accessToken.ttl + leeway + SweepMargin. So it
// could recreate one only when refreshToken.ttl < accessToken.ttl + SweepMargin (or the
// clocks disagree by more than the margin), and then only in a sweep of a process that has
// not seen the entry created (a restart, another replica). Such an entry matches no
// accepted token (every one has expired) and expires again by itself: harmless.

// Bounds of the revocation window.
const (
	// MaxAccessTokenTTL and MaxLeeway are the API's bounds on accessToken.ttl and leeway.
	MaxAccessTokenTTL = 24 * time.Hour
	MaxLeeway         = 5 * time.Minute
	// SweepMargin widens every window, for clock skew between replicas and for a rotation
	// that signed an access token just before a concurrent revocation read its clock.
	SweepMargin = time.Minute
	// MaxRevocationWindow is the longest window of any policy: GC keeps a revoked family at
	// least this long, so that the sweep still finds it.
	MaxRevocationWindow = MaxAccessTokenTTL + MaxLeeway + SweepMargin

	defaultAccessTTL = 10 * time.Minute // accessToken.ttl's API default
	defaultLeeway    = 30 * time.Second // leeway's API default
	// sweepReason is the entry's reason for a family revoked without one.
	sweepReason = "session revoked"
)

// revocationWindow is how long after a session's revocation a verifier of the policy may
// still accept one of the session's access tokens: an access token is signed at or before
// the revocation and is accepted until exp + leeway. Both come from the TokenPolicy and,
// when the policy is served (p not nil), from its bundle in force, whichever is longer: a
// change of either reaches the verifiers some time after it is made. Defaults count as the
// controllers count them (an unset or zero leeway is 30s).
func revocationWindow(spec *v1alpha1.TokenPolicySpec, p *policyState) time.Duration {
	ttl := durationOr(spec.AccessToken.TTL.Duration, defaultAccessTTL)
	leeway := durationOr(spec.Leeway.Duration, defaultLeeway)
	if p != nil && p.bundle != nil {
		ttl, leeway = max(ttl, p.accessTTL), max(leeway, p.leeway)
	}
	return ttl + leeway + SweepMargin
}

// planSweep picks, of the revoked families, those whose access tokens a verifier may still
// accept at now (now before RevokedAt + the window of the family's policy, by policy key)
// and returns their session entries. A family revoked because a RevocationEntry matched it
// is left out: that entry is its revocation. Families of a policy without a window are
// counted in unknown, by policy.
func planSweep(now time.Time, revoked []store.Family, windows map[string]time.Duration) (entries []*v1alpha1.RevocationEntry, unknown map[string]int) {
	unknown = map[string]int{}
	for _, f := range revoked {
		if f.RevokedAt.IsZero() || strings.HasPrefix(f.RevokeReason, reasonEntryPrefix) {
			continue
		}
		w, ok := windows[f.Policy]
		if !ok {
			unknown[f.Policy]++
			continue
		}
		if !now.Before(f.RevokedAt.Add(w)) {
			continue
		}
		namespace, name, _ := strings.Cut(f.Policy, "/")
		entries = append(entries, policySessionEntry(namespace, name, f.ID, cmp.Or(f.RevokeReason, sweepReason)))
	}
	return entries, unknown
}

// SweepRevocations queues again the RevocationEntry of every session revoked in the store
// recently enough that a verifier may still accept one of its access tokens, unless this
// process has seen the entry created or has it pending. The windows come from every
// TokenPolicy the client sees (not only the policies served yet, so a sweep at start does
// not wait for the policy watch); families of policies that no longer exist are skipped and
// logged. It returns the number of entries queued.
func (s *Server) SweepRevocations(ctx context.Context) (int, error) {
	var list v1alpha1.TokenPolicyList
	if err := s.cfg.Client.List(ctx, &list); err != nil {
		return 0, fmt.Errorf("revocation sweep: listing TokenPolicies: %w", err)
	}
	windows := make(map[string]time.Duration, len(list.Items))
	for i := range list.Items {
		tp := &list.Items[i]
		key := tp.Namespace + "/" + tp.Name
		windows[key] = revocationWindow(&tp.Spec, s.registry.get(key))
	}
	return s.sweep(ctx, windows)
}

// sweep is SweepRevocations with the windows of the known policies, by policy key.
func (s *Server) sweep(ctx context.Context, windows map[string]time.Duration) (int, error) {
	var longest time.Duration
	for _, w := range windows {
		longest = max(longest, w)
	}
	if longest == 0 {
		return 0, nil
	}
	now := s.clk.Now()
	revoked, err := s.cfg.Store.RevokedSince(ctx, now.Add(-longest))
	if err != nil {
		return 0, fmt.Errorf("revocation sweep: %w", err)
	}
	entries, unknown := planSweep(now, revoked, windows)
	restored := 0
	for _, e := range entries {
		if s.revoker.restore(e) {
			restored++
			s.log.Info("Queued the RevocationEntry of a session revoked in the store", "revocationEntry", entryKey(e),
				"sid", e.Spec.SessionID, "reason", e.Spec.Reason)
		}
	}
	// An entry taken before now - longest belongs to a session revoked before that: no
	// later sweep reaches it.
	s.revoker.forgetCreated(now.Add(-longest))
	for policy, n := range unknown {
		s.log.Info("Skipped revoked sessions of a TokenPolicy that does not exist", "tokenPolicy", policy, "sessions", n)
	}
	s.metrics.SweepRestored.Add(float64(restored))
	return restored, nil
}
