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
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
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
	"github.com/keyward-dev/keyward/internal/bundle"
	"github.com/keyward-dev/keyward/internal/jwks"
)

// Condition types and reasons of a TokenPolicy.
const (
	ConditionSigningKeysReady = "SigningKeysReady"
	ConditionRetainCoversTTL  = "RetainCoversTTL"

	ReasonNoKeys            = "NoTrustedKeys"
	ReasonSigningKeyMissing = "SigningKeyMissing"
	ReasonBundleTooLarge    = "BundleTooLarge"
	ReasonBundleWriteFailed = "BundleWriteFailed"
	ReasonBundleInvalid     = "BundleInvalid"
	ReasonRetainTooShort    = "RetainShorterThanTTL"
	ReasonRetainOK          = "RetainCoversTTL"
	ReasonAllKeysReady      = "AllSigningKeysPublished"
)

// Annotations on the bundle ConfigMap, so readers need not parse the document to see
// what is in force.
const (
	AnnotationBundleGeneration = "auth.keyward.dev/bundle-generation"
	AnnotationBundleHash       = "auth.keyward.dev/bundle-hash"
)

// TokenPolicyReconciler renders one verifier bundle ConfigMap per TokenPolicy: the policy,
// the public keys of its trusted SigningKeys and the revocations in its scope.
type TokenPolicyReconciler struct {
	client.Client
	// APIReader reads the bundle ConfigMap live before a new generation is numbered.
	APIReader client.Reader
	Clock     clock.PassiveClock
	Recorder  events.EventRecorder
}

// +kubebuilder:rbac:groups=auth.keyward.dev,resources=tokenpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=auth.keyward.dev,resources=tokenpolicies/status,verbs=get;update;patch

// Reconcile renders and writes the policy's bundle.
func (r *TokenPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	tp := &v1alpha1.TokenPolicy{}
	if err := r.Get(ctx, req.NamespacedName, tp); err != nil {
		if apierrors.IsNotFound(err) {
			forgetPolicyMetrics(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !tp.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	now := r.Clock.Now()
	orig := tp.DeepCopy()
	defer func() { retErr = r.patchStatus(ctx, orig, tp, now, retErr) }()

	snap, err := r.snapshot(ctx, tp, now)
	if err != nil {
		return ctrl.Result{}, err
	}
	r.setKeyConditions(tp, snap, now)
	if len(snap.keys) == 0 {
		return ctrl.Result{}, errorf(ReasonNoKeys, "none of the trusted SigningKeys %v has published a key yet", tp.Spec.SigningKeys)
	}
	snap.revocations.Normalize() // the count in status is of distinct values
	raw, hash, err := bundle.EncodeContent(renderContent(tp, snap))
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.applyBundle(ctx, tp, raw, hash); err != nil {
		return ctrl.Result{}, err
	}
	tp.Status.Revocations = int32(snap.revocations.Len())
	tp.Status.SigningKeyID = snap.signingKeyID
	setCondition(&tp.Status.Conditions, tp.Generation, now, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled,
		fmt.Sprintf("Bundle generation %d holds %d key(s) and %d revocation(s)", tp.Status.BundleGeneration, len(snap.keys), snap.revocations.Len()))
	return ctrl.Result{}, nil
}

// policySnapshot is what the TokenPolicy controller read of the world.
type policySnapshot struct {
	keys         []jwk.Key
	signingKeys  []*v1alpha1.SigningKey // trusted SigningKeys that exist, in spec order
	missing      []string               // trusted SigningKeys without a published JWKS
	signingKeyID string
	revocations  bundle.Revocations
}

func (r *TokenPolicyReconciler) snapshot(ctx context.Context, tp *v1alpha1.TokenPolicy, now time.Time) (*policySnapshot, error) {
	snap := &policySnapshot{}
	// Keys first: without any there is no bundle to render, and no reason to read the
	// (possibly many) revocations.
	var keys []jwk.Key
	seen := map[string]bool{}
	for i, name := range tp.Spec.SigningKeys {
		sk := &v1alpha1.SigningKey{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: tp.Namespace, Name: name}, sk); err != nil {
			if !apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("reading SigningKey %s: %w", name, err)
			}
			snap.missing = append(snap.missing, name)
			continue
		}
		snap.signingKeys = append(snap.signingKeys, sk)
		if i == 0 {
			snap.signingKeyID = sk.Status.ActiveKeyID
		}
		published, err := r.publishedKeys(ctx, sk)
		if err != nil || len(published) == 0 {
			snap.missing = append(snap.missing, name)
			continue
		}
		for _, k := range published {
			if kid, _ := k.KeyID(); !seen[kid] {
				seen[kid] = true
				keys = append(keys, k)
			}
		}
	}
	if len(keys) == 0 {
		return snap, nil
	}
	revokedKIDs := map[string]bool{}
	var entries v1alpha1.RevocationEntryList
	if err := r.List(ctx, &entries, client.InNamespace(tp.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing RevocationEntries: %w", err)
	}
	for i := range entries.Items {
		re := &entries.Items[i]
		if !inScope(re, tp.Name) {
			continue
		}
		expires := revocationBase(re).Add(tokenLifetime(re, &tp.Spec))
		if !now.Before(expires) {
			continue // every token it could match has expired
		}
		addRevocation(&snap.revocations, re, expires)
		if re.Spec.KeyID != "" {
			revokedKIDs[re.Spec.KeyID] = true
		}
	}
	for _, k := range keys {
		if kid, _ := k.KeyID(); !revokedKIDs[kid] {
			snap.keys = append(snap.keys, k)
		}
	}
	return snap, nil
}

// publishedKeys reads a SigningKey's public JWKS ConfigMap.
func (r *TokenPolicyReconciler) publishedKeys(ctx context.Context, sk *v1alpha1.SigningKey) ([]jwk.Key, error) {
	cm := &corev1.ConfigMap{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: sk.Namespace, Name: jwksConfigMapName(sk.Name)}, cm); err != nil {
		return nil, err
	}
	if !metav1.IsControlledBy(cm, sk) {
		return nil, fmt.Errorf("ConfigMap %s is not controlled by SigningKey %s", cm.Name, sk.Name)
	}
	return jwks.ParseSet([]byte(cm.Data[JWKSKey]), false)
}

// inScope reports whether a RevocationEntry applies to the named policy.
func inScope(re *v1alpha1.RevocationEntry, policy string) bool {
	return len(re.Spec.Policies) == 0 || slices.Contains(re.Spec.Policies, policy)
}

func addRevocation(revs *bundle.Revocations, re *v1alpha1.RevocationEntry, expires time.Time) {
	e := bundle.Revoked{Expires: expires.Unix()}
	switch {
	case re.Spec.JTI != "":
		e.Value = re.Spec.JTI
		revs.JTI = append(revs.JTI, e)
	case re.Spec.Subject != "":
		e.Value, e.IssuedBefore = re.Spec.Subject, revocationBase(re).Unix()
		revs.Subject = append(revs.Subject, e)
	case re.Spec.SessionID != "":
		e.Value = re.Spec.SessionID
		revs.Session = append(revs.Session, e)
	case re.Spec.KeyID != "":
		e.Value = re.Spec.KeyID
		revs.KeyID = append(revs.KeyID, e)
	case re.Spec.ClientID != "":
		e.Value, e.IssuedBefore = re.Spec.ClientID, revocationBase(re).Unix()
		revs.ClientID = append(revs.ClientID, e)
	}
}

// renderContent maps the TokenPolicy, with defaults applied, into the bundle content.
func renderContent(tp *v1alpha1.TokenPolicy, snap *policySnapshot) bundle.Content {
	s := &tp.Spec
	p := bundle.Policy{
		Namespace:             tp.Namespace,
		Name:                  tp.Name,
		Issuer:                s.Issuer,
		Audiences:             slices.Clone(s.Audiences),
		LeewaySeconds:         int64(s.Leeway.Duration / time.Second), // defaulted to 30s at admission; 0s is a valid choice
		AccessTokenType:       cmp.Or(s.AccessToken.Type, "at+jwt"),
		AccessTokenTTLSeconds: int64(accessTTL(s) / time.Second),
		SigningKeyID:          snap.signingKeyID,
		Binding:               bundle.Binding{Mode: string(cmp.Or(s.Binding.Mode, v1alpha1.BindingNone)), Required: s.Binding.Required},
		ForwardToken:          s.ForwardToken,
	}
	for _, a := range s.AllowedAlgorithms {
		p.Algorithms = append(p.Algorithms, string(a))
	}
	if len(p.Algorithms) == 0 {
		for _, k := range snap.keys {
			if alg, ok := k.Algorithm(); ok && !slices.Contains(p.Algorithms, alg.String()) {
				p.Algorithms = append(p.Algorithms, alg.String())
			}
		}
	}
	slices.Sort(p.Algorithms)
	for _, rr := range s.Routes {
		p.Routes = append(p.Routes, bundle.Route{Path: rr.Path, Methods: rr.Methods, Scopes: rr.Scopes, Anonymous: rr.Anonymous})
	}
	for _, c := range s.ForwardClaims {
		p.ForwardClaims = append(p.ForwardClaims, bundle.ClaimHeader{Claim: c.Claim, Header: c.Header})
	}
	for _, ts := range s.TokenSources {
		p.TokenSources = append(p.TokenSources, bundle.TokenSource{Type: string(ts.Type), Name: ts.Name})
	}
	if len(p.TokenSources) == 0 {
		p.TokenSources = []bundle.TokenSource{{Type: string(v1alpha1.TokenSourceAuthorizationHeader)}}
	}
	doc, _ := jwks.PublicSetJSON(snap.keys) // keys were parsed from a valid public set
	return bundle.Content{Policy: p, JWKS: doc, Revocations: snap.revocations}
}

// applyBundle writes the bundle with the next generation when its content changed.
func (r *TokenPolicyReconciler) applyBundle(ctx context.Context, tp *v1alpha1.TokenPolicy, raw []byte, hash string) error {
	name := bundleConfigMapName(tp.Name)
	key := types.NamespacedName{Namespace: tp.Namespace, Name: name}
	generation := tp.Status.BundleGeneration
	current := &corev1.ConfigMap{}
	if err := r.Get(ctx, key, current); err == nil && r.unchanged(current, tp, raw, hash) {
		return r.recordBundle(tp, current, hash, int64(len(current.Data[bundle.DataKey])))
	}
	// The content changed: number the new generation from a live read, never from the
	// cache; metadata only, the annotation is all it needs.
	live := &metav1.PartialObjectMetadata{}
	live.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	if err := r.APIReader.Get(ctx, key, live); err == nil {
		if g, perr := strconv.ParseInt(live.Annotations[AnnotationBundleGeneration], 10, 64); perr == nil {
			generation = max(generation, g)
		}
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading bundle ConfigMap %s: %w", name, err)
	}
	generation++
	doc, err := bundle.Encode(generation, raw, hash)
	if err != nil {
		return err
	}
	bundleBytes.WithLabelValues(tp.Namespace, tp.Name).Set(float64(len(doc)))
	if len(doc) <= bundle.MaxBytes {
		// Never publish what a reader would refuse (e.g. a spec that bypassed admission).
		if _, derr := bundle.Decode(doc); derr != nil {
			return errorf(ReasonBundleInvalid, "the rendered bundle is invalid, generation %d stays in force: %v", tp.Status.BundleGeneration, derr)
		}
	}
	if len(doc) > bundle.MaxBytes {
		r.Recorder.Eventf(tp, nil, corev1.EventTypeWarning, ReasonBundleTooLarge, "Render",
			"Bundle of %d bytes exceeds %d; generation %d stays in force", len(doc), bundle.MaxBytes, tp.Status.BundleGeneration)
		return errorf(ReasonBundleTooLarge, "the bundle would be %d bytes, over the %d-byte limit; the last good bundle (generation %d) stays in force. Revoke by subject, session or key instead of many token ids, or shorten token lifetimes",
			len(doc), bundle.MaxBytes, tp.Status.BundleGeneration)
	}
	cm := corev1ac.ConfigMap(name, tp.Namespace).
		WithLabels(managedLabels("bundle", v1alpha1.LabelTokenPolicy, tp.Name)).
		WithAnnotations(map[string]string{AnnotationBundleGeneration: strconv.FormatInt(generation, 10), AnnotationBundleHash: hash}).
		WithOwnerReferences(ownerRef(tp, "TokenPolicy")).
		WithData(map[string]string{bundle.DataKey: string(doc)})
	if err := r.Apply(ctx, cm, client.FieldOwner(tokenPolicyManager), client.ForceOwnership); err != nil {
		return withReason(ReasonBundleWriteFailed, fmt.Errorf("applying bundle ConfigMap %s: %w", name, err))
	}
	logf.FromContext(ctx).Info("Rendered verifier bundle", "tokenPolicy", klog.KObj(tp), "generation", generation, "hash", hash, "bytes", len(doc))
	tp.Status.BundleConfigMapName, tp.Status.BundleGeneration, tp.Status.BundleHash, tp.Status.BundleBytes = name, generation, hash, int64(len(doc))
	bundleGeneration.WithLabelValues(tp.Namespace, tp.Name).Set(float64(generation))
	return nil
}

// unchanged reports whether the ConfigMap already holds exactly the document this content
// renders to at its current generation; a hand-edited document is rewritten (as a new
// generation), not left in place.
func (r *TokenPolicyReconciler) unchanged(cm *corev1.ConfigMap, tp *v1alpha1.TokenPolicy, raw []byte, hash string) bool {
	if cm.Annotations[AnnotationBundleHash] != hash || !metav1.IsControlledBy(cm, tp) {
		return false
	}
	g, err := strconv.ParseInt(cm.Annotations[AnnotationBundleGeneration], 10, 64)
	if err != nil || g < 1 {
		return false
	}
	doc, err := bundle.Encode(g, raw, hash)
	return err == nil && cm.Data[bundle.DataKey] == string(doc)
}

// recordBundle mirrors an unchanged bundle ConfigMap into the status.
func (r *TokenPolicyReconciler) recordBundle(tp *v1alpha1.TokenPolicy, cm *corev1.ConfigMap, hash string, size int64) error {
	g, err := strconv.ParseInt(cm.Annotations[AnnotationBundleGeneration], 10, 64)
	if err != nil {
		return fmt.Errorf("bundle ConfigMap %s has an invalid generation annotation: %w", cm.Name, err)
	}
	tp.Status.BundleConfigMapName, tp.Status.BundleGeneration, tp.Status.BundleHash, tp.Status.BundleBytes = cm.Name, g, hash, size
	bundleGeneration.WithLabelValues(tp.Namespace, tp.Name).Set(float64(g))
	bundleBytes.WithLabelValues(tp.Namespace, tp.Name).Set(float64(size))
	return nil
}

// setKeyConditions reports missing SigningKeys and retain periods too short for the TTL.
func (r *TokenPolicyReconciler) setKeyConditions(tp *v1alpha1.TokenPolicy, snap *policySnapshot, now time.Time) {
	if len(snap.missing) > 0 {
		setCondition(&tp.Status.Conditions, tp.Generation, now, ConditionSigningKeysReady, metav1.ConditionFalse, ReasonSigningKeyMissing,
			"SigningKeys without a published JWKS: "+strings.Join(snap.missing, ", "))
	} else {
		setCondition(&tp.Status.Conditions, tp.Generation, now, ConditionSigningKeysReady, metav1.ConditionTrue, ReasonAllKeysReady, "Every trusted SigningKey has published keys")
	}
	need := accessTTL(&tp.Spec) + durationOr(tp.Spec.Leeway, 30*time.Second)
	var short []string
	for _, sk := range snap.signingKeys {
		if sk.Spec.Rotation.Retain.Duration < need {
			short = append(short, fmt.Sprintf("%s (retain %s)", sk.Name, sk.Spec.Rotation.Retain.Duration))
		}
	}
	if len(short) > 0 {
		setCondition(&tp.Status.Conditions, tp.Generation, now, ConditionRetainCoversTTL, metav1.ConditionFalse, ReasonRetainTooShort,
			fmt.Sprintf("Tokens live up to %s but these keys are retired sooner, so valid tokens fail after a rotation: %s", need, strings.Join(short, ", ")))
	} else {
		setCondition(&tp.Status.Conditions, tp.Generation, now, ConditionRetainCoversTTL, metav1.ConditionTrue, ReasonRetainOK,
			fmt.Sprintf("Every trusted key stays published at least %s after it stops signing", need))
	}
}

func (r *TokenPolicyReconciler) patchStatus(ctx context.Context, orig, tp *v1alpha1.TokenPolicy, now time.Time, err error) error {
	tp.Status.ObservedGeneration = tp.Generation
	if err != nil {
		reconcileErrors.WithLabelValues("tokenpolicy", reasonOf(err)).Inc()
		setCondition(&tp.Status.Conditions, tp.Generation, now, v1alpha1.ConditionReady, metav1.ConditionFalse, reasonOf(err), err.Error())
	}
	return writeStatus(ctx, r.Client, orig, tp, orig.Status, tp.Status, err)
}

func forgetPolicyMetrics(nn types.NamespacedName) {
	labels := map[string]string{"namespace": nn.Namespace, "tokenpolicy": nn.Name}
	bundleGeneration.DeletePartialMatch(labels)
	bundleBytes.DeletePartialMatch(labels)
}

func durationOr(d metav1.Duration, def time.Duration) time.Duration {
	if d.Duration <= 0 {
		return def
	}
	return d.Duration
}

// accessTTL is the policy's access-token lifetime.
func accessTTL(s *v1alpha1.TokenPolicySpec) time.Duration {
	return durationOr(s.AccessToken.TTL, 10*time.Minute)
}
