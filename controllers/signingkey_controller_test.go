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
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/jwks"
)

func rotationSpec(period, prePublish, retain time.Duration) v1alpha1.SigningKeySpec {
	return v1alpha1.SigningKeySpec{Rotation: v1alpha1.RotationSpec{
		Period: metav1.Duration{Duration: period}, PrePublish: metav1.Duration{Duration: prePublish}, Retain: metav1.Duration{Duration: retain},
	}}
}

// TestSigningKeyLifecycle walks one SigningKey through Pending → Active → Retired →
// removed with a fake clock and checks the JWKS ConfigMap at every step.
func TestSigningKeyLifecycle(t *testing.T) {
	f := newFixture(t, "lifecycle")
	f.createSigningKey("web", rotationSpec(time.Hour, 10*time.Minute, 30*time.Minute))

	res := f.reconcile("web")
	w := readWorld(t, f.ns, "web")
	if len(w.state.Keys) != 1 || w.state.Keys[0].State != "Active" {
		t.Fatalf("first pass: want one active key, got %+v", w.state.Keys)
	}
	a := w.state.Keys[0].KID
	if got := kids(w.public); !slices.Equal(got, []string{a}) {
		t.Fatalf("JWKS after first pass = %v, want [%s]", got, a)
	}
	if tp, _ := jwks.Thumbprint(w.public[0]); tp != a {
		t.Fatalf("kid %s is not the RFC 7638 thumbprint %s", a, tp)
	}
	if want := 50 * time.Minute; res.RequeueAfter != want {
		t.Fatalf("RequeueAfter = %s, want %s (period - prePublish)", res.RequeueAfter, want)
	}
	sk := f.get("web")
	if sk.Status.ActiveKeyID != a || !isReady(sk.Status.Conditions, sk.Generation) {
		t.Fatalf("status: active %q conditions %+v", sk.Status.ActiveKeyID, sk.Status.Conditions)
	}

	// One second before the successor is due nothing changes.
	f.clock.Step(50*time.Minute - time.Second)
	f.reconcile("web")
	if w := readWorld(t, f.ns, "web"); len(w.public) != 1 {
		t.Fatalf("successor published early: %v", kids(w.public))
	}

	// Pre-publication: B is in the JWKS but A still signs.
	f.clock.Step(time.Second)
	f.reconcile("web")
	w = readWorld(t, f.ns, "web")
	b := otherKID(w.state, a)
	assertStates(t, w, map[string]string{a: "Active", b: "Pending"})
	assertJWKS(t, w, a, b)
	if sk := f.get("web"); sk.Status.ActiveKeyID != a || len(sk.Status.Keys) != 2 {
		t.Fatalf("status during pre-publication: %+v", sk.Status)
	}

	// Activation at the end of A's period: B signs, A is retired but still published.
	f.clock.Step(10 * time.Minute)
	res = f.reconcile("web")
	w = readWorld(t, f.ns, "web")
	assertStates(t, w, map[string]string{a: "Retired", b: "Active"})
	assertJWKS(t, w, a, b)
	if want := 30 * time.Minute; res.RequeueAfter != want {
		t.Fatalf("RequeueAfter after activation = %s, want %s (retain)", res.RequeueAfter, want)
	}

	// Removal after retain.
	f.clock.Step(30 * time.Minute)
	f.reconcile("web")
	w = readWorld(t, f.ns, "web")
	assertStates(t, w, map[string]string{b: "Active"})
	assertJWKS(t, w, b)
	sk = f.get("web")
	if sk.Status.ActiveKeyID != b || len(sk.Status.Keys) != 1 || sk.Status.NextRotationTime == nil {
		t.Fatalf("final status: %+v", sk.Status)
	}
	if sk.Status.NextRotationTime.Sub(sk.Status.Keys[0].ActivatedAt.Time) != time.Hour {
		t.Fatalf("next rotation %s is not one period after activation %s", sk.Status.NextRotationTime, sk.Status.Keys[0].ActivatedAt)
	}
}

// TestManualAndEmergencyRotation drives both request fields.
func TestManualAndEmergencyRotation(t *testing.T) {
	f := newFixture(t, "requests")
	f.createSigningKey("api", rotationSpec(24*time.Hour, 5*time.Minute, time.Hour))
	f.reconcile("api")
	a := readWorld(t, f.ns, "api").state.Keys[0].KID

	sk := f.get("api")
	sk.Spec.RotationRequest = "2026-11-29T10:00:00Z"
	if err := k8sClient.Update(f.ctx, sk); err != nil {
		t.Fatal(err)
	}
	f.reconcile("api")
	w := readWorld(t, f.ns, "api")
	b := otherKID(w.state, a)
	assertStates(t, w, map[string]string{a: "Active", b: "Pending"})
	f.clock.Step(5*time.Minute - time.Second)
	f.reconcile("api")
	assertStates(t, readWorld(t, f.ns, "api"), map[string]string{a: "Active", b: "Pending"})
	f.clock.Step(time.Second)
	f.reconcile("api")
	assertStates(t, readWorld(t, f.ns, "api"), map[string]string{a: "Retired", b: "Active"})
	if got := f.get("api").Status.RotationRequest; got != "2026-11-29T10:00:00Z" {
		t.Fatalf("handled request not recorded: %q", got)
	}
	// The same request value again does nothing.
	f.clock.Step(time.Minute)
	f.reconcile("api")
	if w := readWorld(t, f.ns, "api"); len(w.state.Keys) != 2 {
		t.Fatalf("a handled request rotated again: %+v", w.state.Keys)
	}

	// Emergency: every key leaves the JWKS at once, a fresh key signs now.
	sk = f.get("api")
	sk.Spec.EmergencyRotationRequest = "incident-42"
	if err := k8sClient.Update(f.ctx, sk); err != nil {
		t.Fatal(err)
	}
	f.reconcile("api")
	w = readWorld(t, f.ns, "api")
	if len(w.state.Keys) != 1 || w.state.Keys[0].State != "Active" || w.state.Keys[0].KID == a || w.state.Keys[0].KID == b {
		t.Fatalf("emergency rotation left %+v", w.state.Keys)
	}
	assertJWKS(t, w, w.state.Keys[0].KID)
}

// TestAlgorithms generates and publishes a key for every algorithm and RSA size.
func TestAlgorithms(t *testing.T) {
	f := newFixture(t, "algs")
	cases := []struct {
		name string
		alg  v1alpha1.Algorithm
		bits int32
		kty  string
	}{
		{"es256", "", 0, "EC"}, {"es384", v1alpha1.ES384, 0, "EC"}, {"eddsa", v1alpha1.EdDSA, 0, "OKP"},
		{"rs256", v1alpha1.RS256, 0, "RSA"}, {"ps256-3072", v1alpha1.PS256, 3072, "RSA"}, {"rs256-4096", v1alpha1.RS256, 4096, "RSA"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			spec := rotationSpec(time.Hour, time.Minute, time.Hour)
			spec.Algorithm, spec.RSABits = tc.alg, tc.bits
			f.createSigningKey(tc.name, spec)
			f.reconcile(tc.name)
			w := readWorld(t, f.ns, tc.name)
			if len(w.public) != 1 {
				t.Fatalf("want one published key, got %d", len(w.public))
			}
			if kty := w.public[0].KeyType().String(); kty != tc.kty {
				t.Fatalf("kty %s, want %s", kty, tc.kty)
			}
			key, _ := w.activeKey(t)
			tok := signToken(t, key, map[string]any{"sub": "alice"})
			if err := verifyWithJWKS(tok, w.jwksRaw); err != nil {
				t.Fatalf("token signed by the active key does not verify against the JWKS: %v", err)
			}
			if strings.Contains(string(w.jwksRaw), `"d"`) {
				t.Fatal("public JWKS carries private material")
			}
		})
	}
}

// TestGeneratedObjects checks owner references, labels and that the Secret is never
// clobbered when it cannot be read.
func TestGeneratedObjects(t *testing.T) {
	f := newFixture(t, "owned")
	sk := f.createSigningKey("svc", rotationSpec(time.Hour, time.Minute, time.Hour))
	f.reconcile("svc")
	secret := getSecret(t, f.ns, secretName("svc"))
	cm := getConfigMap(t, f.ns, jwksConfigMapName("svc"))
	for _, o := range []metav1.Object{secret, cm} {
		if !metav1.IsControlledBy(o, sk) {
			t.Fatalf("%s is not controlled by the SigningKey", o.GetName())
		}
		if o.GetLabels()[v1alpha1.LabelManagedBy] != v1alpha1.ManagedByValue {
			t.Fatalf("%s lacks the managed-by label", o.GetName())
		}
	}
	// A corrupted Secret is refused, not overwritten: the keys may still be recoverable.
	secret.Data[SecretKeysKey] = []byte(`{"keys":[`)
	if err := k8sClient.Update(f.ctx, secret); err != nil {
		t.Fatal(err)
	}
	_, err := f.r.Reconcile(f.ctx, reqFor(f.ns, "svc"))
	if err == nil || reasonOf(err) != ReasonSecretInvalid {
		t.Fatalf("want a SecretInvalid error, got %v", err)
	}
	if got := getSecret(t, f.ns, secretName("svc")); string(got.Data[SecretKeysKey]) != `{"keys":[` {
		t.Fatal("the unreadable Secret was overwritten")
	}
	if c := findCondition(f.get("svc").Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonSecretInvalid {
		t.Fatalf("Ready condition = %+v, want False/SecretInvalid", c)
	}
}

// TestCELValidation submits invalid specs and expects the API server to reject them with
// the CRD's message.
func TestCELValidation(t *testing.T) {
	ns := newNamespace(t, "cel")
	ctx := t.Context()
	dur := func(s string) metav1.Duration { d, _ := time.ParseDuration(s); return metav1.Duration{Duration: d} }
	cases := []struct {
		name string
		obj  interface{ GetName() string }
		want string
	}{
		{"prePublish not shorter than period", &v1alpha1.SigningKey{Spec: v1alpha1.SigningKeySpec{Rotation: v1alpha1.RotationSpec{Period: dur("1h"), PrePublish: dur("1h"), Retain: dur("1h")}}},
			"rotation.prePublish must be shorter than rotation.period"},
		{"period too short", &v1alpha1.SigningKey{Spec: v1alpha1.SigningKeySpec{Rotation: v1alpha1.RotationSpec{Period: dur("30s"), PrePublish: dur("10s"), Retain: dur("1h")}}},
			"rotation.period must be at least 1m"},
		{"retain too short", &v1alpha1.SigningKey{Spec: v1alpha1.SigningKeySpec{Rotation: v1alpha1.RotationSpec{Period: dur("1h"), PrePublish: dur("10s"), Retain: dur("10s")}}},
			"rotation.retain must be at least 1m"},
		{"rsaBits on EC", &v1alpha1.SigningKey{Spec: v1alpha1.SigningKeySpec{Algorithm: v1alpha1.ES256, RSABits: 2048}},
			"rsaBits applies to RS256 and PS256 only"},
		{"unsupported rsaBits", &v1alpha1.SigningKey{Spec: v1alpha1.SigningKeySpec{Algorithm: v1alpha1.RS256, RSABits: 1024}},
			"Unsupported value: 1024"},
		{"HS256", &v1alpha1.SigningKey{Spec: v1alpha1.SigningKeySpec{Algorithm: "HS256"}}, `Unsupported value: "HS256"`},
		{"two revocation targets", &v1alpha1.RevocationEntry{Spec: v1alpha1.RevocationEntrySpec{JTI: "a", Subject: "b", Reason: "x"}},
			"exactly one of jti, subject, sessionID, keyID or clientID must be set"},
		{"no revocation target", &v1alpha1.RevocationEntry{Spec: v1alpha1.RevocationEntrySpec{Reason: "x"}},
			"exactly one of jti, subject, sessionID, keyID or clientID must be set"},
		{"issuedBefore on jti", &v1alpha1.RevocationEntry{Spec: v1alpha1.RevocationEntrySpec{JTI: "a", Reason: "x", IssuedBefore: &metav1.Time{Time: time.Now()}}},
			"issuedBefore applies only to subject and clientID revocations"},
		{"leeway over 5m", &v1alpha1.TokenPolicy{Spec: validPolicySpec(func(s *v1alpha1.TokenPolicySpec) { s.Leeway = dur("6m") })},
			"leeway must be at most 5m"},
		{"required binding without mode", &v1alpha1.TokenPolicy{Spec: validPolicySpec(func(s *v1alpha1.TokenPolicySpec) { s.Binding.Required = true })},
			"binding.required needs binding.mode DPoP or MTLS"},
		{"anonymous route with scopes", &v1alpha1.TokenPolicy{Spec: validPolicySpec(func(s *v1alpha1.TokenPolicySpec) {
			s.Routes = []v1alpha1.RouteRule{{Path: "/health", Anonymous: true, Scopes: []string{"read"}}}
		})}, "an anonymous route cannot require scopes"},
		{"cookie source without name", &v1alpha1.TokenPolicy{Spec: validPolicySpec(func(s *v1alpha1.TokenPolicySpec) {
			s.TokenSources = []v1alpha1.TokenSource{{Type: v1alpha1.TokenSourceCookie}}
		})}, "a Cookie token source needs a name"},
		{"access TTL too long", &v1alpha1.TokenPolicy{Spec: validPolicySpec(func(s *v1alpha1.TokenPolicySpec) { s.AccessToken.TTL = dur("48h") })},
			"accessToken.ttl must be between 30s and 24h"},
		{"name too long", &v1alpha1.SigningKey{ObjectMeta: metav1.ObjectMeta{Name: strings.Repeat("k", 249)}},
			"a SigningKey name must be at most 248 characters"},
		{"no audience", &v1alpha1.TokenPolicy{Spec: validPolicySpec(func(s *v1alpha1.TokenPolicySpec) { s.Audiences = nil })},
			"spec.audiences"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := tc.obj.(interface {
				SetName(string)
				SetNamespace(string)
			})
			if tc.obj.GetName() == "" {
				obj.SetName(fmt.Sprintf("bad-%d", i))
			}
			obj.SetNamespace(ns)
			err := k8sClient.Create(ctx, tc.obj.(client.Object))
			if err == nil || !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}

	// Defaults are applied at admission.
	sk := &v1alpha1.SigningKey{ObjectMeta: metav1.ObjectMeta{Name: "defaults", Namespace: ns}}
	if err := k8sClient.Create(ctx, sk); err != nil {
		t.Fatal(err)
	}
	r := sk.Spec.Rotation
	if sk.Spec.Algorithm != v1alpha1.ES256 || r.Period.Duration != 720*time.Hour || r.PrePublish.Duration != 15*time.Minute || r.Retain.Duration != 24*time.Hour {
		t.Fatalf("defaults not applied: %+v", sk.Spec)
	}

	// A RevocationEntry's spec is immutable.
	re := &v1alpha1.RevocationEntry{ObjectMeta: metav1.ObjectMeta{Name: "imm", Namespace: ns}, Spec: v1alpha1.RevocationEntrySpec{JTI: "t1", Reason: "leaked"}}
	if err := k8sClient.Create(ctx, re); err != nil {
		t.Fatal(err)
	}
	re.Spec.JTI = "t2"
	if err := k8sClient.Update(ctx, re); err == nil || !strings.Contains(err.Error(), "spec is immutable") {
		t.Fatalf("want the immutability message, got %v", err)
	}
}

func validPolicySpec(mut func(*v1alpha1.TokenPolicySpec)) v1alpha1.TokenPolicySpec {
	s := v1alpha1.TokenPolicySpec{Issuer: "https://issuer.example", Audiences: []string{"api"}, SigningKeys: []string{"k"}}
	mut(&s)
	return s
}

// TestSamplesValid applies config/samples to the API server, so the documented YAML stays
// accepted by the CRDs.
func TestSamplesValid(t *testing.T) {
	ns := newNamespace(t, "samples")
	files, err := filepath.Glob("../config/samples/auth_*.yaml")
	if err != nil || len(files) != 3 {
		t.Fatalf("samples: %v %v", files, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &u.Object); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		u.SetNamespace(ns)
		if err := k8sClient.Create(t.Context(), u); err != nil {
			t.Fatalf("%s rejected: %v", f, err)
		}
	}
}
