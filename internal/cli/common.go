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
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/bundle"
)

// Output formats of -o.
const (
	outputTable = "table"
	outputText  = "text"
	outputYAML  = "yaml"
	outputJSON  = "json"
)

// writeStructured prints v as YAML or JSON.
func writeStructured(w io.Writer, format string, v any) error {
	switch format {
	case outputJSON:
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case outputYAML:
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return fmt.Errorf("unknown output format %q", format)
}

// checkOutput validates -o.
func checkOutput(format string, allowed ...string) error {
	if !slices.Contains(allowed, format) {
		return fmt.Errorf("--output must be one of %s, not %q", strings.Join(allowed, ", "), format)
	}
	return nil
}

// newTable is a kubectl-like column writer.
func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 8, 3, ' ', 0) }

// relative says how far t is from now: "5m ago", "in 29d", "-" for the zero time.
func relative(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now)
	if d > -time.Second && d < time.Second {
		return "now" // API times have whole seconds: this is "now", give or take a truncation
	}
	if d >= 0 {
		return "in " + duration.HumanDuration(d)
	}
	return duration.HumanDuration(-d) + " ago"
}

func relativeMeta(now time.Time, t *metav1.Time) string {
	if t == nil {
		return "-"
	}
	return relative(now, t.Time)
}

// stamp is an absolute time for prose: RFC 3339 in UTC.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// dash prints "-" for an empty value in a table.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// readyOf summarises the Ready condition: "True", "False (Reason)", "Unknown".
func readyOf(conds []metav1.Condition) string {
	c := meta.FindStatusCondition(conds, v1alpha1.ConditionReady)
	switch {
	case c == nil:
		return "Unknown"
	case c.Status == metav1.ConditionTrue:
		return "True"
	default:
		return fmt.Sprintf("%s (%s)", c.Status, c.Reason)
	}
}

// readyMessage is the message of a Ready condition that is not True.
func readyMessage(conds []metav1.Condition) string {
	c := meta.FindStatusCondition(conds, v1alpha1.ConditionReady)
	if c == nil {
		return "no Ready condition yet: the operator has not reconciled it"
	}
	if c.Status == metav1.ConditionTrue {
		return ""
	}
	return c.Reason + ": " + c.Message
}

// permissionError explains a Forbidden error: which verb on which resource the user
// lacks, and why the command needs it. Other errors are wrapped as they are.
func permissionError(err error, verb, resource, namespace, name, why string) error {
	if !apierrors.IsForbidden(err) {
		if name != "" {
			return fmt.Errorf("reading %s %s/%s: %w", resource, namespace, name, err)
		}
		return fmt.Errorf("listing %s in %s: %w", resource, namespace, err)
	}
	what := resource
	if name != "" {
		what = fmt.Sprintf("%s %q", resource, name)
	}
	return fmt.Errorf("permission denied: %s needs %q on %s in namespace %q, which you do not have. "+
		"Ask for a Role that grants verbs [%s] on resources [%s]%s in that namespace (API server: %w)",
		why, verb, what, namespace, verb, resource, resourceNamesHint(name), err)
}

func resourceNamesHint(name string) string {
	if name == "" {
		return ""
	}
	return fmt.Sprintf(" (resourceNames [%s] is enough)", name)
}

// bundleConfigMapName is the policy's bundle ConfigMap.
func bundleConfigMapName(tp *v1alpha1.TokenPolicy) string {
	if tp.Status.BundleConfigMapName != "" {
		return tp.Status.BundleConfigMapName
	}
	return tp.Name + "-bundle"
}

// jwksConfigMapName is the SigningKey's public JWKS ConfigMap.
func jwksConfigMapName(sk *v1alpha1.SigningKey) string {
	if sk.Status.JWKSConfigMapName != "" {
		return sk.Status.JWKSConfigMapName
	}
	return sk.Name + "-jwks"
}

// secretName is the SigningKey's private key Secret.
func secretName(sk *v1alpha1.SigningKey) string {
	if sk.Status.SecretName != "" {
		return sk.Status.SecretName
	}
	return sk.Name + "-keys"
}

// decodeBundle decodes the bundle a ConfigMap holds, with the readers' own checks.
func decodeBundle(cm *corev1.ConfigMap) (*bundle.Bundle, error) {
	data, ok := cm.Data[bundle.DataKey]
	if !ok {
		return nil, fmt.Errorf("ConfigMap %s has no %s", cm.Name, bundle.DataKey)
	}
	b, err := bundle.Decode([]byte(data))
	if err != nil {
		return nil, fmt.Errorf("bundle ConfigMap %s: %w", cm.Name, err)
	}
	return b, nil
}

// readBundle reads and decodes a TokenPolicy's bundle ConfigMap.
func readBundle(ctx context.Context, c client.Reader, tp *v1alpha1.TokenPolicy) (*bundle.Bundle, error) {
	cm := &corev1.ConfigMap{}
	name := bundleConfigMapName(tp)
	if err := c.Get(ctx, client.ObjectKey{Namespace: tp.Namespace, Name: name}, cm); err != nil {
		if apierrors.IsNotFound(err) {
			msg := readyMessage(tp.Status.Conditions)
			if msg == "" {
				msg = "its status says Ready"
			}
			return nil, fmt.Errorf("TokenPolicy %s has no bundle ConfigMap %s yet (%s)", tp.Name, name, msg)
		}
		return nil, permissionError(err, "get", "configmaps", tp.Namespace, name, "reading the verifier bundle")
	}
	return decodeBundle(cm)
}

// trusts reports whether a TokenPolicy trusts a SigningKey.
func trusts(tp *v1alpha1.TokenPolicy, signingKey string) bool {
	return slices.Contains(tp.Spec.SigningKeys, signingKey)
}

// bundleKIDs are the kids of a bundle's JWKS.
func bundleKIDs(b *bundle.Bundle) []string {
	out := make([]string, 0, len(b.Keys))
	for _, k := range b.Keys {
		if kid, ok := k.KeyID(); ok {
			out = append(out, kid)
		}
	}
	return out
}

// confirm asks the user to type want before an emergency action. With yes it does not
// ask; without a terminal it refuses.
func (a *app) confirm(yes bool, what, want string) error {
	if yes {
		return nil
	}
	if !a.IsTerminal(a.In) {
		return fmt.Errorf("refusing to %s without confirmation: stdin is not a terminal. Re-run with --yes once you have read what will stop working", what)
	}
	fmt.Fprintf(a.ErrOut, "Type %q to %s, anything else to cancel: ", want, what)
	line, err := bufio.NewReader(a.In).ReadString('\n')
	if err != nil && line == "" {
		return fmt.Errorf("cancelled: no confirmation read (%w)", err)
	}
	if strings.TrimSpace(line) != want {
		return fmt.Errorf("cancelled: %q was not typed", want)
	}
	return nil
}
