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

package main

import (
	"context"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/issuer"
)

// TestRunServesPolicies runs the command's wiring (manager, cache, policy watch, token
// service and metrics listeners, the store) against a real API server: a TokenPolicy with
// issuance is served at its issuer path (metadata and JWKS even before it has keys; the
// token endpoints refuse with 503 until it can sign), and readiness and metrics answer.
// internal/issuer's tests cover the token flows with the operator's controllers running.
func TestRunServesPolicies(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		if _, err := os.Stat("../../bin/k8s/kube-apiserver"); err != nil {
			t.Fatal("envtest needs kube-apiserver and etcd: run `make envtest-assets` or set KUBEBUILDER_ASSETS")
		}
		t.Setenv("KUBEBUILDER_ASSETS", "../../bin/k8s")
	}
	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd", "bases")}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	user, err := env.AddUser(envtest.User{Name: "issuer", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kubeconfig"), kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", filepath.Join(dir, "kubeconfig"))
	if err := os.WriteFile(filepath.Join(dir, "replay-key"), []byte(issuer.NewReplayKey()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	tp := &v1alpha1.TokenPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "default"},
		Spec: v1alpha1.TokenPolicySpec{Issuer: "https://auth.example/shop", Audiences: []string{"api"}, SigningKeys: []string{"keys"},
			Issuance: &v1alpha1.IssuanceSpec{Scopes: []string{"read"}}},
	}
	if err := c.Create(context.Background(), tp); err != nil {
		t.Fatal(err)
	}

	o := options{}
	fs := newFlagSet(&o)
	listen, metrics := freeAddr(t), freeAddr(t)
	if err := fs.Parse([]string{"--listen", listen, "--metrics-listen", metrics, "--store", "bolt:" + filepath.Join(dir, "issuer.db"),
		"--replay-key-file", filepath.Join(dir, "replay-key"), "--audit-file", filepath.Join(dir, "audit.jsonl")}); err != nil {
		t.Fatal(err)
	}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, logr.Discard()) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("run did not stop")
		}
	}()

	get := func(url string) (int, string) {
		res, err := http.Get(url)
		if err != nil {
			return 0, ""
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	waitFor(t, "readiness", func() bool { code, _ := get("http://" + metrics + "/readyz"); return code == 200 })
	waitFor(t, "the policy's metadata", func() bool {
		code, body := get("http://" + listen + "/shop/.well-known/openid-configuration")
		return code == 200 && strings.Contains(body, `"token_endpoint":"https://auth.example/shop/token"`)
	})
	if code, body := get("http://" + listen + "/shop/jwks"); code != 200 || body != `{"keys":[]}` {
		t.Fatalf("JWKS before any key: %d %s", code, body)
	}
	res, err := http.Post("http://"+listen+"/shop/token", "application/x-www-form-urlencoded", strings.NewReader("grant_type=refresh_token&refresh_token=x"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("token endpoint without keys: %d, want 503", res.StatusCode)
	}
	if _, body := get("http://" + metrics + "/metrics"); !strings.Contains(body, "keyward_issuer_policies 1") ||
		!strings.Contains(body, `keyward_issuer_requests_rejected_total{endpoint="token",error="temporarily_unavailable",policy="default/shop",reason="not_ready"} 1`) {
		t.Fatalf("metrics:\n%s", body)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "audit.jsonl")); err != nil || !strings.Contains(string(b), `"event":"rejected"`) {
		t.Fatalf("audit file: %s %v", b, err)
	}
}

func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("issuer", flag.ContinueOnError)
	o.bind(fs)
	return fs
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
