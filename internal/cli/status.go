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
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward-dev/keyward/api/v1alpha1"
)

// propagationGrace is how long a new revocation or spec change may be missing from a
// bundle before status calls it out: the operator renders within about a second.
const propagationGrace = 10 * time.Second

type statusReport struct {
	Time          metav1.Time         `json:"time"`
	Namespace     string              `json:"namespace,omitempty"`
	SigningKeys   []signingKeyStatus  `json:"signingKeys"`
	TokenPolicies []tokenPolicyStatus `json:"tokenPolicies"`
	Revocations   revocationsStatus   `json:"revocations"`
	// Notes are what needs attention: resources not Ready, requests the operator has not
	// handled, revocations missing from a bundle.
	Notes []string `json:"notes,omitempty"`
}

type signingKeyStatus struct {
	Namespace        string                `json:"namespace"`
	Name             string                `json:"name"`
	Algorithm        string                `json:"algorithm"`
	Ready            string                `json:"ready"`
	ActiveKeyID      string                `json:"activeKeyID,omitempty"`
	Keys             []v1alpha1.KeyStatus  `json:"keys"`
	NextRotationTime *metav1.Time          `json:"nextRotationTime,omitempty"`
	LastRotationTime *metav1.Time          `json:"lastRotationTime,omitempty"`
	Rotation         v1alpha1.RotationSpec `json:"rotation"`
	JWKSConfigMap    string                `json:"jwksConfigMap"`
	TokenPolicies    []string              `json:"tokenPolicies,omitempty"`
}

type tokenPolicyStatus struct {
	Namespace        string   `json:"namespace"`
	Name             string   `json:"name"`
	Issuer           string   `json:"issuer"`
	Audiences        []string `json:"audiences"`
	Ready            string   `json:"ready"`
	SigningKeys      []string `json:"signingKeys"`
	SigningKeyID     string   `json:"signingKeyID,omitempty"`
	BundleConfigMap  string   `json:"bundleConfigMap"`
	BundleGeneration int64    `json:"bundleGeneration"`
	BundleHash       string   `json:"bundleHash,omitempty"`
	// KeyIDs and Revocations are read from the bundle document itself when the
	// ConfigMap is readable, else from the TokenPolicy status.
	KeyIDs      []string `json:"keyIDs,omitempty"`
	Revocations int      `json:"revocations"`
	// Source says where the bundle fields come from: "bundle" or "status".
	Source string `json:"source"`
}

type revocationsStatus struct {
	Active  int                     `json:"active"`
	ByKind  map[string]int          `json:"byKind"`
	Entries []revocationEntryStatus `json:"entries"`
}

type revocationEntryStatus struct {
	Namespace    string       `json:"namespace"`
	Name         string       `json:"name"`
	Kind         string       `json:"kind"`
	Value        string       `json:"value"`
	IssuedBefore *metav1.Time `json:"issuedBefore,omitempty"`
	Reason       string       `json:"reason"`
	Policies     []string     `json:"policies,omitempty"`
	CreatedAt    metav1.Time  `json:"createdAt"`
	ExpiresAt    *metav1.Time `json:"expiresAt,omitempty"`
	Processed    bool         `json:"processed"`
	// CreatedBy is the app.kubernetes.io/created-by label: kubectl-keyward, keyward-issuer, ...
	CreatedBy string `json:"createdBy,omitempty"`
}

func newStatusCommand(a *app) *cobra.Command {
	var (
		allNamespaces bool
		output        string
		maxEntries    int
	)
	cmd := &cobra.Command{
		Use:   "status [-n NAMESPACE | -A] [-o table|yaml|json]",
		Short: "Show signing keys, token policies with their bundles, and active revocations",
		Long: `Show what Keyward enforces in a namespace (or all of them):

  - every SigningKey with each of its keys (kid, state, when it was published, activated,
    retired) and the next rotation;
  - every TokenPolicy with its verifier bundle: the generation and content hash of the
    bundle ConfigMap the sidecars load, its keys and how many revocations it holds;
  - the active revocations by kind (jti, sub, sid, kid, client_id) and when they expire.

Notes at the end say what needs attention: resources that are not Ready, requests the
operator has not handled yet, and revocations that a bundle does not hold yet (the sign of
an operator that is down).`,
		Example: `  # The current namespace
  kubectl keyward status

  # Every namespace, as YAML for scripts
  kubectl keyward status -A -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, outputTable, outputYAML, outputJSON); err != nil {
				return err
			}
			rep, err := a.status(cmd.Context(), allNamespaces)
			if err != nil {
				return err
			}
			if output != outputTable {
				return writeStructured(a.Out, output, rep)
			}
			return printStatus(a.Out, rep, allNamespaces, maxEntries)
		},
	}
	cmd.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "Show every namespace.")
	cmd.Flags().StringVarP(&output, "output", "o", outputTable, "Output format: table, yaml or json.")
	cmd.Flags().IntVar(&maxEntries, "max-revocations", 50, "Revocation entries listed in the table (all are counted; yaml and json list all).")
	_ = cmd.RegisterFlagCompletionFunc("output", fixedCompletions(outputTable, outputYAML, outputJSON))
	return cmd
}

func (a *app) status(ctx context.Context, allNamespaces bool) (*statusReport, error) {
	c, err := a.client()
	if err != nil {
		return nil, err
	}
	ns := ""
	if !allNamespaces {
		if ns, err = a.namespace(); err != nil {
			return nil, err
		}
	}
	now := a.Clock.Now()
	rep := &statusReport{Time: metav1.NewTime(now.UTC().Truncate(time.Second)), Namespace: ns, Revocations: revocationsStatus{ByKind: map[string]int{}}}
	var sks v1alpha1.SigningKeyList
	if err := c.List(ctx, &sks, client.InNamespace(ns)); err != nil {
		return nil, permissionError(err, "list", "signingkeys.auth.keyward.dev", ns, "", "status")
	}
	var tps v1alpha1.TokenPolicyList
	if err := c.List(ctx, &tps, client.InNamespace(ns)); err != nil {
		return nil, permissionError(err, "list", "tokenpolicies.auth.keyward.dev", ns, "", "status")
	}
	var res v1alpha1.RevocationEntryList
	if err := c.List(ctx, &res, client.InNamespace(ns)); err != nil {
		return nil, permissionError(err, "list", "revocationentries.auth.keyward.dev", ns, "", "status")
	}
	bundles, berr := a.listBundles(ctx, c, ns)
	if berr != nil {
		rep.Notes = append(rep.Notes, fmt.Sprintf("Bundle ConfigMaps are not readable (%v): bundle generation and hash come from the TokenPolicy status, unverified.", berr))
	}
	for i := range sks.Items {
		rep.SigningKeys = append(rep.SigningKeys, signingKeyReport(&sks.Items[i], tps.Items, &rep.Notes))
	}
	for i := range tps.Items {
		tp := &tps.Items[i]
		rep.TokenPolicies = append(rep.TokenPolicies, tokenPolicyReport(tp, bundles, res.Items, now, &rep.Notes))
	}
	for i := range res.Items {
		re := &res.Items[i]
		e := revocationEntryReport(re)
		if exp := expiresOf(re); !exp.IsZero() && !now.Before(exp) {
			continue // expired: the operator deletes it and no bundle holds it any more
		}
		if !processed(re) && now.Sub(re.CreationTimestamp.Time) > propagationGrace {
			rep.Notes = append(rep.Notes, fmt.Sprintf("RevocationEntry %s/%s (%s) was created %s and is not processed yet: is the operator running?",
				re.Namespace, re.Name, e.Kind+"="+e.Value, relative(now, re.CreationTimestamp.Time)))
		}
		rep.Revocations.Entries = append(rep.Revocations.Entries, e)
		rep.Revocations.ByKind[e.Kind]++
		rep.Revocations.Active++
	}
	slices.SortStableFunc(rep.Revocations.Entries, func(x, y revocationEntryStatus) int {
		return cmp.Or(cmp.Compare(slices.Index(kinds, x.Kind), slices.Index(kinds, y.Kind)),
			cmp.Compare(x.Namespace, y.Namespace), x.CreatedAt.Compare(y.CreatedAt.Time), cmp.Compare(x.Name, y.Name))
	})
	return rep, nil
}

// listBundles reads every bundle ConfigMap in scope, keyed by namespace/name.
func (a *app) listBundles(ctx context.Context, c client.Reader, ns string) (map[string]*corev1.ConfigMap, error) {
	var cms corev1.ConfigMapList
	if err := c.List(ctx, &cms, client.InNamespace(ns), client.MatchingLabels{
		v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelComponent: "bundle",
	}); err != nil {
		return nil, err
	}
	out := make(map[string]*corev1.ConfigMap, len(cms.Items))
	for i := range cms.Items {
		out[cms.Items[i].Namespace+"/"+cms.Items[i].Name] = &cms.Items[i]
	}
	return out, nil
}

func signingKeyReport(sk *v1alpha1.SigningKey, policies []v1alpha1.TokenPolicy, notes *[]string) signingKeyStatus {
	keys := slices.Clone(sk.Status.Keys)
	slices.SortStableFunc(keys, func(x, y v1alpha1.KeyStatus) int {
		return cmp.Or(cmp.Compare(stateRank(x.State), stateRank(y.State)), y.PublishedAt.Compare(x.PublishedAt.Time))
	})
	s := signingKeyStatus{
		Namespace: sk.Namespace, Name: sk.Name, Algorithm: string(cmp.Or(sk.Spec.Algorithm, v1alpha1.ES256)),
		Ready: readyOf(sk.Status.Conditions), ActiveKeyID: sk.Status.ActiveKeyID, Keys: keys,
		NextRotationTime: sk.Status.NextRotationTime, LastRotationTime: sk.Status.LastRotationTime,
		Rotation: sk.Spec.Rotation, JWKSConfigMap: jwksConfigMapName(sk),
	}
	for i := range policies {
		if policies[i].Namespace == sk.Namespace && trusts(&policies[i], sk.Name) {
			s.TokenPolicies = append(s.TokenPolicies, policies[i].Name)
		}
	}
	if msg := readyMessage(sk.Status.Conditions); msg != "" {
		*notes = append(*notes, fmt.Sprintf("SigningKey %s/%s is not Ready: %s", sk.Namespace, sk.Name, msg))
	}
	if sk.Status.ObservedGeneration != sk.Generation {
		*notes = append(*notes, fmt.Sprintf("SigningKey %s/%s: spec generation %d is not handled yet (the operator last handled %d); a rotation request may be waiting: is the operator running?",
			sk.Namespace, sk.Name, sk.Generation, sk.Status.ObservedGeneration))
	}
	return s
}

func stateRank(s v1alpha1.KeyState) int {
	switch s {
	case v1alpha1.KeyActive:
		return 0
	case v1alpha1.KeyPending:
		return 1
	default:
		return 2
	}
}

func tokenPolicyReport(tp *v1alpha1.TokenPolicy, bundles map[string]*corev1.ConfigMap, entries []v1alpha1.RevocationEntry, now time.Time, notes *[]string) tokenPolicyStatus {
	s := tokenPolicyStatus{
		Namespace: tp.Namespace, Name: tp.Name, Issuer: tp.Spec.Issuer, Audiences: tp.Spec.Audiences,
		Ready: readyOf(tp.Status.Conditions), SigningKeys: tp.Spec.SigningKeys, SigningKeyID: tp.Status.SigningKeyID,
		BundleConfigMap: bundleConfigMapName(tp), BundleGeneration: tp.Status.BundleGeneration, BundleHash: tp.Status.BundleHash,
		Revocations: int(tp.Status.Revocations), Source: "status",
	}
	if msg := readyMessage(tp.Status.Conditions); msg != "" {
		*notes = append(*notes, fmt.Sprintf("TokenPolicy %s/%s is not Ready: %s", tp.Namespace, tp.Name, msg))
	}
	if tp.Status.ObservedGeneration != tp.Generation {
		*notes = append(*notes, fmt.Sprintf("TokenPolicy %s/%s: spec generation %d is not rendered yet (the operator last handled %d): is the operator running?",
			tp.Namespace, tp.Name, tp.Generation, tp.Status.ObservedGeneration))
	}
	if bundles == nil {
		return s
	}
	cm, ok := bundles[tp.Namespace+"/"+s.BundleConfigMap]
	if !ok {
		s.BundleGeneration, s.BundleHash, s.Source = 0, "", "bundle"
		return s
	}
	b, err := decodeBundle(cm)
	if err != nil {
		*notes = append(*notes, fmt.Sprintf("TokenPolicy %s/%s: the bundle in ConfigMap %s is refused by readers: %v", tp.Namespace, tp.Name, cm.Name, err))
		return s
	}
	s.Source, s.BundleGeneration, s.BundleHash = "bundle", b.Generation, b.Hash
	s.KeyIDs, s.Revocations = bundleKIDs(b), b.Content.Revocations.Len()
	var missing []string
	oldest := time.Time{}
	for i := range entries {
		re := &entries[i]
		if re.Namespace != tp.Namespace || !inScope(re, tp.Name) || now.Sub(re.CreationTimestamp.Time) <= propagationGrace {
			continue
		}
		if exp := expiresOf(re); !exp.IsZero() && !now.Before(exp) {
			continue
		}
		if t := targetOf(re); !t.heldBy(b) {
			missing = append(missing, t.String())
			if oldest.IsZero() || re.CreationTimestamp.Time.Before(oldest) {
				oldest = re.CreationTimestamp.Time
			}
		}
	}
	if len(missing) > 0 {
		*notes = append(*notes, fmt.Sprintf("TokenPolicy %s/%s: bundle generation %d does not hold %d revocation(s) in its scope (%s; the oldest was created %s): the operator has not rendered them; is it running?",
			tp.Namespace, tp.Name, b.Generation, len(missing), abbreviate(missing, 3), relative(now, oldest)))
	}
	return s
}

func revocationEntryReport(re *v1alpha1.RevocationEntry) revocationEntryStatus {
	t := targetOf(re)
	e := revocationEntryStatus{
		Namespace: re.Namespace, Name: re.Name, Kind: t.Kind, Value: t.Value, Reason: re.Spec.Reason,
		Policies: re.Spec.Policies, CreatedAt: re.CreationTimestamp, ExpiresAt: re.Status.ExpiresAt, Processed: processed(re),
		CreatedBy: re.Labels[LabelCreatedBy],
	}
	if t.IssuedBefore != 0 {
		ib := metav1.Unix(t.IssuedBefore, 0).Rfc3339Copy()
		ib.Time = ib.UTC()
		e.IssuedBefore = &ib
	}
	return e
}

func abbreviate(list []string, n int) string {
	if len(list) <= n {
		return strings.Join(list, ", ")
	}
	return strings.Join(list[:n], ", ") + fmt.Sprintf(" and %d more", len(list)-n)
}

// shortHash is a content hash cut to what a human compares: "sha256:91d4b0737d2a".
func shortHash(h string) string {
	if len(h) > len("sha256:")+12 {
		return h[:len("sha256:")+12]
	}
	return dash(h)
}

// truncate cuts a value for a table cell.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func printStatus(w io.Writer, rep *statusReport, allNamespaces bool, maxEntries int) error {
	now := rep.Time.Time
	where := "namespace " + rep.Namespace
	if allNamespaces {
		where = "any namespace"
	}
	nsCol := func(ns string) string {
		if allNamespaces {
			return ns + "\t"
		}
		return ""
	}
	nsHead := ""
	if allNamespaces {
		nsHead = "NAMESPACE\t"
	}

	fmt.Fprintln(w, "SIGNING KEYS")
	if len(rep.SigningKeys) == 0 {
		fmt.Fprintf(w, "  No SigningKeys in %s.\n", where)
	} else {
		tw := newTable(w)
		fmt.Fprintln(tw, nsHead+"NAME\tALG\tREADY\tKID\tSTATE\tPUBLISHED\tACTIVATED\tRETIRED\tNEXT ROTATION")
		for _, sk := range rep.SigningKeys {
			if len(sk.Keys) == 0 {
				fmt.Fprintf(tw, "%s%s\t%s\t%s\t-\t-\t-\t-\t-\t%s\n", nsCol(sk.Namespace), sk.Name, sk.Algorithm, sk.Ready, relativeMeta(now, sk.NextRotationTime))
				continue
			}
			for i, k := range sk.Keys {
				name, alg, ready, next := "", "", "", ""
				if i == 0 {
					name, alg, ready, next = sk.Name, sk.Algorithm, sk.Ready, relativeMeta(now, sk.NextRotationTime)
				}
				ns := nsCol("")
				if i == 0 {
					ns = nsCol(sk.Namespace)
				}
				fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ns, name, alg, ready, k.KeyID, k.State,
					relative(now, k.PublishedAt.Time), relativeMeta(now, k.ActivatedAt), relativeMeta(now, k.RetiredAt), next)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintln(w, "\nTOKEN POLICIES")
	if len(rep.TokenPolicies) == 0 {
		fmt.Fprintf(w, "  No TokenPolicies in %s.\n", where)
	} else {
		tw := newTable(w)
		fmt.Fprintln(tw, nsHead+"NAME\tISSUER\tREADY\tSIGNING KEYS\tBUNDLE\tGENERATION\tHASH\tKEYS\tREVOCATIONS")
		for _, tp := range rep.TokenPolicies {
			keys := "-"
			if tp.Source == "bundle" && tp.BundleGeneration > 0 {
				keys = fmt.Sprint(len(tp.KeyIDs))
			}
			gen := "-"
			if tp.BundleGeneration > 0 {
				gen = fmt.Sprint(tp.BundleGeneration)
			}
			fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", nsCol(tp.Namespace), tp.Name, tp.Issuer, tp.Ready,
				strings.Join(tp.SigningKeys, ","), tp.BundleConfigMap, gen, shortHash(tp.BundleHash), keys, tp.Revocations)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	r := rep.Revocations
	var counts []string
	for _, k := range kinds {
		if n := r.ByKind[k]; n > 0 {
			counts = append(counts, fmt.Sprintf("%s %d", k, n))
		}
	}
	if r.Active == 0 {
		fmt.Fprintf(w, "\nREVOCATIONS\n  No active revocations in %s.\n", where)
	} else {
		fmt.Fprintf(w, "\nREVOCATIONS: %d active (%s)\n", r.Active, strings.Join(counts, ", "))
		tw := newTable(w)
		fmt.Fprintln(tw, nsHead+"NAME\tKIND\tVALUE\tISSUED BEFORE\tPOLICIES\tREASON\tAGE\tEXPIRES")
		for i, e := range r.Entries {
			if maxEntries >= 0 && i >= maxEntries {
				break
			}
			ib := "-"
			if e.IssuedBefore != nil {
				ib = relative(now, e.IssuedBefore.Time)
			}
			policies := "all"
			if len(e.Policies) > 0 {
				policies = strings.Join(e.Policies, ",")
			}
			expires := relativeMeta(now, e.ExpiresAt)
			if !e.Processed {
				expires = "pending"
			}
			fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", nsCol(e.Namespace), e.Name, e.Kind, truncate(e.Value, 48), ib, policies,
				truncate(e.Reason, 40), strings.TrimSuffix(relative(now, e.CreatedAt.Time), " ago"), expires)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if maxEntries >= 0 && len(r.Entries) > maxEntries {
			fmt.Fprintf(w, "  … and %d more (--max-revocations, or kubectl get revocationentries)\n", len(r.Entries)-maxEntries)
		}
	}

	if len(rep.Notes) > 0 {
		fmt.Fprintln(w, "\nNOTES")
		for _, n := range rep.Notes {
			fmt.Fprintln(w, "  ! "+n)
		}
	}
	return nil
}
