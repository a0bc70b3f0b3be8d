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

// Package webhook serves the pod-injection admission webhook. The decisions live in
// internal/inject; this package reads the world (the TokenPolicy), grants the pod's
// ServiceAccount read access to exactly its bundle ConfigMap (watch mode), and answers.
package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/inject"
)

// Path is where the manager serves the webhook.
const Path = "/mutate-v1-pod"

// fieldManager owns the Roles and RoleBindings the injector applies.
const fieldManager = "keyward-injector"

// +kubebuilder:rbac:groups=auth.keyward.dev,resources=tokenpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;create;patch;update

// PodInjector is the admission.Handler for pods.
type PodInjector struct {
	// Client reads TokenPolicies (from the cache) and applies Roles and RoleBindings.
	Client client.Client
	// APIReader is read when the cache has not seen a policy yet (created a moment ago).
	APIReader client.Reader
	Decoder   admission.Decoder
	Config    inject.Config
	// Namespace is the operator's own: its pods are never injected.
	Namespace string
}

// Handle implements admission.Handler.
func (p *PodInjector) Handle(ctx context.Context, req admission.Request) admission.Response {
	log := logf.FromContext(ctx)
	pod := &corev1.Pod{}
	if err := p.Decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the pod: %w", err))
	}
	opts, optedIn, err := inject.Parse(pod)
	switch {
	case !optedIn:
		return admission.Allowed("not opted in")
	case err != nil:
		return admission.Denied(err.Error())
	case req.Namespace == p.Namespace:
		return admission.Allowed("not injected in the operator's namespace").
			WithWarnings(fmt.Sprintf("Keyward does not inject pods in its own namespace %q", p.Namespace))
	case inject.Injected(pod):
		return admission.Allowed("already injected")
	}
	policy, err := p.policy(ctx, req.Namespace, opts.Policy)
	if apierrors.IsNotFound(err) {
		return admission.Denied(fmt.Sprintf("TokenPolicy %q not found in namespace %q (annotation %s): create the TokenPolicy first, or remove the annotation",
			opts.Policy, req.Namespace, inject.AnnotationPolicy))
	}
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading TokenPolicy %s/%s: %w", req.Namespace, opts.Policy, err))
	}
	if err := inject.Apply(pod, p.Config, opts); err != nil {
		return admission.Denied(err.Error())
	}
	if opts.Mode == inject.ModeWatch && (req.DryRun == nil || !*req.DryRun) {
		sa := pod.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		if err := p.grantBundleRead(ctx, policy, sa); err != nil {
			return admission.Errored(http.StatusInternalServerError, fmt.Errorf("granting ServiceAccount %q read access to the bundle: %w", sa, err))
		}
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	log.V(1).Info("Injected the verifier sidecar", "namespace", req.Namespace, "pod", podName(pod), "tokenPolicy", klog.KObj(policy), "mode", opts.Mode)
	return admission.PatchResponseFromRaw(req.Object.Raw, raw)
}

func (p *PodInjector) policy(ctx context.Context, ns, name string) (*v1alpha1.TokenPolicy, error) {
	tp := &v1alpha1.TokenPolicy{}
	key := types.NamespacedName{Namespace: ns, Name: name}
	err := p.Client.Get(ctx, key, tp)
	if apierrors.IsNotFound(err) && p.APIReader != nil {
		err = p.APIReader.Get(ctx, key, tp)
	}
	return tp, err
}

// ReaderRoleName is the Role that allows reading policy's bundle ConfigMap.
func ReaderRoleName(policy string) string { return boundedName("keyward-bundle-reader-", policy) }

// ReaderBindingName binds ReaderRoleName(policy) to one ServiceAccount. One binding per
// ServiceAccount keeps every write a server-side apply of a whole, deterministic object.
func ReaderBindingName(policy, serviceAccount string) string {
	return boundedName("keyward-bundle-reader-", policy+"-"+serviceAccount)
}

// grantBundleRead applies the Role (get/list/watch on exactly the bundle ConfigMap) and the
// RoleBinding for sa. Both are owned by the TokenPolicy and go away with it.
func (p *PodInjector) grantBundleRead(ctx context.Context, tp *v1alpha1.TokenPolicy, sa string) error {
	owner := metav1ac.OwnerReference().WithAPIVersion(v1alpha1.GroupVersion.String()).
		WithKind("TokenPolicy").WithName(tp.Name).WithUID(tp.UID)
	labels := map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, inject.LabelPolicy: tp.Name}
	roleName := ReaderRoleName(tp.Name)
	role := rbacv1ac.Role(roleName, tp.Namespace).WithLabels(labels).WithOwnerReferences(owner).
		WithRules(rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("configmaps").
			WithResourceNames(inject.BundleConfigMap(tp.Name)).WithVerbs("get", "list", "watch"))
	if err := p.Client.Apply(ctx, role, client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying Role %s: %w", roleName, err)
	}
	bindingName := ReaderBindingName(tp.Name, sa)
	binding := rbacv1ac.RoleBinding(bindingName, tp.Namespace).WithLabels(labels).WithOwnerReferences(owner).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("Role").WithName(roleName)).
		WithSubjects(rbacv1ac.Subject().WithKind(rbacv1.ServiceAccountKind).WithName(sa).WithNamespace(tp.Namespace))
	if err := p.Client.Apply(ctx, binding, client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying RoleBinding %s: %w", bindingName, err)
	}
	return nil
}

// boundedName keeps generated names within 63 characters (safe for any object kind),
// replacing the tail by a hash when needed so names stay deterministic and distinct.
func boundedName(prefix, s string) string {
	name := prefix + s
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(s))
	return name[:63-11] + "-" + hex.EncodeToString(sum[:])[:10]
}

func podName(pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	return pod.GenerateName + "*"
}
