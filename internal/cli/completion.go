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
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward-dev/keyward/api/v1alpha1"
)

// Shell completion. Cobra adds the `completion` command (bash, zsh, fish, powershell)
// for the standalone kubectl-keyward binary; for `kubectl keyward <TAB>`, kubectl (1.26+)
// runs the kubectl_complete-keyward executable, which calls `kubectl-keyward __complete`.
// Names are completed from the cluster: namespaces, SigningKeys, TokenPolicies and kids.

// completionTimeout bounds the API calls of one completion: a shell must not hang.
const completionTimeout = 5 * time.Second

type completeFunc = func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective)

func fixedCompletions(values ...string) completeFunc {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}

func (a *app) registerFlagCompletions(root *cobra.Command) {
	_ = root.RegisterFlagCompletionFunc("namespace", func(cmd *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
		return a.completeNames(cmd, prefix, false, func(ctx context.Context, c client.Client, _ string) ([]string, error) {
			var list corev1.NamespaceList
			if err := c.List(ctx, &list); err != nil {
				return nil, err
			}
			out := make([]string, 0, len(list.Items))
			for _, n := range list.Items {
				out = append(out, n.Name)
			}
			return out, nil
		})
	})
}

// completeNames runs list with a bounded context and filters by prefix.
func (a *app) completeNames(cmd *cobra.Command, prefix string, namespaced bool, list func(context.Context, client.Client, string) ([]string, error)) ([]string, cobra.ShellCompDirective) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	c, err := a.client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ns := ""
	if namespaced {
		if ns, err = a.namespace(); err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
	}
	names, err := list(ctx, c, ns)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	out := names[:0]
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), cobra.ShellCompDirectiveNoFileComp
}

// completeSigningKeys completes the first argument with SigningKey names.
func (a *app) completeSigningKeys(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.completeNames(cmd, prefix, true, func(ctx context.Context, c client.Client, ns string) ([]string, error) {
		var list v1alpha1.SigningKeyList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		out := make([]string, 0, len(list.Items))
		for _, sk := range list.Items {
			out = append(out, sk.Name)
		}
		return out, nil
	})
}

// completeTokenPolicies completes --policy with TokenPolicy names.
func (a *app) completeTokenPolicies(cmd *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
	return a.completeNames(cmd, prefix, true, func(ctx context.Context, c client.Client, ns string) ([]string, error) {
		var list v1alpha1.TokenPolicyList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		out := make([]string, 0, len(list.Items))
		for _, tp := range list.Items {
			out = append(out, tp.Name)
		}
		return out, nil
	})
}

// completeKeyIDs completes `revoke key` with the kids the SigningKeys publish.
func (a *app) completeKeyIDs(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.completeNames(cmd, prefix, true, func(ctx context.Context, c client.Client, ns string) ([]string, error) {
		var list v1alpha1.SigningKeyList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		var out []string
		for _, sk := range list.Items {
			for _, k := range sk.Status.Keys {
				out = append(out, k.KeyID+"\t"+string(k.State)+" key of SigningKey "+sk.Name)
			}
		}
		return out, nil
	})
}

func noArgsCompletion(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveNoFileComp
}
