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

package webhook

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/inject"
)

// The webhook is served by controller-runtime's webhook server and called by a real
// kube-apiserver (envtest) through a MutatingWebhookConfiguration like the chart's.
var (
	cfg       *rest.Config
	k8sClient client.Client
	clientset *kubernetes.Clientset
	nsCounter atomic.Int64
)

const operatorNamespace = "keyward-system"

func TestMain(m *testing.M) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		if _, err := os.Stat("../../bin/k8s/kube-apiserver"); err != nil {
			fmt.Fprintln(os.Stderr, "envtest needs kube-apiserver and etcd: run `make test` to build them into bin/k8s")
			os.Exit(1)
		}
		os.Setenv("KUBEBUILDER_ASSETS", "../../bin/k8s")
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	fail := admissionregistrationv1.Fail
	sideEffects := admissionregistrationv1.SideEffectClassNoneOnDryRun
	path := Path
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			MutatingWebhooks: []*admissionregistrationv1.MutatingWebhookConfiguration{{
				ObjectMeta: metav1.ObjectMeta{Name: "keyward-injector"},
				Webhooks: []admissionregistrationv1.MutatingWebhook{{
					Name:                    "inject.auth.keyward.dev",
					AdmissionReviewVersions: []string{"v1"},
					SideEffects:             &sideEffects,
					FailurePolicy:           &fail,
					ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Name: "keyward-webhook", Namespace: operatorNamespace, Path: &path}},
					Rules: []admissionregistrationv1.RuleWithOperations{{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
					}},
					NamespaceSelector: &metav1.LabelSelector{
						MatchLabels: map[string]string{"auth.keyward.dev/injection": "enabled"},
						MatchExpressions: []metav1.LabelSelectorRequirement{{
							Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{operatorNamespace, "kube-system"},
						}},
					},
				}},
			}},
		},
	}
	var err error
	if cfg, err = env.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		os.Exit(1)
	}
	if k8sClient, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		panic(err)
	}
	clientset = kubernetes.NewForConfigOrDie(cfg)
	res, err := inject.DefaultResources("10m", "32Mi", "128Mi")
	if err != nil {
		panic(err)
	}
	wo := env.WebhookInstallOptions
	server := webhook.NewServer(webhook.Options{Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: wo.LocalServingCertDir})
	server.Register(Path, &webhook.Admission{Handler: &PodInjector{
		Client: k8sClient, Decoder: admission.NewDecoder(scheme), Namespace: operatorNamespace,
		Config: inject.Config{Image: "ghcr.io/keyward-dev/keyward:test", PullPolicy: corev1.PullIfNotPresent, Resources: res, Version: "test"},
	}})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		if err := server.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "webhook server:", err)
		}
	}()
	if err := waitServing(server); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	cancel()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping envtest:", err)
	}
	os.Exit(code)
}

func waitServing(s webhook.Server) error {
	check := s.StartedChecker()
	var err error
	for range 200 {
		if err = check(nil); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the webhook server did not start: %w", err)
}

// namespace creates a namespace; enabled ones carry the injection label.
func namespace(t *testing.T, enabled bool) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("inject-%d", nsCounter.Add(1))}}
	if enabled {
		ns.Labels = map[string]string{"auth.keyward.dev/injection": "enabled"}
	}
	if err := k8sClient.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

func tokenPolicy(t *testing.T, ns, name string) *v1alpha1.TokenPolicy {
	t.Helper()
	tp := &v1alpha1.TokenPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       v1alpha1.TokenPolicySpec{Issuer: "https://issuer.test", Audiences: []string{"api"}, SigningKeys: []string{"keys"}},
	}
	if err := k8sClient.Create(context.Background(), tp); err != nil {
		t.Fatal(err)
	}
	return tp
}

func annotatedPod(ns, name string, ann map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: ann},
		Spec: corev1.PodSpec{
			ServiceAccountName: "shop",
			Containers: []corev1.Container{{
				Name: "app", Image: "app:1",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			}},
		},
	}
}

func TestInjectsThroughAdmission(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, true)
	tp := tokenPolicy(t, ns, "api")
	pod := annotatedPod(ns, "app", map[string]string{inject.AnnotationPolicy: "api", inject.AnnotationPort: "http"})
	if err := k8sClient.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	stored := &corev1.Pod{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pod), stored); err != nil {
		t.Fatal(err)
	}
	if len(stored.Spec.InitContainers) != 1 || stored.Spec.InitContainers[0].Name != inject.ContainerName {
		t.Fatalf("the stored pod has no sidecar: %+v", stored.Spec.InitContainers)
	}
	sc := stored.Spec.InitContainers[0]
	if *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways || sc.Ports[0].Name != "http" || stored.Spec.Containers[0].Ports[0].Name != "" {
		t.Fatalf("sidecar wiring: %+v", sc)
	}
	if stored.Annotations[inject.AnnotationInjected] != "test" || stored.Labels[inject.LabelPolicy] != "api" {
		t.Fatalf("marks: %v %v", stored.Annotations, stored.Labels)
	}
	// The Role and the RoleBinding exist, owned by the TokenPolicy.
	role := &rbacv1.Role{}
	if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: ReaderRoleName("api")}, role); err != nil {
		t.Fatal(err)
	}
	if len(role.OwnerReferences) != 1 || role.OwnerReferences[0].UID != tp.UID {
		t.Fatalf("role owner: %+v", role.OwnerReferences)
	}
	rb := &rbacv1.RoleBinding{}
	if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: ReaderBindingName("api", "shop")}, rb); err != nil {
		t.Fatal(err)
	}

	// What the pod's ServiceAccount may do, asked of the real authorizer.
	user := "system:serviceaccount:" + ns + ":shop"
	allowed := []authorizationv1.ResourceAttributes{
		{Namespace: ns, Verb: "get", Resource: "configmaps", Name: "api-bundle"},
		{Namespace: ns, Verb: "list", Resource: "configmaps", Name: "api-bundle"},
		{Namespace: ns, Verb: "watch", Resource: "configmaps", Name: "api-bundle"},
	}
	denied := []authorizationv1.ResourceAttributes{
		{Namespace: ns, Verb: "get", Resource: "configmaps", Name: "other"},
		{Namespace: ns, Verb: "list", Resource: "configmaps"},
		{Namespace: ns, Verb: "watch", Resource: "configmaps"},
		{Namespace: ns, Verb: "update", Resource: "configmaps", Name: "api-bundle"},
		{Namespace: ns, Verb: "get", Resource: "secrets", Name: "keys-keys"},
		{Namespace: "default", Verb: "get", Resource: "configmaps", Name: "api-bundle"},
	}
	for _, ra := range allowed {
		if !can(t, user, ra) {
			t.Errorf("%s may not %s configmap %q", user, ra.Verb, ra.Name)
		}
	}
	for _, ra := range denied {
		if can(t, user, ra) {
			t.Errorf("%s may %s %s %q in %s", user, ra.Verb, ra.Resource, ra.Name, ra.Namespace)
		}
	}

	// Through the API as that ServiceAccount: the informer's list+watch by name works,
	// anything else is forbidden.
	sa := rest.CopyConfig(cfg)
	sa.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}
	saClient := kubernetes.NewForConfigOrDie(sa)
	if err := k8sClient.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "api-bundle", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	byName := metav1.ListOptions{FieldSelector: "metadata.name=api-bundle"}
	if _, err := saClient.CoreV1().ConfigMaps(ns).List(ctx, byName); err != nil {
		t.Fatalf("list by name: %v", err)
	}
	w, err := saClient.CoreV1().ConfigMaps(ns).Watch(ctx, byName)
	if err != nil {
		t.Fatalf("watch by name: %v", err)
	}
	w.Stop()
	if _, err := saClient.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("listing every ConfigMap: err = %v, want Forbidden", err)
	}
}

func can(t *testing.T, user string, ra authorizationv1.ResourceAttributes) bool {
	t.Helper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user, Groups: []string{"system:serviceaccounts", "system:authenticated"}, ResourceAttributes: &ra,
	}}
	got, err := clientset.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), sar, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return got.Status.Allowed
}

func TestAdmissionErrors(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, true)
	tests := []struct {
		name    string
		ann     map[string]string
		wantErr string
	}{
		{"missing policy", map[string]string{inject.AnnotationPolicy: "nope", inject.AnnotationPort: "http"}, `TokenPolicy "nope" not found in namespace "` + ns + `"`},
		{"missing port", map[string]string{inject.AnnotationPolicy: "api"}, "annotation auth.keyward.dev/port is required"},
		{"unknown port", map[string]string{inject.AnnotationPolicy: "api", inject.AnnotationPort: "grpc"}, "names no TCP container port"},
	}
	tokenPolicy(t, ns, "api")
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := k8sClient.Create(ctx, annotatedPod(ns, fmt.Sprintf("bad-%d", i), tt.ann))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), "inject.auth.keyward.dev") {
				t.Fatalf("the error does not name the webhook: %v", err)
			}
		})
	}
}

func TestNotInjected(t *testing.T) {
	ctx := context.Background()
	enabled, disabled := namespace(t, true), namespace(t, false)
	tokenPolicy(t, disabled, "api")
	cases := []*corev1.Pod{
		annotatedPod(enabled, "plain", nil), // not opted in
		annotatedPod(disabled, "elsewhere", map[string]string{inject.AnnotationPolicy: "api", inject.AnnotationPort: "http"}), // namespace not enabled
	}
	for _, pod := range cases {
		if err := k8sClient.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		stored := &corev1.Pod{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pod), stored); err != nil {
			t.Fatal(err)
		}
		if len(stored.Spec.InitContainers) != 0 || stored.Spec.Containers[0].Ports[0].Name != "http" {
			t.Fatalf("pod %s/%s was changed: %+v", pod.Namespace, pod.Name, stored.Spec)
		}
	}
}

func TestDryRunAndFileModeGrantNothing(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, true)
	tokenPolicy(t, ns, "api")
	dry := annotatedPod(ns, "dry", map[string]string{inject.AnnotationPolicy: "api", inject.AnnotationPort: "8080"})
	if err := k8sClient.Create(ctx, dry, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	if len(dry.Spec.InitContainers) != 1 {
		t.Fatal("a dry run does not show the injected sidecar")
	}
	file := annotatedPod(ns, "file", map[string]string{inject.AnnotationPolicy: "api", inject.AnnotationPort: "8080", inject.AnnotationBundleMode: "file"})
	if err := k8sClient.Create(ctx, file); err != nil {
		t.Fatal(err)
	}
	if file.Spec.Volumes[len(file.Spec.Volumes)-1].ConfigMap == nil {
		t.Fatalf("file mode: no bundle volume: %+v", file.Spec.Volumes)
	}
	roles := &rbacv1.RoleList{}
	if err := k8sClient.List(ctx, roles, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(roles.Items) != 0 {
		t.Fatalf("a dry run or a file-mode pod created Roles: %v", roles.Items)
	}
}
