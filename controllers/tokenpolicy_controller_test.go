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
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/bundle"
)

// startManager runs the three controllers in a manager whose cache sees only ns, with the
// given clock, until the test ends.
func startManager(t *testing.T, ns string, clk *clocktesting.FakeClock) {
	t.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := SetupIndexes(ctx, mgr); err != nil {
		t.Fatal(err)
	}
	opts := controller.Options{SkipNameValidation: ptrTo(true), MaxConcurrentReconciles: 2}
	for _, setup := range []func() error{
		func() error {
			return (&SigningKeyReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: clk, Recorder: mgr.GetEventRecorder("sk")}).SetupWithManager(mgr, opts)
		},
		func() error {
			return (&TokenPolicyReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: clk, Recorder: mgr.GetEventRecorder("tp")}).SetupWithManager(mgr, opts)
		},
		func() error {
			return (&RevocationEntryReconciler{Client: mgr.GetClient(), Clock: clk, Recorder: mgr.GetEventRecorder("re")}).SetupWithManager(mgr, opts)
		},
	} {
		if err := setup(); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func ptrTo[T any](v T) *T { return &v }

// eventually polls cond every 100 ms until it returns nil or the deadline passes. The
// deadline only bounds a wait for a watch to fire; it is not a performance assertion.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readBundle decodes a policy's bundle ConfigMap with the reader the sidecar uses.
func readBundle(ns, policy string) (*bundle.Bundle, *corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{}
	if err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: bundleConfigMapName(policy)}, cm); err != nil {
		return nil, nil, err
	}
	b, err := bundle.Decode([]byte(cm.Data[bundle.DataKey]))
	if err != nil {
		return nil, cm, err
	}
	if cm.Annotations[AnnotationBundleHash] != b.Hash || cm.Annotations[AnnotationBundleGeneration] != fmt.Sprint(b.Generation) {
		return nil, cm, fmt.Errorf("annotations %v do not match the document (gen %d, %s)", cm.Annotations, b.Generation, b.Hash)
	}
	return b, cm, nil
}

func values(l []bundle.Revoked) []string {
	out := make([]string, 0, len(l))
	for _, e := range l {
		out = append(out, e.Value)
	}
	return out
}

func bundleKIDs(b *bundle.Bundle) []string { return kids(b.Keys) }

func createPolicy(t *testing.T, ns, name string, mut func(*v1alpha1.TokenPolicySpec)) {
	t.Helper()
	tp := &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: validPolicySpec(mut)}
	if err := k8sClient.Create(context.Background(), tp); err != nil {
		t.Fatal(err)
	}
}

func createRevocation(t *testing.T, ns, name string, spec v1alpha1.RevocationEntrySpec) *v1alpha1.RevocationEntry {
	t.Helper()
	re := &v1alpha1.RevocationEntry{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}
	if err := k8sClient.Create(context.Background(), re); err != nil {
		t.Fatal(err)
	}
	return re
}

// TestRevocationReachesBundlesAndExpires runs the controllers in a manager: revocations
// reach the bundle of every policy in scope, a rotation re-renders the bundles, and an
// expired entry is deleted and leaves the bundles.
func TestRevocationReachesBundlesAndExpires(t *testing.T) {
	ns := newNamespace(t, "bundles")
	clk := clocktesting.NewFakeClock(time.Now())
	startManager(t, ns, clk)
	ctx := t.Context()

	sk := &v1alpha1.SigningKey{ObjectMeta: metav1.ObjectMeta{Name: "keys", Namespace: ns}, Spec: rotationSpec(24*time.Hour, 5*time.Minute, 2*time.Hour)}
	if err := k8sClient.Create(ctx, sk); err != nil {
		t.Fatal(err)
	}
	short := func(s *v1alpha1.TokenPolicySpec) {
		s.SigningKeys = []string{"keys"}
		s.AccessToken.TTL = metav1.Duration{Duration: 5 * time.Minute}
	}
	createPolicy(t, ns, "a", short)
	createPolicy(t, ns, "b", func(s *v1alpha1.TokenPolicySpec) { s.SigningKeys = []string{"keys"} })

	var first *bundle.Bundle
	eventually(t, "bundles rendered with the active key", func() error {
		for _, p := range []string{"a", "b"} {
			b, _, err := readBundle(ns, p)
			if err != nil {
				return err
			}
			if got := f1(bundleKIDs(b)); got == "" {
				return fmt.Errorf("bundle %s has no key", p)
			}
			first = b
		}
		return nil
	})

	jti := createRevocation(t, ns, "leaked-token", v1alpha1.RevocationEntrySpec{JTI: "tok-1", Reason: "pasted in a ticket"})
	createRevocation(t, ns, "alice", v1alpha1.RevocationEntrySpec{Subject: "alice", Reason: "left the company", Policies: []string{"a"}})
	createRevocation(t, ns, "session", v1alpha1.RevocationEntrySpec{SessionID: "s-9", Reason: "logout"})
	eventually(t, "revocations in the bundles in scope", func() error {
		a, _, err := readBundle(ns, "a")
		if err != nil {
			return err
		}
		b, _, err := readBundle(ns, "b")
		if err != nil {
			return err
		}
		if fmt.Sprint(values(a.Content.Revocations.JTI), values(a.Content.Revocations.Subject), values(a.Content.Revocations.Session)) != "[tok-1] [alice] [s-9]" {
			return fmt.Errorf("bundle a revocations: %+v", a.Content.Revocations)
		}
		if fmt.Sprint(values(b.Content.Revocations.JTI), values(b.Content.Revocations.Subject), values(b.Content.Revocations.Session)) != "[tok-1] [] [s-9]" {
			return fmt.Errorf("bundle b revocations: %+v", b.Content.Revocations)
		}
		if a.Content.Revocations.Subject[0].IssuedBefore == 0 {
			return fmt.Errorf("subject revocation without issuedBefore")
		}
		return nil
	})

	// Expiry: the jti entry lives for the longest access-token lifetime in scope (policy b:
	// 10m default, + 30s leeway). Recorded in status, then the entry deletes itself.
	var expires time.Time
	eventually(t, "expiry recorded", func() error {
		re := &v1alpha1.RevocationEntry{}
		if err := k8sClient.Get(ctx, client2key(jti), re); err != nil {
			return err
		}
		if re.Status.ExpiresAt == nil || !isReady(re.Status.Conditions, re.Generation) {
			return fmt.Errorf("status %+v", re.Status)
		}
		expires = re.Status.ExpiresAt.Time
		if want := re.CreationTimestamp.Add(10*time.Minute + 30*time.Second); !expires.Equal(want) {
			return fmt.Errorf("expiresAt %s, want %s", expires, want)
		}
		if re.Status.Target != "jti=tok-1" || !slices.Equal(re.Status.Policies, []string{"a", "b"}) {
			return fmt.Errorf("status target %q policies %v", re.Status.Target, re.Status.Policies)
		}
		return nil
	})
	expirer := &RevocationEntryReconciler{Client: k8sClient, Clock: clk, Recorder: recorder}
	clk.SetTime(expires.Add(-time.Second))
	if _, err := expirer.Reconcile(ctx, reqFor(ns, "leaked-token")); err != nil {
		t.Fatal(err)
	}
	if err := k8sClient.Get(ctx, client2key(jti), &v1alpha1.RevocationEntry{}); err != nil {
		t.Fatalf("entry deleted a second before its expiry: %v", err)
	}
	clk.SetTime(expires)
	if _, err := expirer.Reconcile(ctx, reqFor(ns, "leaked-token")); err != nil {
		t.Fatal(err)
	}
	if err := k8sClient.Get(ctx, client2key(jti), &v1alpha1.RevocationEntry{}); !apierrors.IsNotFound(err) {
		t.Fatalf("expired entry still there: %v", err)
	}
	eventually(t, "expired revocation leaves the bundles", func() error {
		for _, p := range []string{"a", "b"} {
			b, _, err := readBundle(ns, p)
			if err != nil {
				return err
			}
			if len(b.Content.Revocations.JTI) != 0 || len(b.Content.Revocations.Session) != 1 {
				return fmt.Errorf("bundle %s revocations %+v", p, b.Content.Revocations)
			}
		}
		return nil
	})

	// A manual rotation publishes a second key; the bundles follow, with a higher generation.
	if err := k8sClient.Get(ctx, client2key(sk), sk); err != nil {
		t.Fatal(err)
	}
	sk.Spec.RotationRequest = "now"
	if err := k8sClient.Update(ctx, sk); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pending key in the bundles", func() error {
		b, _, err := readBundle(ns, "b")
		if err != nil {
			return err
		}
		if len(b.Keys) != 2 {
			return fmt.Errorf("bundle keys %v", bundleKIDs(b))
		}
		if b.Generation <= first.Generation {
			return fmt.Errorf("generation %d did not grow past %d", b.Generation, first.Generation)
		}
		tp := &v1alpha1.TokenPolicy{}
		if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "b"}, tp); err != nil {
			return err
		}
		if tp.Status.BundleGeneration != b.Generation || tp.Status.BundleHash != b.Hash || !isReady(tp.Status.Conditions, tp.Generation) {
			return fmt.Errorf("status %+v does not match the bundle (gen %d)", tp.Status, b.Generation)
		}
		return nil
	})
}

// TestKeyRevocationWithdrawsKey: a RevocationEntry naming the active kid makes the
// SigningKey withdraw it at once and sign with a fresh key; the bundles drop it too.
func TestKeyRevocationWithdrawsKey(t *testing.T) {
	ns := newNamespace(t, "kidrev")
	clk := clocktesting.NewFakeClock(time.Now())
	startManager(t, ns, clk)
	ctx := t.Context()
	sk := &v1alpha1.SigningKey{ObjectMeta: metav1.ObjectMeta{Name: "keys", Namespace: ns}, Spec: rotationSpec(24*time.Hour, 5*time.Minute, 2*time.Hour)}
	if err := k8sClient.Create(ctx, sk); err != nil {
		t.Fatal(err)
	}
	createPolicy(t, ns, "p", func(s *v1alpha1.TokenPolicySpec) { s.SigningKeys = []string{"keys"} })
	var leaked string
	eventually(t, "active key", func() error {
		if err := k8sClient.Get(ctx, client2key(sk), sk); err != nil {
			return err
		}
		if leaked = sk.Status.ActiveKeyID; leaked == "" {
			return fmt.Errorf("no active key yet")
		}
		_, _, err := readBundle(ns, "p")
		return err
	})
	createRevocation(t, ns, "leaked-key", v1alpha1.RevocationEntrySpec{KeyID: leaked, Reason: "private key in a crash dump"})
	eventually(t, "key withdrawn everywhere", func() error {
		if err := k8sClient.Get(ctx, client2key(sk), sk); err != nil {
			return err
		}
		if sk.Status.ActiveKeyID == "" || sk.Status.ActiveKeyID == leaked {
			return fmt.Errorf("active key still %q", sk.Status.ActiveKeyID)
		}
		w := readWorld(t, ns, "keys")
		if slices.Contains(kids(w.public), leaked) || slices.Contains(stateKIDs(w.state), leaked) {
			return fmt.Errorf("leaked key still in the JWKS or Secret")
		}
		b, _, err := readBundle(ns, "p")
		if err != nil {
			return err
		}
		if slices.Contains(bundleKIDs(b), leaked) || !slices.Equal(values(b.Content.Revocations.KeyID), []string{leaked}) {
			return fmt.Errorf("bundle keys %v, kid revocations %v", bundleKIDs(b), values(b.Content.Revocations.KeyID))
		}
		if !slices.Contains(bundleKIDs(b), sk.Status.ActiveKeyID) {
			return fmt.Errorf("bundle lacks the fresh key")
		}
		return nil
	})
}

// TestTokenPolicyConditions covers the semantic errors CEL cannot see.
func TestTokenPolicyConditions(t *testing.T) {
	f := newFixture(t, "tpcond")
	r := &TokenPolicyReconciler{Client: k8sClient, APIReader: k8sClient, Clock: f.clock, Recorder: recorder}
	createPolicy(t, f.ns, "p", func(s *v1alpha1.TokenPolicySpec) { s.SigningKeys = []string{"short", "absent"} })
	if _, err := r.Reconcile(f.ctx, reqFor(f.ns, "p")); err == nil || reasonOf(err) != ReasonNoKeys {
		t.Fatalf("want NoTrustedKeys, got %v", err)
	}
	f.createSigningKey("short", rotationSpec(time.Hour, time.Minute, 5*time.Minute))
	f.reconcile("short")
	if _, err := r.Reconcile(f.ctx, reqFor(f.ns, "p")); err != nil {
		t.Fatal(err)
	}
	tp := &v1alpha1.TokenPolicy{}
	if err := k8sClient.Get(f.ctx, types.NamespacedName{Namespace: f.ns, Name: "p"}, tp); err != nil {
		t.Fatal(err)
	}
	if c := findCondition(tp.Status.Conditions, ConditionRetainCoversTTL); c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "short (retain 5m0s)") {
		t.Fatalf("RetainCoversTTL = %+v", c)
	}
	if c := findCondition(tp.Status.Conditions, ConditionSigningKeysReady); c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "absent") {
		t.Fatalf("SigningKeysReady = %+v", c)
	}
	if !isReady(tp.Status.Conditions, tp.Generation) || tp.Status.BundleGeneration != 1 {
		t.Fatalf("the bundle is rendered with the keys that exist: %+v", tp.Status)
	}
	// Reconciling again without a change keeps the generation.
	if _, err := r.Reconcile(f.ctx, reqFor(f.ns, "p")); err != nil {
		t.Fatal(err)
	}
	if b, _, err := readBundle(f.ns, "p"); err != nil || b.Generation != 1 {
		t.Fatalf("generation moved without a change: %v %v", b, err)
	}
	// A hand edit is replaced by the rendered document, as a new generation.
	cm := getConfigMap(t, f.ns, bundleConfigMapName("p"))
	cm.Data[bundle.DataKey] = strings.Replace(cm.Data[bundle.DataKey], "https://issuer.example", "https://evil.example", 1)
	if err := k8sClient.Update(f.ctx, cm); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readBundle(f.ns, "p"); err == nil {
		t.Fatal("the edited bundle still decodes: its hash should not match")
	}
	if _, err := r.Reconcile(f.ctx, reqFor(f.ns, "p")); err != nil {
		t.Fatal(err)
	}
	if b, _, err := readBundle(f.ns, "p"); err != nil || b.Generation != 2 || b.Content.Policy.Issuer != "https://issuer.example" {
		t.Fatalf("hand edit not repaired: %+v %v", b, err)
	}
}

// TestBundleTooLarge fills a policy's scope with long jti revocations until the bundle
// would pass the limit: the last good bundle stays and the policy says why.
func TestBundleTooLarge(t *testing.T) {
	f := newFixture(t, "toolarge")
	r := &TokenPolicyReconciler{Client: k8sClient, APIReader: k8sClient, Clock: f.clock, Recorder: recorder}
	f.createSigningKey("k", rotationSpec(time.Hour, time.Minute, time.Hour))
	f.reconcile("k")
	createPolicy(t, f.ns, "p", func(*v1alpha1.TokenPolicySpec) {})
	if _, err := r.Reconcile(f.ctx, reqFor(f.ns, "p")); err != nil {
		t.Fatal(err)
	}
	good, _, err := readBundle(f.ns, "p")
	if err != nil {
		t.Fatal(err)
	}
	// Each entry is about 280 bytes in the bundle: 3,400 of them pass 900 KiB.
	const n, workers = 3400, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				jti := fmt.Sprintf("%06d-%s", i, strings.Repeat("x", 249))
				re := &v1alpha1.RevocationEntry{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("r-%d", i), Namespace: f.ns},
					Spec: v1alpha1.RevocationEntrySpec{JTI: jti, Reason: "bulk"}}
				if err := k8sClient.Create(f.ctx, re); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	_, err = r.Reconcile(f.ctx, reqFor(f.ns, "p"))
	if err == nil || reasonOf(err) != ReasonBundleTooLarge {
		t.Fatalf("want BundleTooLarge, got %v", err)
	}
	kept, _, err := readBundle(f.ns, "p")
	if err != nil || kept.Hash != good.Hash || kept.Generation != good.Generation {
		t.Fatalf("the last good bundle was not kept: %v", err)
	}
	tp := &v1alpha1.TokenPolicy{}
	if err := k8sClient.Get(f.ctx, types.NamespacedName{Namespace: f.ns, Name: "p"}, tp); err != nil {
		t.Fatal(err)
	}
	if c := findCondition(tp.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonBundleTooLarge {
		t.Fatalf("Ready = %+v", c)
	}
}

func f1(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func client2key(o metav1.Object) types.NamespacedName {
	return types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
}
