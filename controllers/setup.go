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
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/keyward-dev/keyward/api/v1alpha1"
)

// Field indexes. revocationKeyIDField is also a CRD selectable field, so the same
// selector works against the cache and the API server.
const (
	revocationKeyIDField   = "spec.keyID"
	policySigningKeysField = "spec.signingKeys"
)

// SetupIndexes registers the cache indexes the controllers query.
func SetupIndexes(ctx context.Context, mgr ctrl.Manager) error {
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &v1alpha1.RevocationEntry{}, revocationKeyIDField, func(o client.Object) []string {
		if kid := o.(*v1alpha1.RevocationEntry).Spec.KeyID; kid != "" {
			return []string{kid}
		}
		return nil
	}); err != nil {
		return err
	}
	return idx.IndexField(ctx, &v1alpha1.TokenPolicy{}, policySigningKeysField, func(o client.Object) []string {
		return o.(*v1alpha1.TokenPolicy).Spec.SigningKeys
	})
}

// SetupWithManager registers the SigningKey controller.
func (r *SigningKeyReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.SigningKey{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// Only metadata of Secrets is cached: private keys are read live, never kept in memory.
		Owns(&corev1.Secret{}, builder.OnlyMetadata).
		Owns(&corev1.ConfigMap{}).
		Watches(&v1alpha1.RevocationEntry{}, handler.EnqueueRequestsFromMapFunc(r.signingKeysForRevocation),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(opts).
		Complete(r)
}

// signingKeysForRevocation maps a key revocation to the SigningKeys that publish the key.
func (r *SigningKeyReconciler) signingKeysForRevocation(ctx context.Context, o client.Object) []reconcile.Request {
	kid := o.(*v1alpha1.RevocationEntry).Spec.KeyID
	if kid == "" {
		return nil
	}
	var list v1alpha1.SigningKeyList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, sk := range list.Items {
		if slices.ContainsFunc(sk.Status.Keys, func(k v1alpha1.KeyStatus) bool { return k.KeyID == kid }) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&sk)})
		}
	}
	return reqs
}

// SetupWithManager registers the TokenPolicy controller.
func (r *TokenPolicyReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.TokenPolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&corev1.ConfigMap{}).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(r.policiesForJWKS)).
		Watches(&v1alpha1.SigningKey{}, handler.EnqueueRequestsFromMapFunc(r.policiesForSigningKey)).
		Watches(&v1alpha1.RevocationEntry{}, enqueueAfter(revocationCoalesce, r.policiesForRevocation),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(opts).
		Complete(r)
}

// revocationCoalesce is how long a revocation event waits before its policies' bundles are
// re-rendered. The work queue keeps the earliest pending time for a request, so a burst of
// entries renders each bundle once per interval instead of once per entry. It is part of
// the propagation time Keyward states (docs/bundle-format.md).
const revocationCoalesce = 250 * time.Millisecond

// enqueueAfter is EnqueueRequestsFromMapFunc with a delay.
func enqueueAfter(delay time.Duration, fn handler.MapFunc) handler.EventHandler {
	add := func(ctx context.Context, o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		for _, req := range fn(ctx, o) {
			q.AddAfter(req, delay)
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, q)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.ObjectNew, q)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, q)
		},
		GenericFunc: func(ctx context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, q)
		},
	}
}

func (r *TokenPolicyReconciler) policiesForJWKS(ctx context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	if l[v1alpha1.LabelComponent] != "jwks" || l[v1alpha1.LabelSigningKey] == "" {
		return nil
	}
	return r.policiesTrusting(ctx, o.GetNamespace(), l[v1alpha1.LabelSigningKey])
}

func (r *TokenPolicyReconciler) policiesForSigningKey(ctx context.Context, o client.Object) []reconcile.Request {
	return r.policiesTrusting(ctx, o.GetNamespace(), o.GetName())
}

func (r *TokenPolicyReconciler) policiesTrusting(ctx context.Context, namespace, signingKey string) []reconcile.Request {
	var list v1alpha1.TokenPolicyList
	if err := r.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{policySigningKeysField: signingKey}); err != nil {
		return nil
	}
	return requestsFor(list.Items)
}

func (r *TokenPolicyReconciler) policiesForRevocation(ctx context.Context, o client.Object) []reconcile.Request {
	re := o.(*v1alpha1.RevocationEntry)
	if len(re.Spec.Policies) > 0 {
		reqs := make([]reconcile.Request, 0, len(re.Spec.Policies))
		for _, p := range re.Spec.Policies {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: re.Namespace, Name: p}})
		}
		return reqs
	}
	var list v1alpha1.TokenPolicyList
	if err := r.List(ctx, &list, client.InNamespace(re.Namespace)); err != nil {
		return nil
	}
	return requestsFor(list.Items)
}

func requestsFor(policies []v1alpha1.TokenPolicy) []reconcile.Request {
	reqs := make([]reconcile.Request, 0, len(policies))
	for i := range policies {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&policies[i])})
	}
	return reqs
}

// SetupWithManager registers the RevocationEntry controller. Policy changes alter the
// longest token lifetime in scope, so they requeue the entries of their namespace.
func (r *RevocationEntryReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.RevocationEntry{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.TokenPolicy{}, handler.EnqueueRequestsFromMapFunc(r.entriesForPolicy),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(opts).
		Complete(r)
}

func (r *RevocationEntryReconciler) entriesForPolicy(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1alpha1.RevocationEntryList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		if inScope(&list.Items[i], o.GetName()) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return reqs
}

// SetupAll registers the field indexes and the three controllers on mgr, the way the
// manager binary runs them (Event sources keyward-signingkey, keyward-tokenpolicy,
// keyward-revocation). revocationOpts applies to the RevocationEntry controller, the most
// numerous and the lightest.
func SetupAll(ctx context.Context, mgr ctrl.Manager, clk clock.Clock, opts, revocationOpts controller.Options) error {
	if err := SetupIndexes(ctx, mgr); err != nil {
		return fmt.Errorf("registering indexes: %w", err)
	}
	if err := (&SigningKeyReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: clk,
		Recorder: mgr.GetEventRecorder("keyward-signingkey"),
	}).SetupWithManager(mgr, opts); err != nil {
		return fmt.Errorf("setting up the SigningKey controller: %w", err)
	}
	if err := (&TokenPolicyReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: clk,
		Recorder: mgr.GetEventRecorder("keyward-tokenpolicy"),
	}).SetupWithManager(mgr, opts); err != nil {
		return fmt.Errorf("setting up the TokenPolicy controller: %w", err)
	}
	if err := (&RevocationEntryReconciler{
		Client: mgr.GetClient(), Clock: clk,
		Recorder: mgr.GetEventRecorder("keyward-revocation"),
	}).SetupWithManager(mgr, revocationOpts); err != nil {
		return fmt.Errorf("setting up the RevocationEntry controller: %w", err)
	}
	return nil
}

// CacheOptions is the manager's cache: only the Secrets and ConfigMaps Keyward generates
// (labelled app.kubernetes.io/managed-by=keyward) are cached, and nothing with its
// managedFields.
func CacheOptions() cache.Options {
	managed := labels.SelectorFromSet(labels.Set{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue})
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}:    {Label: managed},
			&corev1.ConfigMap{}: {Label: managed},
		},
	}
}
