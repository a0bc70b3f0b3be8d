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

package chart_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// TestInstall installs, upgrades and uninstalls the chart in a real kube-apiserver and etcd
// (envtest; no kubelet, so no pod runs): the API server accepts every object, the NOTES
// tell how to opt in, the webhook objects follow webhook.enabled, a second release with
// other names coexists, and the CRDs outlive `helm uninstall`. Value sets whose objects
// need no third-party CRD (cert-manager, prometheus-operator) are also sent to the server
// with `kubectl apply --dry-run=server --validate=strict`.
func TestInstall(t *testing.T) {
	helmBin(t)
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Setenv("KUBEBUILDER_ASSETS", filepath.Join(root, "bin", "k8s"))
	}
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest (run `make test` to build its binaries): %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	admin, err := env.AddUser(envtest.User{Name: "chart-admin", Groups: []string{"system:masters"}}, nil)
	must(t, err, "adding a user")
	kc, err := admin.KubeConfig()
	must(t, err, "kubeconfig")
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	must(t, os.WriteFile(kubeconfig, kc, 0o600), "writing the kubeconfig")

	scheme := runtime.NewScheme()
	must(t, clientgoscheme.AddToScheme(scheme), "scheme")
	must(t, apiextensionsv1.AddToScheme(scheme), "scheme")
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	must(t, err, "client")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	helmKube := func(args ...string) string {
		t.Helper()
		args = append(args, "--kubeconfig", kubeconfig)
		out, stderr, err := helm(t, args...)
		if err != nil {
			t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
		}
		if strings.Contains(stderr, "unknown field") {
			t.Errorf("helm %s: the API server dropped fields:\n%s", strings.Join(args, " "), stderr)
		}
		return out
	}

	// Install with the defaults.
	out := helmKube("install", releaseName, chartDir, "--namespace", releaseNamespace, "--create-namespace")
	for _, want := range []string{
		"kubectl label namespace <app-namespace> auth.keyward.dev/injection=enabled",
		"auth.keyward.dev/policy: <TokenPolicy in the pod's namespace>",
		`auth.keyward.dev/port: "<the app's container port, number or name>"`,
		"The webhook's failurePolicy is Fail",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the install NOTES do not say %q:\n%s", want, out)
		}
	}
	crds := []string{"signingkeys.auth.keyward.dev", "tokenpolicies.auth.keyward.dev", "revocationentries.auth.keyward.dev"}
	for _, name := range crds {
		must(t, k8s.Get(ctx, client.ObjectKey{Name: name}, &apiextensionsv1.CustomResourceDefinition{}), "CRD %s", name)
	}
	ns := func(name string) client.ObjectKey { return client.ObjectKey{Namespace: releaseNamespace, Name: name} }
	must(t, k8s.Get(ctx, ns("keyward-manager"), &appsv1.Deployment{}), "Deployment")
	must(t, k8s.Get(ctx, ns("keyward-manager"), &policyv1.PodDisruptionBudget{}), "PodDisruptionBudget")
	must(t, k8s.Get(ctx, ns("keyward-manager"), &rbacv1.Role{}), "Role")
	must(t, k8s.Get(ctx, client.ObjectKey{Name: "keyward-manager"}, &rbacv1.ClusterRole{}), "ClusterRole")
	must(t, k8s.Get(ctx, ns("keyward-webhook"), &corev1.Service{}), "webhook Service")
	must(t, k8s.Get(ctx, ns("keyward-metrics"), &corev1.Service{}), "metrics Service")
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	must(t, k8s.Get(ctx, client.ObjectKey{Name: "keyward-injector"}, mwc), "MutatingWebhookConfiguration")
	if se := mwc.Webhooks[0].SideEffects; se == nil || *se != admissionregistrationv1.SideEffectClassNoneOnDryRun {
		t.Errorf("sideEffects %v", se)
	}

	// A second release with other names (and the CRDs of the first) coexists.
	helmKube("install", "kw", chartDir, "--namespace", "auth", "--create-namespace", "--set", "crds.install=false")
	must(t, k8s.Get(ctx, client.ObjectKey{Name: "kw-keyward-injector"}, &admissionregistrationv1.MutatingWebhookConfiguration{}), "second release's webhook")

	// Upgrade without the webhook: its objects go away.
	helmKube("upgrade", releaseName, chartDir, "--namespace", releaseNamespace, "--values", filepath.Join("testdata", "values", "webhook-disabled.yaml"))
	if err := k8s.Get(ctx, client.ObjectKey{Name: "keyward-injector"}, &admissionregistrationv1.MutatingWebhookConfiguration{}); !apierrors.IsNotFound(err) {
		t.Errorf("MutatingWebhookConfiguration after disabling the webhook: %v", err)
	}
	dep := &appsv1.Deployment{}
	must(t, k8s.Get(ctx, ns("keyward-manager"), dep), "Deployment")
	if args := strings.Join(dep.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "--enable-webhook=false") {
		t.Errorf("manager args after disabling the webhook: %s", args)
	}

	// Uninstall: everything goes but the CRDs.
	helmKube("uninstall", releaseName, "--namespace", releaseNamespace)
	for _, name := range crds {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		must(t, k8s.Get(ctx, client.ObjectKey{Name: name}, crd), "CRD %s after uninstall (crds.keep)", name)
		if !crd.DeletionTimestamp.IsZero() {
			t.Errorf("CRD %s is being deleted after uninstall", name)
		}
	}
	if err := k8s.Get(ctx, client.ObjectKey{Name: "keyward-manager"}, &rbacv1.ClusterRole{}); !apierrors.IsNotFound(err) {
		t.Errorf("ClusterRole after uninstall: %v", err)
	}

	// Server-side validation of the other value sets.
	kubectl := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	for _, c := range cases {
		manifest := render(t, c.renderArgs)
		if strings.Contains(manifest, "cert-manager.io/v1") || strings.Contains(manifest, "monitoring.coreos.com/v1") {
			continue // no such CRDs in envtest
		}
		t.Run("dry-run "+c.name, func(t *testing.T) {
			if c.namespace != "" {
				err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.namespace}})
				if err != nil && !apierrors.IsAlreadyExists(err) {
					t.Fatal(err)
				}
			}
			cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", kubeconfig, "apply", "--dry-run=server", "--validate=strict", "-f", "-")
			cmd.Stdin = strings.NewReader(manifest)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("kubectl apply --dry-run=server: %v\n%s", err, out)
			}
		})
	}
}
