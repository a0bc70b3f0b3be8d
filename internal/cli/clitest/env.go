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

// Package clitest runs what the kubectl-keyward tests need: a real kube-apiserver and
// etcd (envtest) with the Keyward CRDs, and the three Keyward controllers in a manager
// started in the test process exactly as main.go wires them (real clock, same cache
// filters). The manager can be stopped and started again to play "operator down".
package clitest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/controllers"
)

// Env is a running API server with the Keyward CRDs and, while started, the manager.
type Env struct {
	// Config and Client act as a cluster admin.
	Config *rest.Config
	Client client.Client
	Scheme *runtime.Scheme
	// Kubeconfig is the path of an admin kubeconfig file (system:masters), for the CLI.
	Kubeconfig string

	env    *envtest.Environment
	dir    string
	nsSeq  atomic.Int64
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
}

// Start starts envtest. root is the repository root (for config/crd/bases and bin/k8s).
func Start(root string) (*Env, error) {
	if os.Getenv("KEYWARD_TEST_VERBOSE") != "" {
		logf.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	} else {
		logf.SetLogger(logr.Discard())
	}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		assets := filepath.Join(root, "bin", "k8s")
		if _, err := os.Stat(filepath.Join(assets, "kube-apiserver")); err != nil {
			return nil, errors.New("envtest needs kube-apiserver and etcd: run `make test` (or `make envtest-assets`) to build them into bin/k8s")
		}
		if err := os.Setenv("KUBEBUILDER_ASSETS", assets); err != nil {
			return nil, err
		}
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	e := &Env{Scheme: scheme, env: &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}}
	var err error
	if e.Config, err = e.env.Start(); err != nil {
		return nil, fmt.Errorf("starting envtest: %w", err)
	}
	e.Config.QPS, e.Config.Burst = 200, 400
	if e.Client, err = client.New(e.Config, client.Options{Scheme: scheme}); err != nil {
		e.Stop()
		return nil, err
	}
	if e.dir, err = os.MkdirTemp("", "keyward-cli-"); err != nil {
		e.Stop()
		return nil, err
	}
	if e.Kubeconfig, err = e.KubeconfigFor("keyward-admin", "system:masters"); err != nil {
		e.Stop()
		return nil, err
	}
	return e, nil
}

// KubeconfigFor writes a kubeconfig file for a user authenticated by a client
// certificate (the user has only the permissions RBAC grants it) and returns its path.
func (e *Env) KubeconfigFor(user string, groups ...string) (string, error) {
	u, err := e.env.AddUser(envtest.User{Name: user, Groups: groups}, nil)
	if err != nil {
		return "", err
	}
	kc, err := u.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(e.dir, "kubeconfig-"+user)
	return path, os.WriteFile(path, kc, 0o600)
}

// Stop stops the manager and the API server.
func (e *Env) Stop() {
	_ = e.StopManager() // shutting down anyway
	if e.env != nil {
		_ = e.env.Stop()
	}
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
}

// StartManager starts the three controllers with the real clock, as main.go does. It is
// a no-op when the manager runs.
func (e *Env) StartManager() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cancel != nil {
		return nil
	}
	mgr, err := ctrl.NewManager(e.Config, ctrl.Options{
		Scheme:                 e.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  controllers.CacheOptions(),
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	// A restarted manager registers the same controller names again in this process.
	skip := true
	opts := controller.Options{MaxConcurrentReconciles: 4, SkipNameValidation: &skip}
	if err := controllers.SetupAll(ctx, mgr, clock.RealClock{}, opts, opts); err != nil {
		cancel()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	e.cancel, e.done = cancel, done
	return nil
}

// StopManager stops the manager ("operator down") and waits until it has stopped. It
// returns the error the manager ended with, if any.
func (e *Env) StopManager() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cancel == nil {
		return nil
	}
	e.cancel()
	err := <-e.done
	e.cancel, e.done = nil, nil
	return err
}

// Namespace creates a fresh namespace.
func (e *Env) Namespace(t testing.TB, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", prefix, e.nsSeq.Add(1))}}
	if err := e.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

// SigningKey creates a SigningKey (default spec when spec is nil).
func (e *Env) SigningKey(t testing.TB, ns, name string, spec *v1alpha1.SigningKeySpec) {
	t.Helper()
	sk := &v1alpha1.SigningKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if spec != nil {
		sk.Spec = *spec
	}
	if err := e.Client.Create(context.Background(), sk); err != nil {
		t.Fatalf("creating SigningKey %s: %v", name, err)
	}
}

// TokenPolicy creates a TokenPolicy with an issuer, one audience and trusted SigningKeys.
func (e *Env) TokenPolicy(t testing.TB, ns, name, issuer, audience string, signingKeys ...string) {
	t.Helper()
	tp := &v1alpha1.TokenPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.TokenPolicySpec{Issuer: issuer, Audiences: []string{audience}, SigningKeys: signingKeys},
	}
	if err := e.Client.Create(context.Background(), tp); err != nil {
		t.Fatalf("creating TokenPolicy %s: %v", name, err)
	}
}

// WaitPolicyReady waits until the policy's bundle is rendered with its signing key.
func (e *Env) WaitPolicyReady(t testing.TB, ns, name string) *v1alpha1.TokenPolicy {
	t.Helper()
	tp := &v1alpha1.TokenPolicy{}
	Eventually(t, "TokenPolicy "+name+" ready", 60*time.Second, func() error {
		if err := e.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, tp); err != nil {
			return err
		}
		if tp.Status.BundleGeneration == 0 || tp.Status.SigningKeyID == "" {
			return fmt.Errorf("status %+v", tp.Status)
		}
		return nil
	})
	return tp
}

// Grant gives user the rules in ns (a Role and a RoleBinding named after the user).
func (e *Env) Grant(t testing.TB, ns, user string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user}, Rules: rules}
	if err := e.Client.Create(ctx, role); err != nil {
		t.Fatalf("creating Role: %v", err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	if err := e.Client.Create(ctx, rb); err != nil {
		t.Fatalf("creating RoleBinding: %v", err)
	}
}

// Eventually retries cond every 100ms until it succeeds or timeout passes.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("%s: %v", what, err)
		case <-tick.C:
		}
	}
}
