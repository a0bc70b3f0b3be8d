package sidecar

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/keyward-dev/keyward/internal/bundle"
)

// startAPIServer starts a real kube-apiserver and etcd (envtest). KUBEBUILDER_ASSETS
// defaults to ../../bin/k8s, where `make test` builds them.
func startAPIServer(t *testing.T) kubernetes.Interface {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		if _, err := os.Stat("../../bin/k8s/kube-apiserver"); err != nil {
			t.Fatal("envtest needs kube-apiserver and etcd: run `make envtest-assets` (builds them into bin/k8s) or set KUBEBUILDER_ASSETS")
		}
		t.Setenv("KUBEBUILDER_ASSETS", "../../bin/k8s")
	}
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Logf("stopping envtest: %v", err)
		}
	})
	return kubernetes.NewForConfigOrDie(cfg)
}

func TestConfigMapSourceWatchesTheAPIServer(t *testing.T) {
	client := startAPIServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := newEnv(t, envOpts{})
	const ns, name = "default", "api-bundle"
	cms := client.CoreV1().ConfigMaps(ns)
	src := &ConfigMapSource{Client: client, Namespace: ns, Name: name, Store: e.store, Log: logr.Discard()}
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// Another ConfigMap in the namespace is never read (its generation 9 would make
	// generation 1 a refused lower generation).
	other := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: ns},
		Data: map[string]string{bundle.DataKey: string(bundleDoc(t, 9, testPolicy(), bundle.Revocations{}, e.key))}}
	if _, err := cms.Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Data: map[string]string{bundle.DataKey: string(bundleDoc(t, 1, testPolicy(), bundle.Revocations{}, e.key))}}
	cm, err := cms.Create(ctx, cm, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "generation 1", func() bool { return generation(e.store) == 1 })
	tok := e.key.token(t, claims())
	seen(t, e.do("GET", "http://api.example.com/x", bearer(tok)))

	update := func(data string) {
		t.Helper()
		cm.Data = map[string]string{bundle.DataKey: data}
		if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A revocation arrives by watch.
	c := claims()
	c["jti"] = "revoke-me"
	revokedTok := e.key.token(t, c)
	seen(t, e.do("GET", "http://api.example.com/x", bearer(revokedTok)))
	update(string(bundleDoc(t, 2, testPolicy(), bundle.Revocations{JTI: []bundle.Revoked{{Value: "revoke-me", Expires: testNow.Unix() + 600}}}, e.key)))
	eventually(t, 30*time.Second, "generation 2", func() bool { return generation(e.store) == 2 })
	if rec := e.do("GET", "http://api.example.com/x", bearer(revokedTok)); rec.Code != 401 || e.lastAudit().Reason != "revoked" {
		t.Fatalf("revoked token: %d %s", rec.Code, e.lastAudit().Reason)
	}

	// Corrupt it: refused, generation 2 stays in force.
	update(`{"format":"keyward.dev/bundle/v1","generation":3,"hash":"sha256:00","content":{}}`)
	eventually(t, 30*time.Second, "decode refusal", func() bool {
		return testutil.ToFloat64(e.metrics.BundleRefusals.WithLabelValues(SourceConfigMap, "decode")) == 1
	})
	// A missing key too.
	cm.Data = map[string]string{"other.json": "{}"}
	if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "missing_key refusal", func() bool {
		return testutil.ToFloat64(e.metrics.BundleRefusals.WithLabelValues(SourceConfigMap, "missing_key")) == 1
	})
	if generation(e.store) != 2 {
		t.Fatalf("generation %d after bad updates", generation(e.store))
	}
	seen(t, e.do("GET", "http://api.example.com/x", bearer(tok)))

	// Deleting the ConfigMap keeps the last good bundle too.
	if err := cms.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "deleted refusal", func() bool {
		return testutil.ToFloat64(e.metrics.BundleRefusals.WithLabelValues(SourceConfigMap, "deleted")) == 1
	})
	seen(t, e.do("GET", "http://api.example.com/x", bearer(tok)))

	// Re-created with a newer generation: taken.
	cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Data: map[string]string{bundle.DataKey: string(bundleDoc(t, 4, testPolicy(), bundle.Revocations{}, e.key))}}
	if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "generation 4", func() bool { return generation(e.store) == 4 })
}
