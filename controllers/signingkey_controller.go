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
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/jwks"
	"github.com/keyward-dev/keyward/internal/rotation"
)

// Condition reasons of a SigningKey.
const (
	ReasonSecretInvalid   = "SecretInvalid"
	ReasonKeyGeneration   = "KeyGenerationFailed"
	ReasonPublishFailed   = "PublishFailed"
	ReasonSecretConflict  = "SecretConflict"
	ReasonRotationOverdue = "RotationOverdue"
)

// KeyState is the lifecycle document stored next to the private keys in the SigningKey
// Secret (data key state.json). The Secret is the single source of truth: keys and their
// states change in one atomic write, and the public JWKS and the status are derived from it.
type KeyState struct {
	Keys []rotation.Key `json:"keys"`
	// RotationRequest and EmergencyRotationRequest are the spec requests already handled.
	RotationRequest          string `json:"rotationRequest,omitempty"`
	EmergencyRotationRequest string `json:"emergencyRotationRequest,omitempty"`
}

// SigningKeyReconciler reconciles a SigningKey into a Secret (private JWK set and key
// states) and a ConfigMap (public JWKS), rotating keys on the schedule of spec.rotation.
//
// Write order makes every crash point safe: the JWKS ConfigMap is first written with every
// key of the Secret plus every key of the plan, then the Secret, then the JWKS without the
// keys the plan removed. So the JWKS always holds every key the Secret holds, and a key is
// in the JWKS before it can sign.
type SigningKeyReconciler struct {
	client.Client
	// APIReader reads the Secret live: a key is never minted from a stale cache read.
	APIReader client.Reader
	Clock     clock.PassiveClock
	Recorder  events.EventRecorder
}

// +kubebuilder:rbac:groups=auth.keyward.dev,resources=signingkeys,verbs=get;list;watch
// +kubebuilder:rbac:groups=auth.keyward.dev,resources=signingkeys/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete

// Reconcile brings one SigningKey's keys to the state its schedule asks for.
func (r *SigningKeyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	sk := &v1alpha1.SigningKey{}
	if err := r.Get(ctx, req.NamespacedName, sk); err != nil {
		if apierrors.IsNotFound(err) {
			forgetSigningKeyMetrics(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !sk.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // the Secret and ConfigMap are garbage-collected with it
	}
	now := r.Clock.Now()
	orig := sk.DeepCopy()
	defer func() { retErr = r.patchStatus(ctx, orig, sk, now, retErr) }()

	snap, err := r.snapshot(ctx, sk)
	if err != nil {
		return ctrl.Result{}, err
	}
	plan := rotation.Plan(snap.input(now, sk))
	if err := r.mint(sk, snap, &plan); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.publish(ctx, sk, snap, &plan); err != nil {
		return ctrl.Result{}, err
	}
	r.report(ctx, sk, plan)
	r.setStatus(sk, snap.state, plan, now)
	return ctrl.Result{RequeueAfter: requeueAfter(now, plan.NextDue)}, nil
}

// keySnapshot is what the SigningKey controller read of the world.
type keySnapshot struct {
	secret  *corev1.Secret // nil when it does not exist yet
	state   KeyState
	private map[string]jwk.Key
	revoked []string
}

func (s *keySnapshot) input(now time.Time, sk *v1alpha1.SigningKey) rotation.Input {
	fresh := len(s.state.Keys) == 0 // requests present at creation are simply recorded
	return rotation.Input{
		Now:                now,
		Policy:             rotationPolicy(sk),
		Keys:               s.state.Keys,
		RotationRequested:  !fresh && sk.Spec.RotationRequest != "" && sk.Spec.RotationRequest != s.state.RotationRequest,
		EmergencyRequested: !fresh && sk.Spec.EmergencyRotationRequest != "" && sk.Spec.EmergencyRotationRequest != s.state.EmergencyRotationRequest,
		Revoked:            s.revoked,
	}
}

func rotationPolicy(sk *v1alpha1.SigningKey) rotation.Policy {
	return rotation.Policy{
		Period:     sk.Spec.Rotation.Period.Duration,
		PrePublish: sk.Spec.Rotation.PrePublish.Duration,
		Retain:     sk.Spec.Rotation.Retain.Duration,
		Profile:    jwks.Profile(string(algorithmOf(sk)), int(sk.Spec.RSABits)),
	}
}

func algorithmOf(sk *v1alpha1.SigningKey) v1alpha1.Algorithm {
	if sk.Spec.Algorithm == "" {
		return v1alpha1.ES256
	}
	return sk.Spec.Algorithm
}

// snapshot reads the Secret live and the key revocations that concern this SigningKey.
func (r *SigningKeyReconciler) snapshot(ctx context.Context, sk *v1alpha1.SigningKey) (*keySnapshot, error) {
	snap := &keySnapshot{private: map[string]jwk.Key{}}
	secret := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: sk.Namespace, Name: secretName(sk.Name)}, secret)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("reading Secret %s: %w", secretName(sk.Name), err)
	default:
		if !metav1.IsControlledBy(secret, sk) {
			return nil, errorf(ReasonSecretInvalid, "Secret %s exists and is not controlled by this SigningKey", secret.Name)
		}
		snap.secret = secret
		if err := decodeKeySecret(secret, &snap.state, snap.private); err != nil {
			// Fail closed: never overwrite keys we cannot read; a human must look.
			return nil, withReason(ReasonSecretInvalid, fmt.Errorf("secret %s: %w", secret.Name, err))
		}
	}
	for _, k := range snap.state.Keys {
		var list v1alpha1.RevocationEntryList
		if err := r.List(ctx, &list, client.InNamespace(sk.Namespace), client.MatchingFields{revocationKeyIDField: k.KID}); err != nil {
			return nil, fmt.Errorf("listing key revocations: %w", err)
		}
		if len(list.Items) > 0 {
			snap.revoked = append(snap.revoked, k.KID)
		}
	}
	return snap, nil
}

// decodeKeySecret parses the Secret's key states and private keys and checks they agree.
func decodeKeySecret(secret *corev1.Secret, state *KeyState, private map[string]jwk.Key) error {
	if err := jwks.CheckNoDuplicateMembers(secret.Data[SecretStateKey]); err != nil {
		return fmt.Errorf("%s: %w", SecretStateKey, err)
	}
	if err := json.Unmarshal(secret.Data[SecretStateKey], state); err != nil {
		return fmt.Errorf("%s is not valid JSON: %w", SecretStateKey, err)
	}
	keys, err := jwks.ParseSet(secret.Data[SecretKeysKey], true)
	if err != nil {
		return fmt.Errorf("%s: %w", SecretKeysKey, err)
	}
	for _, k := range keys {
		kid, _ := k.KeyID()
		private[kid] = k
	}
	if len(keys) != len(state.Keys) {
		return fmt.Errorf("%s lists %d keys but %s holds %d", SecretStateKey, len(state.Keys), SecretKeysKey, len(keys))
	}
	for _, k := range state.Keys {
		if _, ok := private[k.KID]; !ok {
			return fmt.Errorf("%s lists key %s that %s does not hold", SecretStateKey, k.KID, SecretKeysKey)
		}
	}
	return nil
}

// mint generates the key the plan asks for (KID "") and records its kid in the plan.
func (r *SigningKeyReconciler) mint(sk *v1alpha1.SigningKey, snap *keySnapshot, plan *rotation.Result) error {
	for i := range plan.Keys {
		if plan.Keys[i].KID != "" {
			continue
		}
		key, err := jwks.Generate(string(algorithmOf(sk)), int(sk.Spec.RSABits))
		if err != nil {
			return withReason(ReasonKeyGeneration, fmt.Errorf("generating a %s key: %w", algorithmOf(sk), err))
		}
		kid, _ := key.KeyID()
		plan.Keys[i].KID = kid
		snap.private[kid] = key
		for j := range plan.Actions {
			if plan.Actions[j].KID == "" {
				plan.Actions[j].KID = kid
			}
		}
	}
	return nil
}

// publish writes the plan: JWKS with old and new keys, then the Secret, then the JWKS
// without removed keys. Each write is skipped when the object already holds it.
func (r *SigningKeyReconciler) publish(ctx context.Context, sk *v1alpha1.SigningKey, snap *keySnapshot, plan *rotation.Result) error {
	union := slices.Clone(plan.Keys)
	for _, k := range snap.state.Keys {
		if !slices.ContainsFunc(union, func(u rotation.Key) bool { return u.KID == k.KID }) {
			union = append(union, k)
		}
	}
	if err := r.applyJWKS(ctx, sk, union, snap.private); err != nil {
		return err
	}
	// The new key is in the JWKS from now on: that is its publication time.
	published := r.Clock.Now()
	for i := range plan.Keys {
		k := &plan.Keys[i]
		if _, existed := snap.lookup(k.KID); existed {
			continue
		}
		if k.ActivatedAt.Equal(k.PublishedAt) {
			k.ActivatedAt = published
		}
		k.PublishedAt = published
	}
	rotation.SortKeys(plan.Keys)
	snap.state.Keys = plan.Keys
	snap.state.RotationRequest = sk.Spec.RotationRequest
	snap.state.EmergencyRotationRequest = sk.Spec.EmergencyRotationRequest
	if err := r.applySecret(ctx, sk, snap); err != nil {
		return err
	}
	if len(union) != len(plan.Keys) {
		return r.applyJWKS(ctx, sk, plan.Keys, snap.private)
	}
	return nil
}

func (s *keySnapshot) lookup(kid string) (rotation.Key, bool) {
	if s.secret == nil {
		return rotation.Key{}, false
	}
	i := slices.IndexFunc(s.state.Keys, func(k rotation.Key) bool { return k.KID == kid })
	if i < 0 {
		return rotation.Key{}, false
	}
	return s.state.Keys[i], true
}

func keysOf(keys []rotation.Key, private map[string]jwk.Key) []jwk.Key {
	out := make([]jwk.Key, 0, len(keys))
	for _, k := range keys {
		out = append(out, private[k.KID])
	}
	return out
}

func (r *SigningKeyReconciler) applyJWKS(ctx context.Context, sk *v1alpha1.SigningKey, keys []rotation.Key, private map[string]jwk.Key) error {
	// Sorted by kid, so the document does not change when only the key order does.
	keys = slices.Clone(keys)
	slices.SortFunc(keys, func(a, b rotation.Key) int { return strings.Compare(a.KID, b.KID) })
	doc, err := jwks.PublicSetJSON(keysOf(keys, private))
	if err != nil {
		return withReason(ReasonPublishFailed, fmt.Errorf("rendering JWKS: %w", err))
	}
	name := jwksConfigMapName(sk.Name)
	current := &corev1.ConfigMap{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: sk.Namespace, Name: name}, current); err == nil &&
		current.Data[JWKSKey] == string(doc) && metav1.IsControlledBy(current, sk) {
		return nil
	}
	cm := corev1ac.ConfigMap(name, sk.Namespace).
		WithLabels(managedLabels("jwks", v1alpha1.LabelSigningKey, sk.Name)).
		WithOwnerReferences(ownerRef(sk, "SigningKey")).
		WithData(map[string]string{JWKSKey: string(doc)})
	if err := r.Apply(ctx, cm, client.FieldOwner(signingKeyManager), client.ForceOwnership); err != nil {
		return withReason(ReasonPublishFailed, fmt.Errorf("applying JWKS ConfigMap %s: %w", name, err))
	}
	return nil
}

func (r *SigningKeyReconciler) applySecret(ctx context.Context, sk *v1alpha1.SigningKey, snap *keySnapshot) error {
	keysDoc, err := jwks.PrivateSetJSON(keysOf(snap.state.Keys, snap.private))
	if err != nil {
		return withReason(ReasonKeyGeneration, fmt.Errorf("rendering private key set: %w", err))
	}
	stateDoc, err := json.Marshal(snap.state)
	if err != nil {
		return fmt.Errorf("encoding key state: %w", err)
	}
	data := map[string][]byte{SecretKeysKey: keysDoc, SecretStateKey: stateDoc}
	name := secretName(sk.Name)
	if snap.secret == nil {
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: sk.Namespace, Labels: managedLabels("keys", v1alpha1.LabelSigningKey, sk.Name)},
			Type:       corev1.SecretTypeOpaque,
			Data:       data,
		}
		if err := ctrl.SetControllerReference(sk, secret, r.Scheme()); err != nil {
			return err
		}
		if err := r.Create(ctx, secret, client.FieldOwner(signingKeyManager)); err != nil {
			// Someone else created it since the live read: start over from a fresh read.
			return withReason(ReasonSecretConflict, fmt.Errorf("creating Secret %s: %w", name, err))
		}
		return nil
	}
	if bytes.Equal(snap.secret.Data[SecretKeysKey], keysDoc) && bytes.Equal(snap.secret.Data[SecretStateKey], stateDoc) {
		return nil
	}
	// The resource version from the live read makes the apply fail if the Secret changed
	// since: keys are never written from a stale view.
	ac := corev1ac.Secret(name, sk.Namespace).
		WithResourceVersion(snap.secret.ResourceVersion).
		WithLabels(managedLabels("keys", v1alpha1.LabelSigningKey, sk.Name)).
		WithOwnerReferences(ownerRef(sk, "SigningKey")).
		WithType(corev1.SecretTypeOpaque).
		WithData(data)
	if err := r.Apply(ctx, ac, client.FieldOwner(signingKeyManager), client.ForceOwnership); err != nil {
		return withReason(ReasonSecretConflict, fmt.Errorf("applying Secret %s: %w", name, err))
	}
	return nil
}

// actionEvents maps each planner action to its Event type and reason and its log message.
var actionEvents = map[rotation.ActionKind]struct{ eventType, reason, message string }{
	rotation.ActionCreate:   {corev1.EventTypeNormal, "KeyPublished", "Published key"},
	rotation.ActionSchedule: {corev1.EventTypeNormal, "RotationScheduled", "Scheduled key to sign once pre-published"},
	rotation.ActionActivate: {corev1.EventTypeNormal, "KeyActivated", "Activated key"},
	rotation.ActionRetire:   {corev1.EventTypeNormal, "KeyRetired", "Retired key"},
	rotation.ActionRemove:   {corev1.EventTypeNormal, "KeyRemoved", "Removed key from the JWKS"},
	rotation.ActionWithdraw: {corev1.EventTypeWarning, "KeyWithdrawn", "Withdrew key from the JWKS at once"},
}

// report turns the plan's actions into Events, metrics and log lines.
func (r *SigningKeyReconciler) report(ctx context.Context, sk *v1alpha1.SigningKey, plan rotation.Result) {
	log := logf.FromContext(ctx)
	active, _ := plan.Active()
	for _, a := range plan.Actions {
		ev := actionEvents[a.Kind]
		r.Recorder.Eventf(sk, nil, ev.eventType, ev.reason, string(a.Kind), "%s %s (%s)", ev.message, a.KID, a.Reason)
		log.Info(ev.message, "signingKey", klog.KObj(sk), "kid", a.KID, "reason", a.Reason)
		switch {
		case a.Kind == rotation.ActionWithdraw:
			keysWithdrawnTotal.WithLabelValues(sk.Namespace, sk.Name, string(a.Reason)).Inc()
		case a.KID == active.KID && (a.Kind == rotation.ActionActivate || a.Kind == rotation.ActionCreate):
			rotationsTotal.WithLabelValues(sk.Namespace, sk.Name, string(a.Reason)).Inc()
		}
	}
}

// setStatus mirrors the key states into the status.
func (r *SigningKeyReconciler) setStatus(sk *v1alpha1.SigningKey, state KeyState, plan rotation.Result, now time.Time) {
	st := &sk.Status
	st.ObservedGeneration = sk.Generation
	st.SecretName = secretName(sk.Name)
	st.JWKSConfigMapName = jwksConfigMapName(sk.Name)
	st.RotationRequest = state.RotationRequest
	st.EmergencyRotationRequest = state.EmergencyRotationRequest
	st.Keys = st.Keys[:0]
	counts := map[rotation.State]int{}
	for _, k := range plan.Keys {
		counts[k.State]++
		ks := v1alpha1.KeyStatus{
			KeyID:       k.KID,
			Algorithm:   v1alpha1.Algorithm(strings.SplitN(k.Profile, "/", 2)[0]),
			State:       v1alpha1.KeyState(k.State),
			PublishedAt: *ptrTime(k.PublishedAt),
		}
		if !k.ActivatedAt.IsZero() {
			ks.ActivatedAt = ptrTime(k.ActivatedAt)
		}
		if !k.RetiredAt.IsZero() {
			ks.RetiredAt = ptrTime(k.RetiredAt)
		}
		st.Keys = append(st.Keys, ks)
	}
	for _, s := range []rotation.State{rotation.StatePending, rotation.StateActive, rotation.StateRetired} {
		keysPublished.WithLabelValues(sk.Namespace, sk.Name, string(s)).Set(float64(counts[s]))
	}
	st.NextActionTime = nil
	if !plan.NextDue.IsZero() {
		st.NextActionTime = ptrTime(plan.NextDue)
	}
	active, ok := plan.Active()
	st.ActiveKeyID, st.NextRotationTime, st.LastRotationTime = "", nil, nil
	if ok {
		st.ActiveKeyID = active.KID
		st.LastRotationTime = ptrTime(active.ActivatedAt)
		next := nextRotationTime(rotationPolicy(sk), active, plan.Keys)
		st.NextRotationTime = ptrTime(next)
		activeKeyAge.WithLabelValues(sk.Namespace, sk.Name).Set(now.Sub(active.ActivatedAt).Seconds())
		nextRotation.WithLabelValues(sk.Namespace, sk.Name).Set(next.Sub(now).Seconds())
	}
	msg := fmt.Sprintf("Key %s signs; %d key(s) published", st.ActiveKeyID, len(plan.Keys))
	reason := v1alpha1.ReasonReconciled
	if plan.Overdue {
		reason = ReasonRotationOverdue
		msg += "; rotation is overdue and waits for its successor's pre-publication"
	}
	setCondition(&st.Conditions, sk.Generation, now, v1alpha1.ConditionReady, metav1.ConditionTrue, reason, msg)
}

// nextRotationTime is when the active key hands over: the pending key's activation time,
// or the end of the active key's period.
func nextRotationTime(p rotation.Policy, active rotation.Key, keys []rotation.Key) time.Time {
	due := active.ActivatedAt.Add(p.Period)
	for _, k := range keys {
		if k.State != rotation.StatePending {
			continue
		}
		ready := k.PublishedAt.Add(p.PrePublish)
		if k.Manual || ready.After(due) {
			return ready
		}
	}
	return due
}

// ptrTime is t as the API server stores it (whole seconds), so a status built from
// in-memory times compares equal to the one read back and is not patched again.
func ptrTime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t).Rfc3339Copy()
	return &mt
}

// patchStatus writes the status once per pass, only when it changed, with the pass's
// error folded into the Ready condition.
func (r *SigningKeyReconciler) patchStatus(ctx context.Context, orig, sk *v1alpha1.SigningKey, now time.Time, err error) error {
	if err != nil {
		reconcileErrors.WithLabelValues("signingkey", reasonOf(err)).Inc()
		setCondition(&sk.Status.Conditions, sk.Generation, now, v1alpha1.ConditionReady, metav1.ConditionFalse, reasonOf(err), err.Error())
		sk.Status.ObservedGeneration = sk.Generation
	}
	return writeStatus(ctx, r.Client, orig, sk, orig.Status, sk.Status, err)
}

func forgetSigningKeyMetrics(nn types.NamespacedName) {
	labels := prometheus.Labels{"namespace": nn.Namespace, "signingkey": nn.Name}
	for _, v := range []*prometheus.GaugeVec{activeKeyAge, nextRotation, keysPublished} {
		v.DeletePartialMatch(labels)
	}
}
