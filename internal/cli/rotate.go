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

package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/jwks"
)

// pollInterval is how often waits re-read what they wait for.
const pollInterval = 200 * time.Millisecond

type rotateOptions struct {
	emergency bool
	yes       bool
	wait      time.Duration
	id        string
}

func newRotateCommand(a *app) *cobra.Command {
	o := &rotateOptions{}
	cmd := &cobra.Command{
		Use:   "rotate SIGNINGKEY [--emergency [--yes]] [--wait[=TIMEOUT]]",
		Short: "Rotate a SigningKey now, or withdraw all its keys in an emergency",
		Long: `Rotate a SigningKey now.

Without --emergency the rotation is the scheduled kind, started early: it sets
spec.rotationRequest. A new key is published in the JWKS and every bundle at once, signs
after rotation.prePublish (so every verifier holds it first), and the current key retires
and keeps verifying for rotation.retain. Nothing stops working.

With --emergency every key of the SigningKey is presumed leaked: it sets
spec.emergencyRotationRequest, the operator withdraws every key (active, pending and
retired) from the JWKS and from the bundles of every TokenPolicy that trusts the
SigningKey at once, and a fresh key signs immediately. Every token the old keys signed is
rejected. The command first says exactly what stops working (kids, TokenPolicies and
bundles, which key signs next), then asks you to type the SigningKey's name; --yes skips
the question. Without a terminal it refuses unless --yes is given.

To withdraw a single key instead, revoke it: kubectl keyward revoke key KID.

--wait waits until the operator has handled the request and the JWKS ConfigMap and every
bundle of the trusting TokenPolicies hold the result, and prints the bundle generations.`,
		Example: `  # Rotate early, with the usual pre-publication; wait until every bundle holds the new key
  kubectl keyward rotate web-keys --wait

  # The signing Secret leaked: withdraw every key now (asks for confirmation)
  kubectl keyward rotate web-keys --emergency --wait=2m

  # The same from a script, with an incident id recorded in the spec
  kubectl keyward rotate web-keys --emergency --yes --id INC-42`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeSigningKeys,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.rotate(cmd.Context(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.emergency, "emergency", false, "Withdraw every key of the SigningKey at once; a fresh key signs immediately. Tokens signed by the old keys are rejected.")
	f.BoolVarP(&o.yes, "yes", "y", false, "Do not ask for confirmation of an emergency rotation.")
	f.DurationVar(&o.wait, "wait", 0, "Wait until the JWKS and every bundle hold the rotation (--wait alone: 2m).")
	f.Lookup("wait").NoOptDefVal = "2m"
	f.StringVar(&o.id, "id", "", "Value written to spec.rotationRequest or spec.emergencyRotationRequest, e.g. an incident id (default: the current time, RFC 3339).")
	return cmd
}

func (a *app) rotate(ctx context.Context, name string, o *rotateOptions) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	ns, err := a.namespace()
	if err != nil {
		return err
	}
	sk := &v1alpha1.SigningKey{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sk); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("SigningKey %q not found in namespace %q", name, ns)
		}
		return permissionError(err, "get", "signingkeys.auth.keyward.dev", ns, name, "rotate")
	}
	value := cmp.Or(o.id, stamp(a.Clock.Now()))
	if len(value) > 64 {
		return fmt.Errorf("--id is %d characters long; at most 64 fit the request field", len(value))
	}
	field, current := "rotationRequest", sk.Spec.RotationRequest
	if o.emergency {
		field, current = "emergencyRotationRequest", sk.Spec.EmergencyRotationRequest
	}
	if value == current {
		return fmt.Errorf("spec.%s of SigningKey %s is already %q, and the operator acts only on a new value: pass another --id", field, name, value)
	}
	var users []v1alpha1.TokenPolicy
	var tps v1alpha1.TokenPolicyList
	listErr := c.List(ctx, &tps, client.InNamespace(ns))
	if listErr == nil {
		for _, tp := range tps.Items {
			if trusts(&tp, name) {
				users = append(users, tp)
			}
		}
	}
	now := a.Clock.Now()
	if o.emergency {
		describeEmergency(a.Out, sk, users, listErr, now)
		if err := a.confirm(o.yes, "withdraw every key of SigningKey "+ns+"/"+name, name); err != nil {
			return err
		}
	} else {
		describeScheduled(a.Out, sk, users)
	}
	oldKIDs := make([]string, 0, len(sk.Status.Keys))
	for _, k := range sk.Status.Keys {
		oldKIDs = append(oldKIDs, k.KeyID)
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]string{field: value}})
	if err := c.Patch(ctx, sk, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return permissionError(err, "patch", "signingkeys.auth.keyward.dev", ns, name, "rotate")
	}
	fmt.Fprintf(a.Out, "signingkey.auth.keyward.dev/%s patched: spec.%s=%q\n", name, field, value)
	if o.wait <= 0 {
		fmt.Fprintf(a.Out, "Follow it with: kubectl keyward status -n %s\n", ns)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, o.wait)
	defer cancel()
	return a.waitRotation(ctx, c, sk, o.emergency, field, value, oldKIDs, users)
}

func describeScheduled(w io.Writer, sk *v1alpha1.SigningKey, users []v1alpha1.TokenPolicy) {
	alg := cmp.Or(sk.Spec.Algorithm, v1alpha1.ES256)
	fmt.Fprintf(w, "Rotating SigningKey %s/%s (%s) ahead of schedule:\n", sk.Namespace, sk.Name, alg)
	fmt.Fprintf(w, "  - a new %s key is published now in the JWKS ConfigMap %s%s;\n", alg, jwksConfigMapName(sk), policyClause(users))
	fmt.Fprintf(w, "  - it starts signing after rotation.prePublish (%s), when every verifier holds it;\n", sk.Spec.Rotation.PrePublish.Duration)
	if sk.Status.ActiveKeyID != "" {
		fmt.Fprintf(w, "  - the active key %s then retires and keeps verifying for rotation.retain (%s).\n", sk.Status.ActiveKeyID, sk.Spec.Rotation.Retain.Duration)
	}
	fmt.Fprintln(w, "Nothing stops working: tokens already issued stay valid until they expire.")
}

func policyClause(users []v1alpha1.TokenPolicy) string {
	if len(users) == 0 {
		return " (no TokenPolicy trusts this SigningKey)"
	}
	names := make([]string, 0, len(users))
	for _, tp := range users {
		names = append(names, tp.Name)
	}
	return " and the bundles of TokenPolicies " + strings.Join(names, ", ")
}

func describeEmergency(w io.Writer, sk *v1alpha1.SigningKey, users []v1alpha1.TokenPolicy, listErr error, now time.Time) {
	alg := cmp.Or(sk.Spec.Algorithm, v1alpha1.ES256)
	fmt.Fprintf(w, "EMERGENCY ROTATION of SigningKey %s/%s (%s): every key is presumed leaked.\n\n", sk.Namespace, sk.Name, alg)
	fmt.Fprintf(w, "These keys leave the JWKS ConfigMap %s and every bundle below, at once:\n", jwksConfigMapName(sk))
	if len(sk.Status.Keys) == 0 {
		fmt.Fprintln(w, "  (the SigningKey's status lists no key yet)")
	}
	tw := newTable(w)
	for _, k := range sk.Status.Keys {
		when := "published " + relative(now, k.PublishedAt.Time)
		switch {
		case k.State == v1alpha1.KeyActive && k.ActivatedAt != nil:
			when = "signing since " + relative(now, k.ActivatedAt.Time)
		case k.State == v1alpha1.KeyRetired && k.RetiredAt != nil:
			when = "retired " + relative(now, k.RetiredAt.Time)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", k.KeyID, k.State, when)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	switch {
	case listErr != nil:
		fmt.Fprintf(w, "The TokenPolicies that trust %s could not be listed (%v): every policy of namespace %s that lists it in spec.signingKeys is affected.\n",
			sk.Name, apierrors.ReasonForError(listErr), sk.Namespace)
	case len(users) == 0:
		fmt.Fprintf(w, "No TokenPolicy in namespace %s trusts %s: no bundle changes, only the JWKS ConfigMap.\n", sk.Namespace, sk.Name)
	default:
		fmt.Fprintf(w, "TokenPolicies that trust %s, and the bundles that drop these keys:\n", sk.Name)
		tw := newTable(w)
		for _, tp := range users {
			role := "verifies"
			if tp.Spec.SigningKeys[0] == sk.Name {
				role = "signs and verifies (first in spec.signingKeys)"
			}
			fmt.Fprintf(tw, "  %s\tbundle %s\tgeneration %d now\tissuer %s\t%s\n", tp.Name, bundleConfigMapName(&tp), tp.Status.BundleGeneration, tp.Spec.Issuer, role)
		}
		_ = tw.Flush()
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "What stops working: every token signed by these keys is rejected (unknown_kid) by every")
	fmt.Fprintln(w, "verifier of these policies as soon as it loads the new bundle (about a second in watch mode,")
	fmt.Fprintln(w, "60-90s in file mode). Clients must get new tokens; refresh tokens still work at the issuer.")
	fmt.Fprintf(w, "What signs next: a fresh %s key that the operator generates now and that signs at once,\n", alg)
	fmt.Fprintln(w, "without pre-publication: a verifier rejects its tokens until it has loaded the new bundle.")
	fmt.Fprintln(w)
}

// waitRotation waits until the operator has handled the request, the JWKS ConfigMap
// holds the result and every trusting policy's bundle does too.
func (a *app) waitRotation(ctx context.Context, c client.Client, sk *v1alpha1.SigningKey, emergency bool, field, value string, oldKIDs []string, users []v1alpha1.TokenPolicy) error {
	start := a.Clock.Now()
	generation := sk.Generation
	key := client.ObjectKeyFromObject(sk)
	var newKIDs []string
	err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, key, sk); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		handled := sk.Status.RotationRequest
		if emergency {
			handled = sk.Status.EmergencyRotationRequest
		}
		if sk.Status.ObservedGeneration < generation || handled != value {
			return false, nil
		}
		newKIDs = newKIDs[:0]
		for _, k := range sk.Status.Keys {
			if !slices.Contains(oldKIDs, k.KeyID) {
				newKIDs = append(newKIDs, k.KeyID)
			}
		}
		return !emergency || sk.Status.ActiveKeyID != "" && !slices.Contains(oldKIDs, sk.Status.ActiveKeyID), nil
	})
	if err != nil {
		return a.waitFailed(err, fmt.Sprintf("the operator has not handled spec.%s=%q of SigningKey %s yet (status.observedGeneration %d, spec generation %d)",
			field, value, sk.Name, sk.Status.ObservedGeneration, generation))
	}
	if emergency {
		fmt.Fprintf(a.Out, "SigningKey %s: handled after %s; every old key is withdrawn and %s signs now.\n", sk.Name, a.since(start), sk.Status.ActiveKeyID)
	} else {
		for _, k := range sk.Status.Keys {
			if slices.Contains(newKIDs, k.KeyID) {
				signs := "now"
				if k.State == v1alpha1.KeyPending && sk.Status.NextRotationTime != nil {
					signs = stamp(sk.Status.NextRotationTime.Time) + " (" + relative(a.Clock.Now(), sk.Status.NextRotationTime.Time) + ")"
				}
				fmt.Fprintf(a.Out, "SigningKey %s: handled after %s; new key %s is %s and signs %s.\n", sk.Name, a.since(start), k.KeyID, k.State, signs)
			}
		}
		if len(newKIDs) == 0 {
			fmt.Fprintf(a.Out, "SigningKey %s: handled after %s; no new key was needed (a successor was already published).\n", sk.Name, a.since(start))
		}
	}
	// good reports whether a set of published kids reflects the rotation.
	good := func(kids []string) bool {
		for _, k := range newKIDs {
			if !slices.Contains(kids, k) {
				return false
			}
		}
		if emergency {
			for _, k := range oldKIDs {
				if slices.Contains(kids, k) {
					return false
				}
			}
		}
		return true
	}
	var lastKIDs []string
	cmName := jwksConfigMapName(sk)
	err = wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		cm := &corev1.ConfigMap{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: sk.Namespace, Name: cmName}, cm); err != nil {
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return false, permissionError(err, "get", "configmaps", sk.Namespace, cmName, "rotate --wait")
		}
		keys, err := jwks.ParseSet([]byte(cm.Data["jwks.json"]), false)
		if err != nil {
			return false, nil
		}
		lastKIDs = lastKIDs[:0]
		for _, k := range keys {
			kid, _ := k.KeyID()
			lastKIDs = append(lastKIDs, kid)
		}
		return good(lastKIDs), nil
	})
	if err != nil {
		return a.waitFailed(err, fmt.Sprintf("the JWKS ConfigMap %s does not reflect the rotation yet (it holds %v)", cmName, lastKIDs))
	}
	fmt.Fprintf(a.Out, "JWKS ConfigMap %s: holds %s after %s.\n", cmName, strings.Join(lastKIDs, ", "), a.since(start))
	for i := range users {
		tp := &users[i]
		var gen int64
		err = wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
			b, err := readBundle(ctx, c, tp)
			if err != nil {
				if apierrors.IsForbidden(err) {
					return false, err
				}
				return false, nil
			}
			gen, lastKIDs = b.Generation, bundleKIDs(b)
			return good(lastKIDs), nil
		})
		if err != nil {
			return a.waitFailed(err, fmt.Sprintf("the bundle of TokenPolicy %s (generation %d) does not reflect the rotation yet (it holds %v)", tp.Name, gen, lastKIDs))
		}
		fmt.Fprintf(a.Out, "TokenPolicy %s: bundle %s generation %d holds %s after %s.\n", tp.Name, bundleConfigMapName(tp), gen, strings.Join(lastKIDs, ", "), a.since(start))
	}
	return nil
}

// waitFailed turns a failed wait into an error that says what was still missing.
func (a *app) waitFailed(err error, missing string) error {
	if errors.Is(err, context.DeadlineExceeded) || wait.Interrupted(err) {
		return fmt.Errorf("timed out: %s. The request is recorded; the operator applies it when it runs (kubectl keyward status shows what is pending)", missing)
	}
	return err
}

func (a *app) since(start time.Time) string {
	return a.Clock.Since(start).Round(10 * time.Millisecond).String()
}
