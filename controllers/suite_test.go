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
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/jwks"
)

// The suite runs against a real kube-apiserver and etcd (envtest). `make test` builds
// them into bin/k8s (hack/envtest-assets.sh) and points KUBEBUILDER_ASSETS there.
var (
	testEnv   *envtest.Environment
	cfg       *rest.Config
	k8sClient client.Client
	scheme    = runtime.NewScheme()
	recorder  events.EventRecorder
	nsCounter atomic.Int64
)

func TestMain(m *testing.M) {
	if os.Getenv("KEYWARD_TEST_VERBOSE") != "" {
		logf.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	} else {
		logf.SetLogger(logr.Discard())
	}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		if _, err := os.Stat("../bin/k8s/kube-apiserver"); err != nil {
			fmt.Fprintln(os.Stderr, "envtest needs kube-apiserver and etcd: run `make test` (or hack/envtest-assets.sh) to build them into bin/k8s")
			os.Exit(1)
		}
		os.Setenv("KUBEBUILDER_ASSETS", "../bin/k8s")
	}
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	// Events name their object through client-go's scheme.
	if err := v1alpha1.AddToScheme(clientgoscheme.Scheme); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	var err error
	if cfg, err = testEnv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		os.Exit(1)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	if k8sClient, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	adapter := events.NewEventBroadcasterAdapterWithContext(ctx, kubernetes.NewForConfigOrDie(cfg))
	adapter.StartRecordingToSink(ctx.Done())
	recorder = adapter.NewRecorder("keyward-test")
	code := m.Run()
	cancel()
	adapter.Shutdown()
	if err := testEnv.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping envtest:", err)
	}
	os.Exit(code)
}

// newNamespace creates a namespace of its own for one test.
func newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", prefix, nsCounter.Add(1))}}
	if err := k8sClient.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

// fixture is a SigningKey reconciled by direct calls with a fake clock.
type fixture struct {
	t     *testing.T
	ctx   context.Context
	clock *clocktesting.FakeClock
	ns    string
	r     *SigningKeyReconciler
}

func newFixture(t *testing.T, prefix string) *fixture {
	fc := clocktesting.NewFakeClock(time.Now().Truncate(time.Second))
	return &fixture{
		t: t, ctx: context.Background(), clock: fc, ns: newNamespace(t, prefix),
		r: &SigningKeyReconciler{Client: k8sClient, APIReader: k8sClient, Clock: fc, Recorder: recorder},
	}
}

func (f *fixture) createSigningKey(name string, spec v1alpha1.SigningKeySpec) *v1alpha1.SigningKey {
	f.t.Helper()
	sk := &v1alpha1.SigningKey{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns}, Spec: spec}
	if err := k8sClient.Create(f.ctx, sk); err != nil {
		f.t.Fatalf("creating SigningKey: %v", err)
	}
	return sk
}

func (f *fixture) reconcile(name string) ctrl.Result {
	f.t.Helper()
	res, err := f.r.Reconcile(f.ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: f.ns, Name: name}})
	if err != nil {
		f.t.Fatalf("reconcile at %s: %v", f.clock.Now().Format(time.RFC3339), err)
	}
	if res.RequeueAfter < 0 {
		f.t.Fatalf("negative RequeueAfter %s", res.RequeueAfter)
	}
	return res
}

func (f *fixture) get(name string) *v1alpha1.SigningKey {
	f.t.Helper()
	sk := &v1alpha1.SigningKey{}
	if err := k8sClient.Get(f.ctx, types.NamespacedName{Namespace: f.ns, Name: name}, sk); err != nil {
		f.t.Fatalf("getting SigningKey: %v", err)
	}
	return sk
}

// world is what a SigningKey published, read back from the API server.
type world struct {
	state   KeyState
	private []jwk.Key
	public  []jwk.Key
	jwksRaw []byte
}

func readWorld(t *testing.T, ns, name string) world {
	t.Helper()
	ctx := context.Background()
	var w world
	secret := &corev1.Secret{}
	if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: secretName(name)}, secret); err == nil {
		if err := json.Unmarshal(secret.Data[SecretStateKey], &w.state); err != nil {
			t.Fatalf("state.json: %v", err)
		}
		if w.private, err = jwks.ParseSet(secret.Data[SecretKeysKey], true); err != nil {
			t.Fatalf("private set: %v", err)
		}
	}
	cm := &corev1.ConfigMap{}
	if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: jwksConfigMapName(name)}, cm); err == nil {
		w.jwksRaw = []byte(cm.Data[JWKSKey])
		var err error
		if w.public, err = jwks.ParseSet(w.jwksRaw, false); err != nil {
			t.Fatalf("public set: %v", err)
		}
	}
	return w
}

func kids(keys []jwk.Key) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		kid, _ := k.KeyID()
		out = append(out, kid)
	}
	sort.Strings(out)
	return out
}

// activeKey returns the active private key of the world.
func (w world) activeKey(t *testing.T) (jwk.Key, string) {
	t.Helper()
	for _, k := range w.state.Keys {
		if k.State == "Active" {
			for _, p := range w.private {
				if kid, _ := p.KeyID(); kid == k.KID {
					return p, k.KID
				}
			}
		}
	}
	t.Fatalf("no active key in %+v", w.state.Keys)
	return nil, ""
}

// signToken signs a JWT-shaped payload with the key, the kid in the header.
func signToken(t *testing.T, key jwk.Key, claims map[string]any) []byte {
	t.Helper()
	algv, _ := key.Algorithm()
	alg, ok := jwa.LookupSignatureAlgorithm(algv.String())
	if !ok {
		t.Fatalf("unknown alg %q", algv)
	}
	payload, _ := json.Marshal(claims)
	tok, err := jws.Sign(payload, jws.WithKey(alg, key))
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	return tok
}

// verifyWithJWKS verifies a compact JWS against a published JWKS document, finding the
// key by kid, the way a verifier does.
func verifyWithJWKS(token, jwksDoc []byte) error {
	set, err := jwk.Parse(jwksDoc)
	if err != nil {
		return err
	}
	_, err = jws.Verify(token, jws.WithKeySet(set, jws.WithRequireKid(true)))
	return err
}

func reqFor(ns, name string) ctrl.Request {
	return ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}
}

func getSecret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, s); err != nil {
		t.Fatalf("getting Secret %s: %v", name, err)
	}
	return s
}

func getConfigMap(t *testing.T, ns, name string) *corev1.ConfigMap {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, cm); err != nil {
		t.Fatalf("getting ConfigMap %s: %v", name, err)
	}
	return cm
}

func findCondition(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

func isReady(conds []metav1.Condition, generation int64) bool {
	c := findCondition(conds, v1alpha1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == generation
}

// otherKID returns the kid of the state that is not except (there must be exactly one).
func otherKID(state KeyState, except string) string {
	for _, k := range state.Keys {
		if k.KID != except {
			return k.KID
		}
	}
	return ""
}

func assertStates(t *testing.T, w world, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, k := range w.state.Keys {
		got[k.KID] = string(k.State)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("key states = %v, want %v", got, want)
	}
	if g, p := kids(w.private), stateKIDs(w.state); fmt.Sprint(g) != fmt.Sprint(p) {
		t.Fatalf("private keys %v do not match the state %v", g, p)
	}
}

func assertJWKS(t *testing.T, w world, want ...string) {
	t.Helper()
	sort.Strings(want)
	if got := kids(w.public); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("JWKS = %v, want %v", got, want)
	}
}

func stateKIDs(s KeyState) []string {
	out := make([]string, 0, len(s.Keys))
	for _, k := range s.Keys {
		out = append(out, k.KID)
	}
	sort.Strings(out)
	return out
}
