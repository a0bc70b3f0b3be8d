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

// Package manager_test runs the real manager binary against a real kube-apiserver and etcd
// (envtest) and checks what an operator on call relies on: leader election, the health
// and ready probes, Prometheus metrics, status and Events of a reconciled SigningKey.
package manager_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/keyward-dev/keyward/api/v1alpha1"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func get(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestManagerBinary(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		os.Setenv("KUBEBUILDER_ASSETS", "../../bin/k8s")
	}
	env := &envtest.Environment{CRDDirectoryPaths: []string{"../../config/crd/bases"}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest (run `make test` to build its binaries): %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	user, err := env.AddUser(envtest.User{Name: "keyward-manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kcPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}

	bin := filepath.Join(dir, "manager")
	build := exec.Command("go", "build", "-o", bin, "../..")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("building the manager: %v", err)
	}
	metricsAddr, probeAddr := freeAddr(t), freeAddr(t)
	logPath := filepath.Join(dir, "manager.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	mgr := exec.CommandContext(ctx, bin, "--leader-elect=true", "--leader-election-namespace=default", "--enable-webhook=false",
		"--metrics-bind-address="+metricsAddr, "--health-probe-bind-address="+probeAddr)
	mgr.Env = append(os.Environ(), "KUBECONFIG="+kcPath)
	mgr.Stdout, mgr.Stderr = logFile, logFile
	mgr.Cancel = func() error { return mgr.Process.Signal(os.Interrupt) }
	if err := mgr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = mgr.Wait()
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("manager log:\n%s", b)
		}
	})

	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}

	eventually(t, "probes answer", func() error {
		for _, p := range []string{"/healthz", "/readyz"} {
			code, body, err := get("http://" + probeAddr + p)
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("%s: %d %q %w", p, code, body, err)
			}
		}
		return nil
	})
	eventually(t, "leader elected", func() error {
		lease := &coordinationv1.Lease{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: "keyward-manager.auth.keyward.dev"}, lease); err != nil {
			return err
		}
		if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
			return fmt.Errorf("no holder")
		}
		return nil
	})

	sk := &v1alpha1.SigningKey{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}}
	if err := c.Create(ctx, sk); err != nil {
		t.Fatal(err)
	}
	eventually(t, "SigningKey ready", func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(sk), sk); err != nil {
			return err
		}
		if sk.Status.ActiveKeyID == "" || sk.Status.ObservedGeneration != sk.Generation {
			return fmt.Errorf("status %+v", sk.Status)
		}
		return nil
	})
	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: "web-jwks"}, cm); err != nil || !strings.Contains(cm.Data["jwks.json"], sk.Status.ActiveKeyID) {
		t.Fatalf("JWKS ConfigMap: %v %v", err, cm.Data)
	}
	eventually(t, "metrics exported", func() error {
		code, body, err := get("http://" + metricsAddr + "/metrics")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("%d %w", code, err)
		}
		for _, want := range []string{
			`keyward_operator_rotations_total{namespace="default",reason="Initial",signingkey="web"} 1`,
			`keyward_operator_keys{namespace="default",signingkey="web",state="Active"} 1`,
			`keyward_operator_next_rotation_seconds{namespace="default",signingkey="web"}`,
			`keyward_operator_active_key_age_seconds{namespace="default",signingkey="web"}`,
		} {
			if !strings.Contains(body, want) {
				return fmt.Errorf("metrics lack %s", want)
			}
		}
		return nil
	})
	eventually(t, "Event recorded", func() error {
		var evs eventsv1.EventList
		if err := c.List(ctx, &evs, client.InNamespace("default")); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Regarding.Name == "web" && e.Reason == "KeyPublished" {
				return nil
			}
		}
		return fmt.Errorf("no KeyPublished event among %d", len(evs.Items))
	})
	// The manager never logs key material: the private JWK member "d" never appears.
	logged, _ := os.ReadFile(logPath)
	if strings.Contains(string(logged), `"d":`) || strings.Contains(string(logged), "PRIVATE KEY") {
		t.Fatal("the manager log contains key material")
	}
}
