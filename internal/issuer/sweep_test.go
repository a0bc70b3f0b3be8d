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
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/issuer/store"
	"github.com/keyward-dev/keyward/internal/issuer/store/boltstore"
	"github.com/keyward-dev/keyward/internal/sidecar"
)

func TestRevocationWindow(t *testing.T) {
	d := func(d time.Duration) metav1.Duration { return metav1.Duration{Duration: d} }
	served := func(ttl, leeway time.Duration) *policyState {
		return &policyState{bundle: &sidecar.State{}, accessTTL: ttl, leeway: leeway}
	}
	tests := []struct {
		name string
		spec v1alpha1.TokenPolicySpec
		p    *policyState
		want time.Duration
	}{
		{"API defaults", v1alpha1.TokenPolicySpec{}, nil, 10*time.Minute + 30*time.Second + SweepMargin},
		{"the policy's values", v1alpha1.TokenPolicySpec{Leeway: d(2 * time.Minute), AccessToken: v1alpha1.AccessTokenSpec{TTL: d(time.Hour)}},
			nil, time.Hour + 2*time.Minute + SweepMargin},
		{"leeway 0 counts as the controllers count it", v1alpha1.TokenPolicySpec{Leeway: d(0), AccessToken: v1alpha1.AccessTokenSpec{TTL: d(time.Minute)}},
			nil, time.Minute + 30*time.Second + SweepMargin},
		{"a longer TTL in the bundle in force (the policy was shortened)", v1alpha1.TokenPolicySpec{AccessToken: v1alpha1.AccessTokenSpec{TTL: d(5 * time.Minute)}},
			served(time.Hour, 30*time.Second), time.Hour + 30*time.Second + SweepMargin},
		{"a longer TTL in the policy (the bundle is behind)", v1alpha1.TokenPolicySpec{Leeway: d(time.Minute), AccessToken: v1alpha1.AccessTokenSpec{TTL: d(2 * time.Hour)}},
			served(time.Hour, 5*time.Minute), 2*time.Hour + 5*time.Minute + SweepMargin},
		{"a served policy without a bundle yet", v1alpha1.TokenPolicySpec{}, &policyState{accessTTL: 0}, 10*time.Minute + 30*time.Second + SweepMargin},
		{"the API's bounds", v1alpha1.TokenPolicySpec{Leeway: d(MaxLeeway), AccessToken: v1alpha1.AccessTokenSpec{TTL: d(MaxAccessTokenTTL)}},
			nil, MaxRevocationWindow},
	}
	for _, tt := range tests {
		if got := revocationWindow(&tt.spec, tt.p); got != tt.want {
			t.Errorf("%s: window %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestPlanSweep steps a fake clock across the windows of two policies: a session's entry
// is planned while a verifier may accept one of its access tokens (before RevokedAt +
// window), and never from RevokedAt + window on.
func TestPlanSweep(t *testing.T) {
	t0 := time.Date(2026, time.March, 14, 15, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(t0)
	short, long := 5*time.Minute, time.Hour
	windows := map[string]time.Duration{"team-a/web": short, "team-b/api": long}
	fam := func(id, policy, reason string, revoked time.Time) store.Family {
		return store.Family{ID: id, Policy: policy, Subject: "alice", RevokedAt: revoked, RevokeReason: reason}
	}
	revoked := []store.Family{
		fam("web-1", "team-a/web", ReasonLogout, t0),
		fam("web-2", "team-a/web", ReasonReuse, t0.Add(time.Minute)),
		fam("api-1", "team-b/api", ReasonClient, t0),
		fam("by-entry", "team-a/web", reasonEntryPrefix+" (sub)", t0), // its RevocationEntry exists
		fam("no-reason", "team-b/api", "", t0.Add(time.Minute)),
		fam("gone-1", "team-c/deleted", ReasonBurst, t0),
		fam("gone-2", "team-c/deleted", ReasonBurst, t0),
		{ID: "live", Policy: "team-a/web"}, // never listed by a store; ignored if it were
	}
	plan := func() []string {
		t.Helper()
		entries, unknown := planSweep(clk.Now(), revoked, windows)
		if len(unknown) != 1 || unknown["team-c/deleted"] != 2 {
			t.Fatalf("unknown policies %v, want team-c/deleted: 2", unknown)
		}
		var sids []string
		for _, e := range entries {
			sids = append(sids, e.Spec.SessionID)
		}
		return sids
	}
	steps := []struct {
		at   time.Duration // since t0
		want []string
	}{
		{0, []string{"web-1", "web-2", "api-1", "no-reason"}},
		{short - time.Nanosecond, []string{"web-1", "web-2", "api-1", "no-reason"}},
		{short, []string{"web-2", "api-1", "no-reason"}}, // web-1's tokens have all expired
		{short + time.Minute, []string{"api-1", "no-reason"}},
		{long - time.Nanosecond, []string{"api-1", "no-reason"}},
		{long, []string{"no-reason"}},
		{long + time.Minute, nil},
	}
	for _, st := range steps {
		clk.SetTime(t0.Add(st.at))
		if got := plan(); !slices.Equal(got, st.want) {
			t.Fatalf("at t0+%s: planned %q, want %q", st.at, got, st.want)
		}
	}

	// The planned entry is the one the revocation itself creates: same name, namespace,
	// labels and spec.
	clk.SetTime(t0)
	entries, _ := planSweep(clk.Now(), revoked[:1], windows)
	want := sessionEntry(&policyState{namespace: "team-a", name: "web"}, "web-1", ReasonLogout)
	if len(entries) != 1 || entries[0].Name != want.Name || entries[0].Namespace != want.Namespace ||
		!equalSpec(entries[0].Spec, want.Spec) || entries[0].Labels[v1alpha1.LabelTokenPolicy] != "web" || entries[0].Labels[LabelCreatedBy] != CreatedByValue {
		t.Fatalf("planned %+v, want %+v", entries, want)
	}
	entries, _ = planSweep(clk.Now(), revoked[4:5], windows)
	if len(entries) != 1 || entries[0].Spec.Reason != sweepReason {
		t.Fatalf("a family revoked without a reason: %+v", entries)
	}
}

func equalSpec(a, b v1alpha1.RevocationEntrySpec) bool {
	return a.SessionID == b.SessionID && a.Reason == b.Reason && slices.Equal(a.Policies, b.Policies)
}

// createRecorder is a client whose Create answers like the API server would for entries
// that do not (or, listed in exists, do) exist; nothing else is called.
type createRecorder struct {
	client.Client
	mu      sync.Mutex
	calls   []string
	exists  map[string]bool
	failing bool
}

func (c *createRecorder) Create(_ context.Context, obj client.Object, _ ...client.CreateOption) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failing {
		return errors.New("connection refused")
	}
	c.calls = append(c.calls, obj.GetName())
	if c.exists[obj.GetName()] {
		return apierrors.NewAlreadyExists(schema.GroupResource{Group: v1alpha1.GroupVersion.Group, Resource: "revocationentries"}, obj.GetName())
	}
	c.exists[obj.GetName()] = true
	return nil
}

// TestSweepQueues runs sweeps on a store, with a fake clock, and drains the queue by hand:
// a sweep queues what the store revoked within the window, nothing twice while it is
// pending, nothing the API server has taken (created, or AlreadyExists: another replica
// made it), and forgets what it has taken once the window has passed.
func TestSweepQueues(t *testing.T) {
	t0 := time.Date(2026, time.March, 14, 15, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(t0)
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "issuer.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	sealer, err := NewSealer([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	c := &createRecorder{exists: map[string]bool{}}
	srv, err := New(Config{Store: st, Sealer: sealer, Reviewer: &TokenReviewer{}, Client: c, Clock: clk, Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const window = 10 * time.Minute
	windows := map[string]time.Duration{"team-a/web": window}
	for _, id := range []string{"s1", "s2", "s3", "old", "live"} {
		f := store.Family{ID: id, Policy: "team-a/web", Subject: "alice", CreatedAt: t0.Add(-time.Hour), ExpiresAt: t0.Add(24 * time.Hour), LastUsedAt: t0}
		if err := st.CreateFamily(ctx, f, store.HashToken(id)); err != nil {
			t.Fatal(err)
		}
	}
	revoke := func(id string, at time.Time) {
		t.Helper()
		if _, err := st.RevokeFamily(ctx, id, ReasonLogout, at); err != nil {
			t.Fatal(err)
		}
	}
	revoke("old", t0.Add(-window)) // its tokens expired just now
	revoke("s1", t0.Add(-time.Minute))
	revoke("s2", t0)
	sweep := func(want int) {
		t.Helper()
		n, err := srv.sweep(ctx, windows)
		if err != nil || n != want {
			t.Fatalf("sweep at t0+%s: queued %d, %v; want %d", clk.Now().Sub(t0), n, err, want)
		}
	}
	name := func(sid string) string { return policySessionEntry("team-a", "web", sid, "").Name }
	drain := func() {
		t.Helper()
		for srv.revoker.q.Len() > 0 {
			srv.revoker.next(ctx)
		}
	}

	sweep(2) // s1, s2; not old, not live
	sweep(0) // pending already

	c.exists[name("s2")] = true // another replica created it
	drain()
	if want := []string{name("s1"), name("s2")}; !slices.Equal(sorted(c.calls), sorted(want)) {
		t.Fatalf("created %q, want %q", c.calls, want)
	}
	sweep(0) // both taken by the API server: no call
	if len(c.calls) != 2 {
		t.Fatalf("a sweep asked the API server again: %q", c.calls)
	}

	// A later revocation, while the API server is unreachable: queued, retried, taken.
	clk.Step(time.Minute)
	revoke("s3", clk.Now())
	c.failing = true
	sweep(1)
	srv.revoker.next(ctx) // fails; requeued with backoff
	if got := testutil.ToFloat64(srv.metrics.RevocationFails); got != 1 {
		t.Fatalf("revocation failures %v", got)
	}
	sweep(0) // still pending
	c.failing = false
	eventually(t, 5*time.Second, "the retry of s3's entry", func() bool {
		if srv.revoker.q.Len() > 0 {
			srv.revoker.next(ctx)
		}
		return c.exists[name("s3")] && testutil.ToFloat64(srv.metrics.RevocationQueue) == 0
	})
	if got := testutil.ToFloat64(srv.metrics.SweepRestored); got != 3 {
		t.Fatalf("sweep_restored_total %v, want 3", got)
	}

	// Once the window has passed for every entry taken, the record of them goes.
	clk.Step(window)
	sweep(0)
	if n := len(srv.revoker.created); n != 1 {
		t.Fatalf("%d entries remembered at t0+11m, want 1 (s3's, taken at t0+1m)", n)
	}
	clk.Step(time.Minute)
	sweep(0)
	if n := len(srv.revoker.created); n != 0 {
		t.Fatalf("%d entries remembered after every window passed", n)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// sweepCounter is a Sweeper that reports each sweep.
type sweepCounter struct{ done chan struct{} }

func (s sweepCounter) SweepRevocations(context.Context) (int, error) {
	s.done <- struct{}{}
	return 0, nil
}

// TestGCSweepsAndKeepsRevokedFamilies: the GC runnable sweeps at start and after each
// collection, and keeps a revoked family for the longest revocation window even when
// Retain is shorter.
func TestGCSweepsAndKeepsRevokedFamilies(t *testing.T) {
	t0 := time.Date(2026, time.March, 14, 15, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(t0)
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "issuer.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	for _, f := range []struct {
		id      string
		revoked time.Time
	}{{"recent", t0.Add(-MaxRevocationWindow + 2*time.Minute)}, {"old", t0.Add(-MaxRevocationWindow)}} {
		fam := store.Family{ID: f.id, Policy: "team-a/web", Subject: "alice", CreatedAt: t0.Add(-48 * time.Hour), ExpiresAt: t0.Add(24 * time.Hour), LastUsedAt: t0.Add(-48 * time.Hour)}
		if err := st.CreateFamily(ctx, fam, store.HashToken(f.id)); err != nil {
			t.Fatal(err)
		}
		if _, err := st.RevokeFamily(ctx, f.id, ReasonLogout, f.revoked); err != nil {
			t.Fatal(err)
		}
	}
	sweeps := sweepCounter{done: make(chan struct{})}
	gc := &GC{Store: st, Clock: clk, Interval: time.Minute, Retain: time.Hour, Sweeper: sweeps, Metrics: NewMetrics(), Log: logr.Discard()}
	stopped := make(chan error, 1)
	go func() { stopped <- gc.Start(ctx) }()
	waitSweep := func(what string) {
		t.Helper()
		select {
		case <-sweeps.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("no sweep %s", what)
		}
	}
	waitSweep("at start")
	eventually(t, 10*time.Second, "the GC ticker", clk.HasWaiters)
	clk.Step(time.Minute) // the first collection: "old" ended MaxRevocationWindow + 1m ago
	waitSweep("after the first collection")
	if n := testutil.ToFloat64(gc.Metrics.GCDeleted); n != 1 {
		t.Fatalf("GC deleted %v families, want 1 (old)", n)
	}
	if _, err := st.Family(ctx, "recent"); err != nil {
		t.Fatalf("a family revoked within the longest window was collected (Retain 1h): %v", err)
	}
	if _, err := st.Family(ctx, "old"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old family: %v, want it collected", err)
	}
	cancel()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

// TestCreatedBounded: without sweeps (a Server run without GC), the record of created
// session entries still forgets those older than any window once it grows past its limit.
func TestCreatedBounded(t *testing.T) {
	t0 := time.Date(2026, time.March, 14, 15, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(t0)
	q := newRevocationQueue(&createRecorder{exists: map[string]bool{}}, clk, NewMetrics(), logr.Discard())
	for i := range minCreatedLimit {
		q.created[strconv.Itoa(i)] = t0.Add(-MaxRevocationWindow - time.Second) // older than any window
	}
	q.created["recent"] = t0.Add(-time.Minute)
	q.add(policySessionEntry("team-a", "web", "s1", ReasonLogout))
	q.next(t.Context())
	if len(q.created) != 2 || q.createdLimit != minCreatedLimit {
		t.Fatalf("%d entries remembered (limit %d), want 2: recent and s1", len(q.created), q.createdLimit)
	}
	// jti entries are never swept, so never remembered.
	q.add(jtiEntry(&policyState{namespace: "team-a", name: "web"}, "jti-1", ReasonClient))
	q.next(t.Context())
	if len(q.created) != 2 {
		t.Fatalf("a jti entry was remembered")
	}
}
