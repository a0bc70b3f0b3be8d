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
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/bundle"
)

// LabelCreatedBy marks the RevocationEntries this command creates with CreatedByValue
// (the token service marks its own with "keyward-issuer").
const (
	LabelCreatedBy = "app.kubernetes.io/created-by"
	CreatedByValue = "kubectl-keyward"
)

// defaultReason is recorded when --reason is not given (the API requires one).
const defaultReason = "revoked with kubectl keyward"

type revokeOptions struct {
	policies     []string
	reason       string
	issuedBefore string
	wait         time.Duration
	yes          bool
}

// revokeKind is one `revoke` subcommand.
type revokeKind struct {
	use, alias, kind, short, long, example string
	maxLen                                 int
}

var revokeKinds = []revokeKind{
	{
		use: "token JTI", alias: "jti", kind: kindJTI, maxLen: 256,
		short: "Revoke one token by its jti",
		long:  "Revoke one access token by its jti claim. The entry stays until the token could no longer be valid (the access-token TTL plus the leeway).",
		example: `  kubectl keyward revoke token 0b6f8f7e-3c1a-4d8e-9a55-2f0c1e7d9b11 --reason "INC-42: token in a log" --wait
  # find the jti of a leaked token without echoing it
  kubectl keyward inspect - < leaked.jwt`,
	},
	{
		use: "subject SUB", alias: "sub", kind: kindSubject, maxLen: 256,
		short: "Revoke every token of a subject issued before a time (default: now)",
		long: `Revoke every token of a subject (sub claim) issued before --issued-before: by default
the moment the entry is created, so later logins work. The entry stays for the longest
token lifetime in scope (the refresh-token TTL: refresh tokens of the subject mint new
access tokens).`,
		example: `  kubectl keyward revoke subject alice --reason "lost laptop" --wait
  kubectl keyward revoke subject alice --issued-before 2026-05-28T20:00:00Z --policy web`,
	},
	{
		use: "session SID", alias: "sid", kind: kindSession, maxLen: 256,
		short: "Revoke a session: every access token with this sid",
		long: `Revoke a session (sid claim): every access token of that refresh-token family is
rejected by the verifiers, and the token service ends the family itself.`,
		example: `  kubectl keyward revoke session s-7f3e --reason "lost phone" --wait=30s`,
	},
	{
		use: "key KID", alias: "kid", kind: kindKeyID, maxLen: 128,
		short: "Withdraw one signing key: every token it signed is rejected",
		long: `Revoke one signing key by its kid. Every token it signed is rejected, the key leaves
every bundle in scope at once, and the SigningKey that owns it withdraws it from its JWKS;
if it was the active key a fresh key signs immediately. This is an emergency action: the
command says what stops working and asks you to confirm (--yes skips the question; without
a terminal it refuses unless --yes is given). To withdraw every key of a SigningKey, use
kubectl keyward rotate SIGNINGKEY --emergency.`,
		example: `  kubectl keyward revoke key ZzAu6ylLj6t4vcKP36cnnkl-QCowIGK-ctN9abmGSOQ --reason "INC-42" --wait`,
	},
	{
		use: "client ID", alias: "client_id", kind: kindClientID, maxLen: 256,
		short:   "Revoke every token of an OAuth client issued before a time (default: now)",
		long:    "Revoke every token with this client_id issued before --issued-before (default: the moment the entry is created).",
		example: `  kubectl keyward revoke client billing-batch --reason "client secret leaked" --wait`,
	},
}

func newRevokeCommand(a *app) *cobra.Command {
	parent := &cobra.Command{
		Use:   "revoke (token JTI | subject SUB | session SID | key KID | client ID) [--policy P]... [--reason R] [--issued-before T] [--wait[=TIMEOUT]]",
		Short: "Revoke a token, subject, session, key or client, and wait until every bundle holds it",
		Long: `Create a RevocationEntry, and with --wait, wait until the verifier bundle of every
TokenPolicy it applies to holds it.

The scope is the TokenPolicies named with --policy, or every TokenPolicy of the namespace.
--wait watches each policy's bundle ConfigMap, decodes the bundle exactly as the sidecars
do, and returns once every bundle in scope carries the revocation, printing the bundle
generation that does: sidecars enforce it as soon as they load that generation.

Entry names: a token, session or key revocation, and a subject or client revocation with
an explicit --issued-before, gets a deterministic name derived from the target and the
scope, so running the same command twice (a retry) does not create a second entry. A
subject or client revocation without --issued-before gets a generated name: its cut-off is
the moment of creation, so each run is a new revocation that also covers the tokens
issued since the previous one.`,
		Example: `  kubectl keyward revoke token 0b6f8f7e-3c1a --reason "INC-42" --wait
  kubectl keyward revoke session s-7f3e --policy web --wait=30s
  kubectl keyward revoke subject alice --reason "account compromised"`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("say what to revoke: token JTI, subject SUB, session SID, key KID or client ID (kubectl keyward revoke --help)")
			}
			return fmt.Errorf("unknown revocation kind %q: want token, subject, session, key or client (kubectl keyward revoke --help)", args[0])
		},
		ValidArgsFunction: noArgsCompletion,
	}
	for _, k := range revokeKinds {
		parent.AddCommand(newRevokeKindCommand(a, k))
	}
	return parent
}

func newRevokeKindCommand(a *app, k revokeKind) *cobra.Command {
	o := &revokeOptions{}
	cmd := &cobra.Command{
		Use:     k.use,
		Aliases: []string{k.alias},
		Short:   k.short,
		Long:    k.long,
		Example: k.example,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args[0]) > k.maxLen {
				return fmt.Errorf("the %s is %d characters long; at most %d are allowed", k.kind, len(args[0]), k.maxLen)
			}
			return a.revoke(cmd.Context(), k.kind, args[0], o)
		},
	}
	if k.kind == kindKeyID {
		cmd.ValidArgsFunction = a.completeKeyIDs
	} else {
		cmd.ValidArgsFunction = noArgsCompletion
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.policies, "policy", nil, "Limit the revocation to this TokenPolicy (repeatable). Default: every TokenPolicy of the namespace.")
	f.StringVar(&o.reason, "reason", defaultReason, "Why: recorded in the entry and the audit trail (an incident id helps).")
	f.DurationVar(&o.wait, "wait", 0, "Wait until every bundle in scope holds the revocation (--wait alone: 1m).")
	f.Lookup("wait").NoOptDefVal = "1m"
	_ = cmd.RegisterFlagCompletionFunc("policy", a.completeTokenPolicies)
	if k.kind == kindSubject || k.kind == kindClientID {
		f.StringVar(&o.issuedBefore, "issued-before", "", `Revoke tokens issued before this time: RFC 3339, or "now" (default: when the entry is created).`)
	}
	if k.kind == kindKeyID {
		f.BoolVarP(&o.yes, "yes", "y", false, "Do not ask for confirmation.")
	}
	return cmd
}

func (a *app) revoke(ctx context.Context, kind, value string, o *revokeOptions) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	ns, err := a.namespace()
	if err != nil {
		return err
	}
	if strings.TrimSpace(o.reason) == "" || len(o.reason) > 256 {
		return errors.New("--reason must be 1 to 256 characters")
	}
	var issuedBefore *metav1.Time
	switch o.issuedBefore {
	case "":
	case "now":
		t := metav1.NewTime(a.Clock.Now().UTC().Truncate(time.Second))
		issuedBefore = &t
	default:
		t, err := time.Parse(time.RFC3339, o.issuedBefore)
		if err != nil {
			return fmt.Errorf(`--issued-before: want an RFC 3339 time such as 2026-05-28T20:00:00Z, or "now": %w`, err)
		}
		mt := metav1.NewTime(t.UTC().Truncate(time.Second))
		issuedBefore = &mt
	}
	scope, err := a.policiesInScope(ctx, c, ns, o.policies)
	if err != nil {
		return err
	}
	if issuedBefore != nil {
		longest := longestLifetime(scope)
		if exp := issuedBefore.Add(longest); !a.Clock.Now().Before(exp) {
			return fmt.Errorf("--issued-before %s: every token it could match has already expired (the longest token lifetime in scope is %s), so there is nothing to revoke",
				stamp(issuedBefore.Time), longest)
		}
	}
	if kind == kindKeyID {
		if err := a.confirmKeyRevocation(ctx, c, ns, value, scope, o.yes); err != nil {
			return err
		}
	}
	re := &v1alpha1.RevocationEntry{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Labels: map[string]string{LabelCreatedBy: CreatedByValue}},
		Spec:       v1alpha1.RevocationEntrySpec{Reason: o.reason, IssuedBefore: issuedBefore, Policies: o.policies},
	}
	switch kind {
	case kindJTI:
		re.Spec.JTI = value
	case kindSubject:
		re.Spec.Subject = value
	case kindSession:
		re.Spec.SessionID = value
	case kindKeyID:
		re.Spec.KeyID = value
	case kindClientID:
		re.Spec.ClientID = value
	}
	t := target{Kind: kind, Value: value}
	if issuedBefore != nil {
		t.IssuedBefore = issuedBefore.Unix()
	}
	if (kind == kindSubject || kind == kindClientID) && issuedBefore == nil {
		sum := sha256.Sum256([]byte(value))
		re.GenerateName = namePrefix(kind) + "-" + hex.EncodeToString(sum[:])[:10] + "-"
	} else {
		re.Name = entryName(t, o.policies)
	}
	if err := a.createEntry(ctx, c, re); err != nil {
		return err
	}
	t = targetOf(re) // the cut-off of a subject or client entry is its creation time
	if o.wait <= 0 {
		fmt.Fprintf(a.Out, "It is enforced once the bundles hold it; follow it with: kubectl keyward status -n %s\n", ns)
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, o.wait)
	defer cancel()
	return a.waitRevocation(wctx, c, re, t, scope)
}

// policiesInScope returns the named TokenPolicies (each must exist), or every one of the
// namespace.
func (a *app) policiesInScope(ctx context.Context, c client.Client, ns string, names []string) ([]v1alpha1.TokenPolicy, error) {
	if len(names) == 0 {
		var list v1alpha1.TokenPolicyList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil, permissionError(err, "list", "tokenpolicies.auth.keyward.dev", ns, "", "finding the TokenPolicies in scope")
		}
		if len(list.Items) == 0 {
			fmt.Fprintf(a.ErrOut, "warning: namespace %s has no TokenPolicy: no bundle carries the revocation until one exists\n", ns)
		}
		return list.Items, nil
	}
	out := make([]v1alpha1.TokenPolicy, 0, len(names))
	for _, n := range names {
		tp := &v1alpha1.TokenPolicy{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, tp); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("TokenPolicy %q not found in namespace %q (a revocation applies to the TokenPolicies of its own namespace)", n, ns)
			}
			return nil, permissionError(err, "get", "tokenpolicies.auth.keyward.dev", ns, n, "checking --policy")
		}
		out = append(out, *tp)
	}
	return out, nil
}

// confirmKeyRevocation says what stops working when a key is revoked, and asks.
func (a *app) confirmKeyRevocation(ctx context.Context, c client.Client, ns, kid string, scope []v1alpha1.TokenPolicy, yes bool) error {
	var sks v1alpha1.SigningKeyList
	_ = c.List(ctx, &sks, client.InNamespace(ns)) // best effort: the owner makes the warning precise
	var owner *v1alpha1.SigningKey
	var state v1alpha1.KeyState
	for i := range sks.Items {
		for _, k := range sks.Items[i].Status.Keys {
			if k.KeyID == kid {
				owner, state = &sks.Items[i], k.State
			}
		}
	}
	w := a.Out
	fmt.Fprintf(w, "REVOKING SIGNING KEY %s in namespace %s.\n", kid, ns)
	if owner == nil {
		fmt.Fprintf(w, "  No SigningKey in %s publishes this kid now: no bundle holds it, so the revocation only guards against its return.\n", ns)
	} else {
		fmt.Fprintf(w, "  It is the %s key of SigningKey %s; the operator withdraws it from JWKS ConfigMap %s at once.\n", state, owner.Name, jwksConfigMapName(owner))
		if state == v1alpha1.KeyActive {
			fmt.Fprintln(w, "  It signs now: a fresh key signs immediately, without pre-publication (verifiers reject its tokens until they load the new bundle).")
		}
	}
	var names []string
	for _, tp := range scope {
		names = append(names, fmt.Sprintf("%s (bundle %s, generation %d now)", tp.Name, bundleConfigMapName(&tp), tp.Status.BundleGeneration))
	}
	if len(names) > 0 {
		fmt.Fprintf(w, "  Bundles that drop it and list it as revoked: %s.\n", strings.Join(names, "; "))
	}
	fmt.Fprintln(w, "  What stops working: every token this key signed is rejected by the verifiers of these policies.")
	want := kid
	if owner != nil {
		want = owner.Name
	}
	return a.confirm(yes, "revoke key "+kid, want)
}

// createEntry creates the entry; an existing entry with the same spec is success.
func (a *app) createEntry(ctx context.Context, c client.Client, re *v1alpha1.RevocationEntry) error {
	desired := re.Spec.DeepCopy()
	err := c.Create(ctx, re)
	if err == nil {
		fmt.Fprintf(a.Out, "revocationentry.auth.keyward.dev/%s created: revokes %s in %s (reason: %s)\n", re.Name, targetOf(re), scopeText(re), re.Spec.Reason)
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return permissionError(err, "create", "revocationentries.auth.keyward.dev", re.Namespace, "", "revoke")
	}
	if gerr := c.Get(ctx, client.ObjectKeyFromObject(re), re); gerr != nil {
		return fmt.Errorf("RevocationEntry %s exists but cannot be read: %w", re.Name, gerr)
	}
	if !sameTarget(&re.Spec, desired) {
		return fmt.Errorf("RevocationEntry %s already exists with another target (%s); it was not created by this command", re.Name, targetOf(re))
	}
	fmt.Fprintf(a.Out, "revocationentry.auth.keyward.dev/%s unchanged: it already revokes %s in %s (created %s, reason: %s)\n",
		re.Name, targetOf(re), scopeText(re), relative(a.Clock.Now(), re.CreationTimestamp.Time), re.Spec.Reason)
	return nil
}

func sameTarget(x, y *v1alpha1.RevocationEntrySpec) bool {
	px, py := slices.Clone(x.Policies), slices.Clone(y.Policies)
	slices.Sort(px)
	slices.Sort(py)
	return x.JTI == y.JTI && x.Subject == y.Subject && x.SessionID == y.SessionID && x.KeyID == y.KeyID &&
		x.ClientID == y.ClientID && x.IssuedBefore.Equal(y.IssuedBefore) && slices.Equal(px, py)
}

func scopeText(re *v1alpha1.RevocationEntry) string {
	if len(re.Spec.Policies) == 0 {
		return "every TokenPolicy of namespace " + re.Namespace
	}
	return "TokenPolicies " + strings.Join(re.Spec.Policies, ", ") + " of namespace " + re.Namespace
}

// waitRevocation waits until the bundle of every policy in scope holds the target.
func (a *app) waitRevocation(ctx context.Context, c client.Client, re *v1alpha1.RevocationEntry, t target, scope []v1alpha1.TokenPolicy) error {
	if len(scope) == 0 {
		fmt.Fprintln(a.Out, "No TokenPolicy is in scope: there is no bundle to wait for.")
		return nil
	}
	start := a.Clock.Now()
	var failed []string
	for i := range scope {
		tp := &scope[i]
		b, err := a.waitBundleHolds(ctx, tp, t)
		if err == nil {
			fmt.Fprintf(a.Out, "TokenPolicy %s: bundle %s generation %d (%s) holds %s after %s\n",
				tp.Name, bundleConfigMapName(tp), b.Generation, shortHash(b.Hash), t, a.since(start))
			continue
		}
		if !errors.Is(err, context.DeadlineExceeded) && !wait.Interrupted(err) && !errors.Is(err, context.Canceled) {
			return err
		}
		if text := a.missingText(ctx, c, tp, t); text != "" {
			failed = append(failed, text)
		}
	}
	if len(failed) == 0 {
		fmt.Fprintf(a.Out, "Every bundle in scope (%d) holds the revocation; verifiers enforce it once they load that generation.\n", len(scope))
		return nil
	}
	gone := ""
	if err := c.Get(context.WithoutCancel(ctx), client.ObjectKeyFromObject(re), &v1alpha1.RevocationEntry{}); apierrors.IsNotFound(err) {
		gone = fmt.Sprintf(" RevocationEntry %s no longer exists: the operator deletes an entry once every token it could match has expired, so no bundle carries it.", re.Name)
	}
	return fmt.Errorf("timed out waiting for the bundles: %s.%s The entry is recorded; the operator renders it when it runs (kubectl keyward status shows what is missing)",
		strings.Join(failed, "; "), gone)
}

// missingText says what a policy's bundle holds once the wait has ended; "" when it
// holds the target after all.
func (a *app) missingText(ctx context.Context, c client.Client, tp *v1alpha1.TokenPolicy, t target) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	fresh := &v1alpha1.TokenPolicy{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(tp), fresh); err == nil {
		tp = fresh
	}
	var s string
	switch b, err := readBundle(ctx, c, tp); {
	case err != nil:
		s = fmt.Sprintf("TokenPolicy %s: %v", tp.Name, err)
	case t.heldBy(b):
		return ""
	default:
		s = fmt.Sprintf("TokenPolicy %s: bundle generation %d does not hold it", tp.Name, b.Generation)
	}
	if msg := readyMessage(tp.Status.Conditions); msg != "" {
		s += " (not Ready: " + msg + ")"
	}
	return s
}

// waitBundleHolds watches the policy's bundle ConfigMap until its decoded bundle holds t,
// and returns that bundle.
func (a *app) waitBundleHolds(ctx context.Context, tp *v1alpha1.TokenPolicy, t target) (*bundle.Bundle, error) {
	cs, err := a.clientset()
	if err != nil {
		return nil, err
	}
	name := bundleConfigMapName(tp)
	selector := fields.OneTermEqualSelector("metadata.name", name)
	// The informer below retries a forbidden list for ever: check the permission first.
	if _, err := cs.CoreV1().ConfigMaps(tp.Namespace).List(ctx, metav1.ListOptions{FieldSelector: selector.String(), Limit: 1}); err != nil {
		return nil, permissionError(err, "list", "configmaps", tp.Namespace, name, "revoke --wait (it watches the bundle ConfigMap)")
	}
	lw := cache.NewListWatchFromClient(cs.CoreV1().RESTClient(), "configmaps", tp.Namespace, selector)
	var held *bundle.Bundle
	check := func(obj any) bool {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok {
			return false
		}
		b, err := decodeBundle(cm)
		if err != nil {
			return false // a bundle readers refuse is not in force; keep waiting
		}
		if t.heldBy(b) {
			held = b
			return true
		}
		return false
	}
	_, err = watchtools.UntilWithSync(ctx, lw, &corev1.ConfigMap{},
		func(store cache.Store) (bool, error) {
			obj, ok, err := store.GetByKey(tp.Namespace + "/" + name)
			if err != nil || !ok {
				return false, err
			}
			return check(obj), nil
		},
		func(ev watch.Event) (bool, error) {
			switch ev.Type {
			case watch.Added, watch.Modified:
				return check(ev.Object), nil
			}
			return false, nil
		})
	if err != nil {
		return nil, err
	}
	return held, nil
}

// longestLifetime is the longest a subject or client token can live under the policies in
// scope, refresh tokens and leeway included (as the operator computes an entry's expiry;
// with no policy, the API defaults).
func longestLifetime(scope []v1alpha1.TokenPolicy) time.Duration {
	or := func(d metav1.Duration, def time.Duration) time.Duration {
		if d.Duration <= 0 {
			return def
		}
		return d.Duration
	}
	if len(scope) == 0 {
		scope = []v1alpha1.TokenPolicy{{}}
	}
	var longest time.Duration
	for _, tp := range scope {
		s := &tp.Spec
		d := max(or(s.AccessToken.TTL, 10*time.Minute), or(s.RefreshToken.TTL, 720*time.Hour)) + or(s.Leeway, 30*time.Second)
		longest = max(longest, d)
	}
	return longest
}
