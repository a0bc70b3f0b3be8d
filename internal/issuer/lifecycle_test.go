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
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/issuer/store"
)

// TestRefreshTokenReuse: a spent refresh token presented after the replay window revokes
// the family in the store, and the RevocationEntry the service creates for the session
// makes the verifier sidecar (fed by the real controllers' bundle) reject the family's
// outstanding access tokens.
func TestRefreshTokenReuse(t *testing.T) {
	for _, kind := range storeKinds() {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{store: kind})
			v := f.verifier()
			m := f.mustMint("alice", "read")
			sid := claims(t, m.tokens.AccessToken)["sid"].(string)
			r := f.mustRefresh(m.tokens.RefreshToken)
			for _, at := range []string{m.tokens.AccessToken, r.tokens.AccessToken} {
				if code := v.status("Bearer "+at, nil); code != http.StatusOK {
					t.Fatalf("before the reuse the verifier answered %d", code)
				}
			}

			f.s.clock.Step(f.state().reuseInterval + time.Second) // past the replay window
			expectError(t, f.refresh(m.tokens.RefreshToken, nil), 400, ErrInvalidGrant)

			fam, err := f.store.Family(context.Background(), sid)
			if err != nil || fam.RevokedAt.IsZero() || fam.RevokeReason != store.ReuseReason {
				t.Fatalf("family after reuse: %+v %v", fam, err)
			}
			name := f.sessionEntry(sid).Name
			var entry *v1alpha1.RevocationEntry
			eventually(t, 30*time.Second, "the RevocationEntry of the session", func() bool { entry = f.getEntry(name); return entry != nil })
			if entry.Spec.SessionID != sid || entry.Spec.Reason != ReasonReuse || len(entry.Spec.Policies) != 1 || entry.Spec.Policies[0] != f.policy ||
				entry.Labels[LabelCreatedBy] != CreatedByValue {
				t.Fatalf("RevocationEntry %+v", entry)
			}
			eventually(t, 30*time.Second, "the verifier to reject the family's access tokens", func() bool {
				return v.status("Bearer "+r.tokens.AccessToken, nil) == http.StatusUnauthorized &&
					v.status("Bearer "+m.tokens.AccessToken, nil) == http.StatusUnauthorized
			})
			if !strings.Contains(v.audit.String(), `"reason":"revoked"`) {
				t.Fatalf("the verifier rejected for another reason: %s", v.audit.String())
			}
			// The successor is dead too.
			expectError(t, f.refresh(r.tokens.RefreshToken, nil), 400, ErrInvalidGrant)

			if got := testutil.ToFloat64(f.srv.metrics.Reuse.WithLabelValues(f.ns + "/api")); got != 1 {
				t.Fatalf("reuse_total = %v", got)
			}
			if recs := f.audit.records(t, AuditReuse); len(recs) != 1 || recs[0].Session != sid || recs[0].Subject != "alice" ||
				recs[0].Refresh != fingerprint(m.tokens.RefreshToken) {
				t.Fatalf("reuse audit records %+v", recs)
			}
			eventually(t, 30*time.Second, "a RefreshTokenReuse Event on the TokenPolicy", func() bool {
				return f.eventReasons()["RefreshTokenReuse"] == 1
			})
			// Other sessions of the subject are untouched.
			other := f.mustMint("alice", "read")
			f.mustRefresh(other.tokens.RefreshToken)
		})
	}
}

// TestReplayWindowRace: many concurrent submissions of one refresh token (tabs, retries)
// within the replay window: exactly one rotation, and every caller gets the same pair.
func TestReplayWindowRace(t *testing.T) {
	for _, kind := range storeKinds() {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{store: kind})
			m := f.mustMint("alice", "read")
			sid := claims(t, m.tokens.AccessToken)["sid"].(string)
			const callers = 32
			var (
				wg      sync.WaitGroup
				start   = make(chan struct{})
				results = make([]*response, callers)
			)
			for i := range callers {
				wg.Go(func() {
					<-start
					results[i] = f.refresh(m.tokens.RefreshToken, nil)
				})
			}
			close(start)
			wg.Wait()
			for i, r := range results {
				if r.status != http.StatusOK {
					t.Fatalf("caller %d: %d %s", i, r.status, r.body)
				}
				if r.tokens != results[0].tokens {
					t.Fatalf("caller %d got another pair", i)
				}
			}
			fam, err := f.store.Family(context.Background(), sid)
			if err != nil || fam.Rotations != 1 || !fam.RevokedAt.IsZero() {
				t.Fatalf("family after the race: %+v %v (want exactly one rotation, not revoked)", fam, err)
			}
			key := f.ns + "/api"
			if r, p := testutil.ToFloat64(f.srv.metrics.Refreshed.WithLabelValues(key, "rotated")), testutil.ToFloat64(f.srv.metrics.Refreshed.WithLabelValues(key, "replayed")); r != 1 || p != callers-1 {
				t.Fatalf("rotated %v replayed %v", r, p)
			}
			if n := len(f.audit.records(t, AuditReplayed)); n != callers-1 {
				t.Fatalf("%d replay audit records", n)
			}
			// The pair everyone got is live: its refresh token rotates once more.
			f.mustRefresh(results[0].tokens.RefreshToken)
			if fam, _ := f.store.Family(context.Background(), sid); fam.Rotations != 2 {
				t.Fatalf("rotations = %d", fam.Rotations)
			}
		})
	}
}

// TestRevocationEndpoint: RFC 7009 for access and refresh tokens, seen by the verifier.
func TestRevocationEndpoint(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	v := f.verifier()
	m := f.mustMint("bob", "read")
	revoke := func(tok, hint string) *response {
		vals := url.Values{"token": {tok}}
		if hint != "" {
			vals.Set("token_type_hint", hint)
		}
		return f.form(pathRevoke, vals, nil)
	}
	if r := revoke(m.tokens.AccessToken, "access_token"); r.status != http.StatusOK {
		t.Fatalf("revoking an access token: %d %s", r.status, r.body)
	}
	jti := claims(t, m.tokens.AccessToken)["jti"].(string)
	eventually(t, 30*time.Second, "the jti RevocationEntry", func() bool {
		e := f.getEntry(jtiEntry(f.state(), jti, "").Name)
		return e != nil && e.Spec.JTI == jti
	})
	eventually(t, 30*time.Second, "the verifier to reject the revoked access token", func() bool {
		return v.status("Bearer "+m.tokens.AccessToken, nil) == http.StatusUnauthorized
	})
	// The session lives on.
	r := f.mustRefresh(m.tokens.RefreshToken)
	if code := v.status("Bearer "+r.tokens.AccessToken, nil); code != http.StatusOK {
		t.Fatalf("a new access token of the session: %d", code)
	}
	// Revoking the refresh token ends the session and its access tokens.
	if res := revoke(r.tokens.RefreshToken, ""); res.status != http.StatusOK {
		t.Fatalf("revoking a refresh token: %d", res.status)
	}
	sid := claims(t, r.tokens.AccessToken)["sid"].(string)
	if fam, _ := f.store.Family(context.Background(), sid); fam.RevokedAt.IsZero() || fam.RevokeReason != ReasonClient {
		t.Fatalf("family after revocation: %+v", fam)
	}
	eventually(t, 30*time.Second, "the verifier to reject the session's access token", func() bool {
		return v.status("Bearer "+r.tokens.AccessToken, nil) == http.StatusUnauthorized
	})
	expectError(t, f.refresh(r.tokens.RefreshToken, nil), 400, ErrInvalidGrant)
	// Unknown, malformed and foreign tokens: 200, nothing happens (RFC 7009 §2.2).
	for _, tok := range []string{"garbage", newRefreshToken(), m.tokens.AccessToken + "x"} {
		if res := revoke(tok, "refresh_token"); res.status != http.StatusOK {
			t.Fatalf("revoking an unknown token: %d", res.status)
		}
	}
	expectError(t, f.form(pathRevoke, url.Values{}, nil), 400, ErrInvalidRequest)
	if n := len(f.audit.records(t, AuditRevoked)); n != 2 {
		t.Fatalf("%d revocation audit records, want 2: %s", n, f.audit.String())
	}
}

// TestIntrospection: RFC 7662 for the policy's mint clients.
func TestIntrospection(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	m := f.mustMint("carol", "read write")
	login := http.Header{"Authorization": {"Bearer " + f.saToken("login", DefaultAudience)}}
	introspect := func(tok string, hdr http.Header) map[string]any {
		t.Helper()
		r := f.form(pathIntrospect, url.Values{"token": {tok}}, hdr)
		if r.status != http.StatusOK {
			t.Fatalf("introspection: %d %s", r.status, r.body)
		}
		return decodeJSON(t, r.body)
	}
	at := introspect(m.tokens.AccessToken, login)
	sid := claims(t, m.tokens.AccessToken)["sid"]
	if at["active"] != true || at["sub"] != "carol" || at["token_type"] != "Bearer" || at["scope"] != "read write" || at["sid"] != sid || at["iss"] != f.issuer {
		t.Fatalf("access token introspection %v", at)
	}
	rt := introspect(m.tokens.RefreshToken, login)
	if rt["active"] != true || rt["token_type"] != "refresh_token" || rt["sub"] != "carol" || rt["sid"] != sid || rt["client_id"] != "web" {
		t.Fatalf("refresh token introspection %v", rt)
	}
	for _, tok := range []string{"garbage", newRefreshToken(), m.tokens.AccessToken[:len(m.tokens.AccessToken)-2]} {
		if got := introspect(tok, login); len(got) != 1 || got["active"] != false {
			t.Fatalf("introspection of an invalid token: %v", got)
		}
	}
	// A spent refresh token is inactive.
	f.mustRefresh(m.tokens.RefreshToken)
	if got := introspect(m.tokens.RefreshToken, login); got["active"] != false {
		t.Fatalf("a spent refresh token is active: %v", got)
	}
	expectError(t, f.form(pathIntrospect, url.Values{"token": {m.tokens.AccessToken}}, nil), 401, ErrInvalidClient)
	stranger := http.Header{"Authorization": {"Bearer " + f.saToken("stranger", DefaultAudience)}}
	expectError(t, f.form(pathIntrospect, url.Values{"token": {m.tokens.AccessToken}}, stranger), 403, ErrUnauthorizedClient)
}

// TestDiscoveryAndJWKS: RFC 8414 metadata at both well-known paths, and the public keys.
func TestDiscoveryAndJWKS(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	for _, p := range []string{f.prefix + pathDiscovery, pathASMetadata + f.prefix} {
		r := f.do(http.MethodGet, p, "", "", nil)
		if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Fatalf("GET %s: %d", p, r.status)
		}
		m := decodeJSON(t, r.body)
		if m["issuer"] != f.issuer || m["token_endpoint"] != f.issuer+"/token" || m["jwks_uri"] != f.issuer+"/jwks" ||
			m["revocation_endpoint"] != f.issuer+"/revoke" || m["introspection_endpoint"] != f.issuer+"/introspect" ||
			m["keyward_mint_endpoint"] != f.issuer+"/mint" {
			t.Fatalf("metadata %v", m)
		}
		if g := m["grant_types_supported"].([]any); len(g) != 2 || g[1] != GrantTokenExchange {
			t.Fatalf("grant types %v", g)
		}
	}
	r := f.do(http.MethodGet, f.prefix+pathJWKS, "", "", nil)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/jwk-set+json" {
		t.Fatalf("GET jwks: %d %v", r.status, r.header)
	}
	if !strings.Contains(string(r.body), `"kid":"`+f.state().signer.KID()+`"`) || strings.Contains(string(r.body), `"d":`) {
		t.Fatalf("JWKS %s", r.body)
	}
	if r := f.do(http.MethodPost, f.prefix+pathJWKS, "", "", nil); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("POST jwks: %d", r.status)
	}
}

// TestRevocationEntryEndsSessions: a RevocationEntry made by someone else (kubectl
// keyward revoke --subject) reaches the bundle, and the service refuses to refresh the
// subject's older sessions; later logins work.
func TestRevocationEntryEndsSessions(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	m := f.mustMint("dave", "")
	f.create(&v1alpha1.RevocationEntry{
		ObjectMeta: metav1.ObjectMeta{Name: "offboard-dave", Namespace: f.ns},
		Spec:       v1alpha1.RevocationEntrySpec{Subject: "dave", Reason: "offboarded"},
	})
	eventually(t, 30*time.Second, "the revocation to reach the token service", func() bool {
		return f.state().bundle.Revoked.Len() == 1
	})
	expectError(t, f.refresh(m.tokens.RefreshToken, nil), 400, ErrInvalidGrant)
	sid := claims(t, m.tokens.AccessToken)["sid"].(string)
	if fam, _ := f.store.Family(context.Background(), sid); fam.RevokedAt.IsZero() {
		t.Fatal("the session is not revoked in the store")
	}
	// The fake clock must be past the entry's issuedBefore (its creation, real time) for
	// a later login to count as later.
	entry := f.getEntry("offboard-dave")
	if now := f.s.clock.Now(); !now.After(entry.CreationTimestamp.Add(time.Second)) {
		f.s.clock.SetTime(entry.CreationTimestamp.Add(2 * time.Second))
	}
	later := f.mustMint("dave", "")
	f.mustRefresh(later.tokens.RefreshToken)
}

// TestRefreshBurst: refreshes above anomaly.maxRefreshesPerMinute are reported (metric,
// Event, audit) and, with autoRevoke, revoke the session.
func TestRefreshBurst(t *testing.T) {
	f := newFixture(t, fixtureOpts{spec: func(s *v1alpha1.TokenPolicySpec) {
		s.Issuance.Anomaly = &v1alpha1.AnomalySpec{MaxRefreshesPerMinute: 3, AutoRevoke: true}
	}})
	rt := f.mustMint("eve", "").tokens.RefreshToken
	var sid string
	for range 3 {
		r := f.mustRefresh(rt)
		rt, sid = r.tokens.RefreshToken, claims(t, r.tokens.AccessToken)["sid"].(string)
	}
	expectError(t, f.refresh(rt, nil), 400, ErrInvalidGrant)
	key := f.ns + "/api"
	if s, fa := testutil.ToFloat64(f.srv.metrics.Bursts.WithLabelValues(key, "subject")), testutil.ToFloat64(f.srv.metrics.Bursts.WithLabelValues(key, "family")); s != 1 || fa != 1 {
		t.Fatalf("bursts subject=%v family=%v", s, fa)
	}
	if fam, _ := f.store.Family(context.Background(), sid); fam.RevokeReason != ReasonBurst {
		t.Fatalf("family %+v", fam)
	}
	eventually(t, 30*time.Second, "the session's RevocationEntry", func() bool { return f.getEntry(f.sessionEntry(sid).Name) != nil })
	eventually(t, 30*time.Second, "RefreshBurst Events", func() bool { return f.eventReasons()["RefreshBurst"] >= 1 })
	if n := len(f.audit.records(t, AuditBurst)); n != 2 {
		t.Fatalf("%d burst audit records, want 2 (subject and family)", n)
	}
	// A minute later the subject may refresh again in a new session.
	f.s.clock.Step(time.Minute)
	f.mustRefresh(f.mustMint("eve", "").tokens.RefreshToken)
}

// TestPendingKeyNeverSigns: a manual rotation publishes a Pending key at once; the
// service keeps signing with the Active key until the SigningKey controller activates the
// successor after prePublish, and signs with it from then on.
func TestPendingKeyNeverSigns(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	v := f.verifier()
	oldKID := f.state().signer.KID()
	sk := &v1alpha1.SigningKey{}
	if err := f.s.k8s.Get(context.Background(), types.NamespacedName{Namespace: f.ns, Name: "keys"}, sk); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(sk.DeepCopy())
	sk.Spec.RotationRequest = "rotate-1"
	if err := f.s.k8s.Patch(context.Background(), sk, patch); err != nil {
		t.Fatal(err)
	}
	var pending string
	eventually(t, 30*time.Second, "a Pending key in the service's Secret and bundle", func() bool {
		p := f.state()
		if p == nil || len(p.bundleKIDs) != 2 {
			return false
		}
		for kid := range p.bundleKIDs {
			if kid != oldKID {
				pending = kid
			}
		}
		return strings.Contains(string(p.jwks), pending)
	})
	for range 3 {
		tok := f.mustMint("frank", "").tokens.AccessToken
		if kid := header(t, tok)["kid"]; kid != oldKID {
			t.Fatalf("signed with %v while %s is only Pending", kid, pending)
		}
	}
	// prePublish (15m by default) passes; the SigningKey controller activates the successor.
	f.s.clock.Step(15*time.Minute + time.Second)
	if _, err := f.s.signingKeys.Reconcile(context.Background(), reqFor(f.ns, "keys")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the service to sign with the activated key", func() bool {
		p := f.state()
		return p != nil && p.signer != nil && p.signer.KID() == pending
	})
	tok := f.mustMint("frank", "").tokens.AccessToken
	if kid := header(t, tok)["kid"]; kid != pending {
		t.Fatalf("signed with %v after activation, want %s", kid, pending)
	}
	if code := v.status("Bearer "+tok, nil); code != http.StatusOK {
		t.Fatalf("the verifier answered %d for a token of the activated key", code)
	}
}

// signalSweeper is the Server's sweep, reporting how many entries each run queued.
type signalSweeper struct {
	srv  *Server
	runs chan int
}

func (s signalSweeper) SweepRevocations(ctx context.Context) (int, error) {
	n, err := s.srv.SweepRevocations(ctx)
	s.runs <- n
	return n, err
}

// TestRevocationSweepAfterCrash: sessions revoked in the store whose RevocationEntry was
// never created (the process died between the store write and the entry's creation) get
// their entry from the revocation sweep, at start and on a GC tick, and the verifier
// sidecar fed by the real controllers' bundle then rejects their access tokens. A session
// revoked one window before the sweep (its tokens have all expired) gets no entry, and a
// live one stays valid.
func TestRevocationSweepAfterCrash(t *testing.T) {
	for _, kind := range storeKinds() {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{store: kind})
			v := f.verifier()
			ctx := context.Background()
			sid := func(r *response) string { return claims(t, r.tokens.AccessToken)["sid"].(string) }
			revoke := func(r *response, reason string) {
				t.Helper()
				if _, err := f.store.RevokeFamily(ctx, sid(r), reason, f.s.clock.Now()); err != nil {
					t.Fatal(err)
				}
			}
			// Each crash: the store has the revocation, and no process queued its entry.
			// The first one is a window old when the sweep starts: its tokens have expired.
			expired := f.mustMint("grace", "read")
			revoke(expired, ReasonLogout)
			f.s.clock.Step(revocationWindow(&v1alpha1.TokenPolicySpec{}, f.state()))
			if code := v.status("Bearer "+expired.tokens.AccessToken, nil); code != http.StatusUnauthorized {
				t.Fatalf("an access token one revocation window old: %d", code)
			}
			atStart, atTick, live := f.mustMint("grace", "read"), f.mustMint("grace", "read"), f.mustMint("grace", "read")
			for _, r := range []*response{atStart, atTick, live} {
				if code := v.status("Bearer "+r.tokens.AccessToken, nil); code != http.StatusOK {
					t.Fatalf("before any revocation the verifier answered %d", code)
				}
			}
			revoke(atStart, ReasonLogout)
			if f.getEntry(f.sessionEntry(sid(atStart)).Name) != nil || testutil.ToFloat64(f.srv.metrics.RevocationQueue) != 0 {
				t.Fatal("an entry exists before the sweep")
			}

			sweeps := signalSweeper{srv: f.srv, runs: make(chan int, 1)}
			gc := &GC{Store: f.store, Clock: f.s.clock, Interval: time.Second, Sweeper: sweeps, Metrics: f.srv.metrics, Log: logr.Discard()}
			gcCtx, stopGC := context.WithCancel(ctx)
			stopped := make(chan error, 1)
			go func() { stopped <- gc.Start(gcCtx) }()
			t.Cleanup(func() {
				stopGC()
				for {
					select {
					case <-sweeps.runs:
					case <-stopped:
						return
					}
				}
			})
			select {
			case n := <-sweeps.runs:
				if n != 1 {
					t.Fatalf("the sweep at start queued %d entries, want 1", n)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("no sweep at start")
			}
			entry := f.waitEntry(sid(atStart))
			if entry.Spec.Reason != ReasonLogout || len(entry.Spec.Policies) != 1 || entry.Spec.Policies[0] != f.policy || entry.Labels[LabelCreatedBy] != CreatedByValue {
				t.Fatalf("RevocationEntry %+v", entry)
			}
			eventually(t, 30*time.Second, "the verifier to reject the session's access token", func() bool {
				return v.status("Bearer "+atStart.tokens.AccessToken, nil) == http.StatusUnauthorized
			})
			if !strings.Contains(v.audit.String(), `"reason":"revoked"`) {
				t.Fatalf("the verifier rejected for another reason: %s", v.audit.String())
			}
			eventually(t, 30*time.Second, "the queue to drain", func() bool { return testutil.ToFloat64(f.srv.metrics.RevocationQueue) == 0 })

			// A revocation the running process did not queue (another replica's, lost in its
			// crash) is found on the next tick; the entry made at start is not asked for again.
			revoke(atTick, ReasonReuse)
			for ticked := false; !ticked; {
				f.s.clock.Step(time.Second)
				select {
				case n := <-sweeps.runs:
					ticked = true
					if n != 1 {
						t.Fatalf("the sweep on the tick queued %d entries, want 1 (atTick's)", n)
					}
				case <-time.After(200 * time.Millisecond):
				}
			}
			if entry := f.waitEntry(sid(atTick)); entry.Spec.Reason != ReasonReuse {
				t.Fatalf("RevocationEntry %+v", entry)
			}
			eventually(t, 30*time.Second, "the verifier to reject the second session's access token", func() bool {
				return v.status("Bearer "+atTick.tokens.AccessToken, nil) == http.StatusUnauthorized
			})
			eventually(t, 30*time.Second, "the queue to drain", func() bool { return testutil.ToFloat64(f.srv.metrics.RevocationQueue) == 0 })
			if f.getEntry(f.sessionEntry(sid(expired)).Name) != nil {
				t.Fatal("the sweep created an entry for a session whose access tokens have all expired")
			}
			if code := v.status("Bearer "+live.tokens.AccessToken, nil); code != http.StatusOK {
				t.Fatalf("a live session's access token: %d", code)
			}
			f.mustRefresh(live.tokens.RefreshToken)
			if got := testutil.ToFloat64(f.srv.metrics.SweepRestored); got != 2 {
				t.Fatalf("sweep_restored_total = %v, want 2", got)
			}
		})
	}
}

// waitEntry waits for the RevocationEntry of a session and returns it.
func (f *fixture) waitEntry(sid string) *v1alpha1.RevocationEntry {
	f.t.Helper()
	var e *v1alpha1.RevocationEntry
	eventually(f.t, 30*time.Second, "the RevocationEntry of session "+sid, func() bool { e = f.getEntry(f.sessionEntry(sid).Name); return e != nil })
	if e.Spec.SessionID != sid {
		f.t.Fatalf("RevocationEntry %s is for session %q", e.Name, e.Spec.SessionID)
	}
	return e
}
