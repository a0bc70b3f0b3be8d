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

package controllers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/rotation"
)

// checkInvariants asserts what must hold after any write of any pass: every key of the
// Secret is in the JWKS, exactly one key is active (once there are keys), and an active
// key that was not minted active (first key, emergency) was published for prePublish.
func checkInvariants(t *testing.T, w world, prePublish time.Duration, when string) {
	t.Helper()
	pub := kids(w.public)
	for _, k := range stateKIDs(w.state) {
		if !slices.Contains(pub, k) {
			t.Fatalf("%s: Secret key %s is missing from the JWKS %v", when, k, pub)
		}
	}
	if len(w.state.Keys) == 0 {
		return
	}
	active := 0
	for _, k := range w.state.Keys {
		if k.State != rotation.StateActive {
			continue
		}
		active++
		if !k.ActivatedAt.Equal(k.PublishedAt) && k.ActivatedAt.Sub(k.PublishedAt) < prePublish {
			t.Fatalf("%s: key %s activated %s after publication, less than prePublish %s", when, k.KID, k.ActivatedAt.Sub(k.PublishedAt), prePublish)
		}
	}
	if active != 1 {
		t.Fatalf("%s: %d active keys in %+v", when, active, w.state.Keys)
	}
}

// TestRotationTimelinesProperty walks random timelines against the real API server: at
// every step it signs a token with the active key, and checks that every token signed so
// far verifies against the published JWKS until it expires. KEYWARD_TIMELINES sets how
// many timelines run (default 4).
func TestRotationTimelinesProperty(t *testing.T) {
	n := 4
	if v, err := strconv.Atoi(os.Getenv("KEYWARD_TIMELINES")); err == nil && v > 0 {
		n = v
	}
	for seed := uint64(1); seed <= uint64(n); seed++ {
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) { runTimeline(t, seed) })
	}
}

type signed struct {
	token   []byte
	kid     string
	expires time.Time
	at      time.Time
}

func runTimeline(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x6b6579776172))
	f := newFixture(t, "timeline")
	period := []time.Duration{10 * time.Minute, time.Hour, 6 * time.Hour}[rng.IntN(3)]
	prePublish := period / time.Duration(2+rng.IntN(5))
	ttl := time.Duration(1+rng.IntN(30)) * time.Minute
	retain := ttl + time.Duration(rng.IntN(60))*time.Minute
	f.createSigningKey("tl", rotationSpec(period, prePublish, retain))
	t.Logf("period %s prePublish %s retain %s ttl %s", period, prePublish, retain, ttl)

	var tokens []signed
	var log []string
	for step := 0; step < 30; step++ {
		var gap time.Duration
		switch r := rng.IntN(10); {
		case r < 6: // the controller's own requeue, or a little later
			if next := f.get("tl").Status.NextActionTime; next != nil && next.After(f.clock.Now()) {
				gap = next.Sub(f.clock.Now()) + time.Duration(rng.IntN(3))*time.Second
			} else {
				gap = time.Second
			}
		case r < 9:
			gap = time.Duration(rng.Int64N(int64(period)))
		default: // the operator was down for several periods
			gap = time.Duration(2+rng.IntN(3)) * period
		}
		f.clock.Step(gap)
		if rng.IntN(8) == 0 {
			sk := f.get("tl")
			sk.Spec.RotationRequest = fmt.Sprintf("step-%d", step)
			if err := k8sClient.Update(f.ctx, sk); err != nil {
				t.Fatal(err)
			}
			log = append(log, "manual rotation requested")
		}
		f.reconcile("tl")
		now := f.clock.Now()
		w := readWorld(t, f.ns, "tl")
		checkInvariants(t, w, prePublish, fmt.Sprintf("step %d", step))
		key, kid := w.activeKey(t)
		tokens = append(tokens, signed{signToken(t, key, map[string]any{"exp": now.Add(ttl).Unix()}), kid, now.Add(ttl), now})
		log = append(log, fmt.Sprintf("step %d +%s: active %s, %d key(s)", step, gap, kid[:8], len(w.state.Keys)))
		for _, tok := range tokens {
			if now.After(tok.expires) {
				continue
			}
			if err := verifyWithJWKS(tok.token, w.jwksRaw); err != nil {
				t.Fatalf("token signed at %s by %s (expires %s) no longer verifies at %s: %v\ntimeline:\n%v",
					tok.at.Format(time.RFC3339), tok.kid, tok.expires.Format(time.RFC3339), now.Format(time.RFC3339), err, log)
			}
		}
	}
}

var errCrash = errors.New("injected crash")

// crashingClient lets budget writes through to the real API server and fails every later
// one, as if the process died there.
func crashingClient(budget int64) (client.Client, *atomic.Int64) {
	var writes atomic.Int64
	gate := func() error {
		if writes.Add(1) > budget {
			return errCrash
		}
		return nil
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		panic(err)
	}
	return interceptor.NewClient(c, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.CreateOption) error {
			if err := gate(); err != nil {
				return err
			}
			return c.Create(ctx, o, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.UpdateOption) error {
			if err := gate(); err != nil {
				return err
			}
			return c.Update(ctx, o, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, o client.Object, p client.Patch, opts ...client.PatchOption) error {
			if err := gate(); err != nil {
				return err
			}
			return c.Patch(ctx, o, p, opts...)
		},
		Apply: func(ctx context.Context, c client.WithWatch, o runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			if err := gate(); err != nil {
				return err
			}
			return c.Apply(ctx, o, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.DeleteOption) error {
			if err := gate(); err != nil {
				return err
			}
			return c.Delete(ctx, o, opts...)
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, o client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			if err := gate(); err != nil {
				return err
			}
			return c.SubResource(sub).Patch(ctx, o, p, opts...)
		},
	}), &writes
}

// crashScenario prepares a SigningKey just before a rotation step and triggers it.
type crashScenario struct {
	name    string
	prepare func(f *fixture)                        // normal passes up to the step
	trigger func(f *fixture)                        // what makes the step due
	check   func(t *testing.T, before, after world) // the step's effect, after restart
}

// TestCrashAfterEveryWrite fails the reconcile after each of its writes, restarts with a
// healthy client, and checks that no key is lost and the invariants hold at every point.
func TestCrashAfterEveryWrite(t *testing.T) {
	const period, prePublish, retain = time.Hour, 10 * time.Minute, 30 * time.Minute
	scenarios := []crashScenario{
		{"first key", func(*fixture) {}, func(*fixture) {}, func(t *testing.T, before, after world) {
			if len(after.state.Keys) != 1 {
				t.Fatalf("want one key, got %+v", after.state.Keys)
			}
		}},
		{"pre-publication", nil, func(f *fixture) { f.clock.Step(period - prePublish) }, func(t *testing.T, before, after world) {
			a := before.state.Keys[0].KID
			assertStates(t, after, map[string]string{a: "Active", otherKID(after.state, a): "Pending"})
		}},
		{"activation", func(f *fixture) { f.clock.Step(period - prePublish); f.reconcile("ck") }, func(f *fixture) { f.clock.Step(prePublish) },
			func(t *testing.T, before, after world) {
				assertStates(t, after, map[string]string{keyIn(before, "Active"): "Retired", keyIn(before, "Pending"): "Active"})
			}},
		{"removal", func(f *fixture) {
			f.clock.Step(period - prePublish)
			f.reconcile("ck")
			f.clock.Step(prePublish)
			f.reconcile("ck")
		},
			func(f *fixture) { f.clock.Step(retain) }, func(t *testing.T, before, after world) {
				assertStates(t, after, map[string]string{keyIn(before, "Active"): "Active"})
				assertJWKS(t, after, keyIn(before, "Active"))
			}},
		{"emergency", nil, func(f *fixture) {
			sk := f.get("ck")
			sk.Spec.EmergencyRotationRequest = "now"
			if err := k8sClient.Update(f.ctx, sk); err != nil {
				f.t.Fatal(err)
			}
		}, func(t *testing.T, before, after world) {
			if len(after.state.Keys) != 1 || slices.Contains(stateKIDs(before.state), after.state.Keys[0].KID) {
				t.Fatalf("emergency must leave exactly one fresh key, got %+v", after.state.Keys)
			}
			assertJWKS(t, after, after.state.Keys[0].KID)
		}},
		{"key revocation", func(f *fixture) { f.clock.Step(period - prePublish); f.reconcile("ck") }, func(f *fixture) {
			revokeKey(f, keyIn(readWorld(f.t, f.ns, "ck"), "Active"))
		}, func(t *testing.T, before, after world) {
			revoked, pending := keyIn(before, "Active"), keyIn(before, "Pending")
			if slices.Contains(kids(after.public), revoked) || slices.Contains(stateKIDs(after.state), revoked) {
				t.Fatalf("revoked key %s still published", revoked)
			}
			fresh := keyIn(after, "Active")
			assertStates(t, after, map[string]string{fresh: "Active", pending: "Pending"})
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			for budget := int64(0); ; budget++ {
				f := newFixture(t, "crash")
				f.createSigningKey("ck", rotationSpec(period, prePublish, retain))
				if sc.name != "first key" {
					f.reconcile("ck")
				}
				if sc.prepare != nil {
					sc.prepare(f)
				}
				sc.trigger(f)
				before := readWorld(t, f.ns, "ck")

				c, writes := crashingClient(budget)
				crashing := &SigningKeyReconciler{Client: c, APIReader: c, Clock: f.clock, Recorder: recorder}
				_, err := crashing.Reconcile(f.ctx, reqFor(f.ns, "ck"))
				mid := readWorld(t, f.ns, "ck")
				checkInvariants(t, mid, prePublish, fmt.Sprintf("after crash at write %d", budget+1))

				f.reconcile("ck") // restart: a healthy process picks up
				after := readWorld(t, f.ns, "ck")
				checkInvariants(t, after, prePublish, "after restart")
				sc.check(t, before, after)
				// No key that reached the Secret is lost, unless the step removes it.
				for _, k := range stateKIDs(mid.state) {
					if !slices.Contains(stateKIDs(after.state), k) && slices.Contains(stateKIDs(before.state), k) == false {
						t.Fatalf("key %s written before the crash was lost after restart", k)
					}
				}
				// A second healthy pass is a no-op.
				f.reconcile("ck")
				if again := readWorld(t, f.ns, "ck"); string(again.jwksRaw) != string(after.jwksRaw) || fmt.Sprint(stateKIDs(again.state)) != fmt.Sprint(stateKIDs(after.state)) {
					t.Fatalf("a second pass changed the keys:\n%+v\n%+v", after.state.Keys, again.state.Keys)
				}
				if err == nil {
					t.Logf("%d write(s) in the step; crashed after each", writes.Load())
					return
				}
				if !errors.Is(err, errCrash) {
					t.Fatalf("unexpected error from the crashing pass: %v", err)
				}
			}
		})
	}
}

func keyIn(w world, state rotation.State) string {
	for _, k := range w.state.Keys {
		if k.State == state {
			return k.KID
		}
	}
	return ""
}

func revokeKey(f *fixture, kid string) {
	f.t.Helper()
	re := &v1alpha1.RevocationEntry{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "kid-", Namespace: f.ns},
		Spec:       v1alpha1.RevocationEntrySpec{KeyID: kid, Reason: "key leaked in a log"},
	}
	if err := k8sClient.Create(f.ctx, re); err != nil {
		f.t.Fatal(err)
	}
}
