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
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/keyward-dev/keyward/api/v1alpha1"
)

// ReasonScheduled is the Ready reason of a RevocationEntry in force until its expiry.
const ReasonScheduled = "InForce"

// RevocationEntryReconciler computes when a revocation can be forgotten and deletes it
// then. The bundles pick entries up through the TokenPolicy controller's watch; a keyID
// entry also makes the owning SigningKey withdraw that key (SigningKey controller).
type RevocationEntryReconciler struct {
	client.Client
	Clock    clock.PassiveClock
	Recorder events.EventRecorder

	mu     sync.Mutex
	active map[types.NamespacedName]bool
}

// +kubebuilder:rbac:groups=auth.keyward.dev,resources=revocationentries,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=auth.keyward.dev,resources=revocationentries/status,verbs=get;update;patch

// Reconcile records the entry's expiry and deletes it once every token it could match has expired.
func (r *RevocationEntryReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	re := &v1alpha1.RevocationEntry{}
	if err := r.Get(ctx, req.NamespacedName, re); err != nil {
		if apierrors.IsNotFound(err) {
			r.track(req.NamespacedName, false)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !re.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	now := r.Clock.Now()
	policies, err := r.policiesInScope(ctx, re)
	if err != nil {
		return ctrl.Result{}, err
	}
	expires := revocationExpiry(re, policies)
	if !now.Before(expires) {
		return ctrl.Result{}, r.expire(ctx, re, expires)
	}
	orig := re.DeepCopy()
	defer func() { retErr = r.patchStatus(ctx, orig, re, now, retErr) }()
	r.track(req.NamespacedName, true)
	st := &re.Status
	st.ObservedGeneration = re.Generation
	st.Target = target(re)
	st.ExpiresAt = ptrTime(expires)
	st.Policies = st.Policies[:0]
	for _, p := range policies {
		st.Policies = append(st.Policies, p.Name)
	}
	slices.Sort(st.Policies)
	if orig.Status.ExpiresAt == nil {
		// A log line, not an Event: revocations come in thousands, and each Event is an API write.
		logf.FromContext(ctx).Info("Recorded revocation", "revocationEntry", klog.KObj(re), "target", st.Target, "expiresAt", expires)
	}
	setCondition(&st.Conditions, re.Generation, now, v1alpha1.ConditionReady, metav1.ConditionTrue, ReasonScheduled,
		fmt.Sprintf("Revoked in the bundles of %d TokenPolicy(ies) until %s", len(policies), expires.UTC().Format(time.RFC3339)))
	return ctrl.Result{RequeueAfter: requeueAfter(now, expires)}, nil
}

func (r *RevocationEntryReconciler) policiesInScope(ctx context.Context, re *v1alpha1.RevocationEntry) ([]v1alpha1.TokenPolicy, error) {
	var list v1alpha1.TokenPolicyList
	if err := r.List(ctx, &list, client.InNamespace(re.Namespace)); err != nil {
		return nil, fmt.Errorf("listing TokenPolicies: %w", err)
	}
	return slices.DeleteFunc(list.Items, func(tp v1alpha1.TokenPolicy) bool { return !inScope(re, tp.Name) }), nil
}

// expire deletes an entry whose every possible token has expired. The UID precondition
// guards against deleting a newer entry of the same name.
func (r *RevocationEntryReconciler) expire(ctx context.Context, re *v1alpha1.RevocationEntry, expires time.Time) error {
	err := r.Delete(ctx, re, client.Preconditions{UID: &re.UID})
	if client.IgnoreNotFound(err) != nil {
		reconcileErrors.WithLabelValues("revocationentry", "DeleteFailed").Inc()
		return fmt.Errorf("deleting expired RevocationEntry: %w", err)
	}
	r.track(client.ObjectKeyFromObject(re), false)
	revocationsExpired.WithLabelValues(re.Namespace).Inc()
	logf.FromContext(ctx).Info("Deleted expired revocation", "revocationEntry", klog.KObj(re), "target", target(re), "expiredAt", expires)
	return nil
}

// track keeps the revocations-active gauge per namespace.
func (r *RevocationEntryReconciler) track(nn types.NamespacedName, active bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.active == nil {
		r.active = map[types.NamespacedName]bool{}
	}
	if r.active[nn] == active {
		return
	}
	if active {
		r.active[nn] = true
	} else {
		delete(r.active, nn)
	}
	n := 0
	for k := range r.active {
		if k.Namespace == nn.Namespace {
			n++
		}
	}
	revocationsActive.WithLabelValues(nn.Namespace).Set(float64(n))
}

func (r *RevocationEntryReconciler) patchStatus(ctx context.Context, orig, re *v1alpha1.RevocationEntry, now time.Time, err error) error {
	if err != nil {
		reconcileErrors.WithLabelValues("revocationentry", reasonOf(err)).Inc()
		setCondition(&re.Status.Conditions, re.Generation, now, v1alpha1.ConditionReady, metav1.ConditionFalse, reasonOf(err), err.Error())
	}
	return writeStatus(ctx, r.Client, orig, re, orig.Status, re.Status, err)
}

// target is a one-line summary of what the entry revokes.
func target(re *v1alpha1.RevocationEntry) string {
	s := &re.Spec
	switch {
	case s.JTI != "":
		return "jti=" + s.JTI
	case s.Subject != "":
		return "sub=" + s.Subject
	case s.SessionID != "":
		return "sid=" + s.SessionID
	case s.KeyID != "":
		return "kid=" + s.KeyID
	default:
		return "client_id=" + s.ClientID
	}
}

// revocationBase is the time from which the matched tokens' lifetime is counted: the
// issued-before bound for subject and client revocations, the entry's creation otherwise
// (a jti, session or key cannot gain new tokens after it is revoked).
func revocationBase(re *v1alpha1.RevocationEntry) time.Time {
	if re.Spec.IssuedBefore != nil {
		return re.Spec.IssuedBefore.Time
	}
	return re.CreationTimestamp.Time
}

// tokenLifetime is the longest a token matched by the entry can live under one policy,
// leeway included. Subjects, sessions and clients also hold refresh tokens, which mint
// new access tokens for the whole refresh lifetime.
func tokenLifetime(re *v1alpha1.RevocationEntry, s *v1alpha1.TokenPolicySpec) time.Duration {
	d := accessTTL(s)
	if re.Spec.JTI == "" && re.Spec.KeyID == "" {
		d = max(d, durationOr(s.RefreshToken.TTL, 720*time.Hour))
	}
	return d + durationOr(s.Leeway, 30*time.Second)
}

// revocationExpiry is when every token the entry could match has expired, over every
// policy in scope; with no policy in scope, the API defaults count.
func revocationExpiry(re *v1alpha1.RevocationEntry, policies []v1alpha1.TokenPolicy) time.Time {
	if len(policies) == 0 {
		return revocationBase(re).Add(tokenLifetime(re, &v1alpha1.TokenPolicySpec{}))
	}
	var longest time.Duration
	for i := range policies {
		longest = max(longest, tokenLifetime(re, &policies[i].Spec))
	}
	return revocationBase(re).Add(longest)
}
