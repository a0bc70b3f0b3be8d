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

package issuer

import (
	"context"
	"slices"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/keyward-dev/keyward/api/v1alpha1"
)

// CacheOptions limit the token service's cache to what it reads: TokenPolicies, the
// SigningKey Secrets (component keys) and Keyward's ConfigMaps (JWKS and bundles), all
// without managedFields. namespaces (empty: all) restricts every watch.
func CacheOptions(namespaces []string) cache.Options {
	keys, _ := labels.NewRequirement(v1alpha1.LabelComponent, selection.Equals, []string{"keys"})
	managed, _ := labels.NewRequirement(v1alpha1.LabelManagedBy, selection.Equals, []string{v1alpha1.ManagedByValue})
	published, _ := labels.NewRequirement(v1alpha1.LabelComponent, selection.In, []string{"jwks", "bundle"})
	opts := cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}:    {Label: labels.NewSelector().Add(*managed, *keys)},
			&corev1.ConfigMap{}: {Label: labels.NewSelector().Add(*managed, *published)},
		},
	}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}

// PolicyReconciler keeps the Server's registry in step with the TokenPolicies that have
// spec.issuance, their first SigningKey's Secret, their SigningKeys' JWKS ConfigMaps and
// their bundle ConfigMap. It only reads; every replica runs it.
type PolicyReconciler struct {
	Client client.Client
	Server *Server
	Clock  clock.PassiveClock

	mu       sync.Mutex
	reported map[string]string // the last problem an Event reported, by policy
}

// report emits a Warning Event on tp unless the same problem was reported last.
func (r *PolicyReconciler) report(tp *v1alpha1.TokenPolicy, reason, note string) {
	key := tp.Namespace + "/" + tp.Name
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reported == nil {
		r.reported = map[string]string{}
	}
	if r.reported[key] == reason+note {
		return
	}
	r.reported[key] = reason + note
	if reason != "" {
		r.Server.eventObj(tp, corev1.EventTypeWarning, reason, "Serve", "%s", note)
	}
}

// SetupWithManager registers the reconciler.
func (r *PolicyReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	opts.NeedLeaderElection = ptr(false)
	return ctrl.NewControllerManagedBy(mgr).
		Named("issuer").
		For(&v1alpha1.TokenPolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.policiesForObject)).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(r.policiesForObject)).
		WithOptions(opts).
		Complete(r)
}

func ptr[T any](v T) *T { return &v }

// policiesForObject maps a keys Secret or JWKS ConfigMap to the policies that trust its
// SigningKey, and a bundle ConfigMap to its policy.
func (r *PolicyReconciler) policiesForObject(ctx context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	if l[v1alpha1.LabelComponent] == "bundle" {
		if name := l[v1alpha1.LabelTokenPolicy]; name != "" {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
		}
		return nil
	}
	sk := l[v1alpha1.LabelSigningKey]
	if sk == "" {
		return nil
	}
	var list v1alpha1.TokenPolicyList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		tp := &list.Items[i]
		if tp.Spec.Issuance != nil && slices.Contains(tp.Spec.SigningKeys, sk) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(tp)})
		}
	}
	return reqs
}

// Reconcile compiles one policy and puts it in the registry, or takes it out.
func (r *PolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	key := req.String()
	reg := r.Server.registry
	tp := &v1alpha1.TokenPolicy{}
	if err := r.Client.Get(ctx, req.NamespacedName, tp); err != nil {
		if apierrors.IsNotFound(err) {
			r.stopServing(ctx, key)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if tp.Spec.Issuance == nil || !tp.DeletionTimestamp.IsZero() {
		r.stopServing(ctx, key)
		return ctrl.Result{}, nil
	}
	in, err := r.inputs(ctx, tp)
	if err != nil {
		return ctrl.Result{}, err
	}
	prev := reg.get(key)
	st, warnings, err := compilePolicy(in, prev, r.Clock)
	if err != nil {
		reg.remove(key)
		r.report(tp, "IssuerInvalid", "The token service does not serve this policy: "+err.Error())
		log.Error(err, "Not serving a TokenPolicy", "tokenPolicy", klog.KObj(tp))
		return ctrl.Result{}, nil
	}
	for _, w := range warnings {
		log.Info("TokenPolicy has a problem: "+w, "tokenPolicy", klog.KObj(tp))
	}
	if winner := reg.set(st); winner != key {
		r.report(tp, "IssuerPathConflict", "TokenPolicy "+winner+" already serves the issuer path "+strconv.Quote(st.prefix+"/")+"; this one is not served")
	} else {
		r.report(tp, "", "")
	}
	if prev == nil || prev.notReady != st.notReady || signerKID(prev) != signerKID(st) {
		if st.notReady != "" {
			log.Info("Serving a TokenPolicy without signing: "+st.notReady, "tokenPolicy", klog.KObj(tp), "issuer", st.issuer)
		} else {
			log.Info("Serving a TokenPolicy", "tokenPolicy", klog.KObj(tp), "issuer", st.issuer, "kid", signerKID(st))
		}
	}
	return ctrl.Result{}, nil
}

func signerKID(p *policyState) string {
	if p == nil || p.signer == nil {
		return ""
	}
	return p.signer.KID()
}

func (r *PolicyReconciler) stopServing(ctx context.Context, key string) {
	if r.Server.registry.get(key) != nil {
		r.Server.registry.remove(key)
		ctrl.LoggerFrom(ctx).Info("Stopped serving a TokenPolicy", "tokenPolicy", key)
	}
}

// inputs reads a policy's Secret and ConfigMaps from the cache; absent ones stay nil.
func (r *PolicyReconciler) inputs(ctx context.Context, tp *v1alpha1.TokenPolicy) (policyInputs, error) {
	in := policyInputs{Policy: tp, JWKS: map[string]*corev1.ConfigMap{}}
	get := func(name string, obj client.Object) (bool, error) {
		err := r.Client.Get(ctx, types.NamespacedName{Namespace: tp.Namespace, Name: name}, obj)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	}
	secret := &corev1.Secret{}
	if ok, err := get(tp.Spec.SigningKeys[0]+"-keys", secret); err != nil {
		return in, err
	} else if ok {
		in.KeysSecret = secret
	}
	for _, sk := range tp.Spec.SigningKeys {
		cm := &corev1.ConfigMap{}
		if ok, err := get(sk+"-jwks", cm); err != nil {
			return in, err
		} else if ok {
			in.JWKS[sk] = cm
		}
	}
	cm := &corev1.ConfigMap{}
	if ok, err := get(tp.Name+"-bundle", cm); err != nil {
		return in, err
	} else if ok {
		in.Bundle = cm
	}
	return in, nil
}
