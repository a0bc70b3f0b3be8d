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

// Package controllers holds the Keyward reconcilers: SigningKey, TokenPolicy and
// RevocationEntry. They read the world, call the pure planners under internal/, and apply
// the result with server-side apply.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/mint"
)

// Field managers, one per controller (server-side apply).
const (
	signingKeyManager  = "keyward-signingkey"
	tokenPolicyManager = "keyward-tokenpolicy"
	revocationManager  = "keyward-revocation"
)

// Names of generated objects. They are deterministic so a crash between two writes is
// completed by the next pass instead of leaving orphans behind.
func secretName(signingKey string) string        { return signingKey + "-keys" }
func jwksConfigMapName(signingKey string) string { return signingKey + "-jwks" }
func bundleConfigMapName(policy string) string   { return policy + "-bundle" }

// Data keys of generated objects.
const (
	// SecretKeysKey holds the private JWK set in the SigningKey Secret (internal/mint reads it).
	SecretKeysKey = mint.SecretKeysKey
	// SecretStateKey holds the key lifecycle records in the SigningKey Secret.
	SecretStateKey = mint.SecretStateKey
	// JWKSKey holds the public JWK set in the JWKS ConfigMap.
	JWKSKey = "jwks.json"
)

// reasonError is an error with the condition reason it maps to.
type reasonError struct {
	reason string
	err    error
}

func (e *reasonError) Error() string { return e.err.Error() }
func (e *reasonError) Unwrap() error { return e.err }

// withReason wraps err so that the Ready condition shows reason.
func withReason(reason string, err error) error {
	if err == nil {
		return nil
	}
	return &reasonError{reason: reason, err: err}
}

// errorf is fmt.Errorf with a condition reason.
func errorf(reason, format string, args ...any) error {
	return withReason(reason, fmt.Errorf(format, args...))
}

// reasonOf returns the condition reason of err.
func reasonOf(err error) string {
	var re *reasonError
	if errors.As(err, &re) {
		return re.reason
	}
	return v1alpha1.ReasonReconcileFailed
}

// setCondition sets a condition stamped with the object's generation and the injected time.
func setCondition(conds *[]metav1.Condition, generation int64, now time.Time, typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(conds, metav1.Condition{
		Type:               typ,
		Status:             status,
		ObservedGeneration: generation,
		LastTransitionTime: metav1.NewTime(now).Rfc3339Copy(),
		Reason:             reason,
		Message:            message,
	})
}

// writeStatus patches obj's status from orig when it changed: one write per pass. A
// vanished object is not an error; a failed patch is joined to the pass's error.
func writeStatus(ctx context.Context, c client.Client, orig, obj client.Object, origStatus, status any, err error) error {
	if equality.Semantic.DeepEqual(origStatus, status) {
		return err
	}
	if perr := c.Status().Patch(ctx, obj, client.MergeFrom(orig)); perr != nil && !apierrors.IsNotFound(perr) {
		return errors.Join(err, fmt.Errorf("patching status: %w", perr))
	}
	return err
}

// ownerRef is the controller owner reference of a generated object.
func ownerRef(obj metav1.Object, kind string) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(v1alpha1.GroupVersion.String()).
		WithKind(kind).
		WithName(obj.GetName()).
		WithUID(obj.GetUID()).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

// requeueAfter turns the next due time into a RequeueAfter: never negative, at least a
// second when something is already due (clock skew), zero when nothing is ever due.
func requeueAfter(now, due time.Time) time.Duration {
	if due.IsZero() {
		return 0
	}
	return max(due.Sub(now), time.Second)
}

// managedLabels are the labels of every generated object; the manager caches only
// Secrets and ConfigMaps that carry LabelManagedBy.
func managedLabels(component, ownerLabel, owner string) map[string]string {
	return map[string]string{
		v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
		v1alpha1.LabelComponent: component,
		ownerLabel:              owner,
	}
}
