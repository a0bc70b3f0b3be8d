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
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/mint"
)

// reservedClaims are set by mint's own flags, never by --claim.
var reservedClaims = []string{"iss", "aud", "sub", "exp", "iat", "nbf", "jti", "scope", "sid", "client_id"}

type mintOptions struct {
	policy    string
	subject   string
	scopes    []string
	ttl       time.Duration
	audience  string
	jti       string
	sid       string
	clientID  string
	claims    []string
	jsonClaim []string
	outFile   string
}

func newMintCommand(a *app) *cobra.Command {
	o := &mintOptions{}
	cmd := &cobra.Command{
		Use:   "mint --policy P --sub S [--scope S]... [--ttl D] [--claim K=V]...",
		Short: "Mint an access token for development and tests, signed by the policy's signing key",
		Long: `Mint an access token the way the token service does: signed with the active key of the
TokenPolicy's first SigningKey (read from its Secret), iss the policy's issuer, aud its
first audience (or --aud), typ the policy's access-token type, iat now, exp after --ttl
(default: the policy's access-token TTL), a random jti unless --jti is given.

This is for development and tests: it needs "get" on the SigningKey's Secret, which holds
the private keys, and says which permission is missing when you do not have it. Production
tokens come from the token service.

The token is printed on stdout (or written to --out with mode 0600) and nothing else is: a
summary goes to stderr. It is a bearer credential; do not paste it in tickets or chat.`,
		Example: `  kubectl keyward mint --policy web --sub alice --scope "orders:read orders:write" > alice.jwt
  kubectl keyward mint --policy web --sub alice --sid s-7f3e --ttl 2m --claim email=alice@example.com
  kubectl keyward mint --policy web --sub batch --client-id billing --claim-json 'roles=["admin"]' --out batch.jwt`,
		Args:              cobra.NoArgs,
		ValidArgsFunction: noArgsCompletion,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.mint(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.policy, "policy", "", "TokenPolicy to mint for (required).")
	f.StringVar(&o.subject, "sub", "", "Subject (sub claim, required).")
	f.StringArrayVar(&o.scopes, "scope", nil, "Scope(s), space-separated or repeated (scope claim).")
	f.DurationVar(&o.ttl, "ttl", 0, "Lifetime (default: the policy's accessToken.ttl).")
	f.StringVar(&o.audience, "aud", "", "Audience (default: the policy's first audience).")
	f.StringVar(&o.jti, "jti", "", "Token id (default: random).")
	f.StringVar(&o.sid, "sid", "", "Session id (sid claim).")
	f.StringVar(&o.clientID, "client-id", "", "OAuth client id (client_id claim).")
	f.StringArrayVar(&o.claims, "claim", nil, "Extra claim NAME=VALUE, a string (repeatable).")
	f.StringArrayVar(&o.jsonClaim, "claim-json", nil, "Extra claim NAME=JSON, any JSON value (repeatable).")
	f.StringVar(&o.outFile, "out", "", "Write the token to this file (mode 0600) instead of stdout.")
	_ = cmd.MarkFlagRequired("policy")
	_ = cmd.MarkFlagRequired("sub")
	_ = cmd.RegisterFlagCompletionFunc("policy", a.completeTokenPolicies)
	return cmd
}

// mintClaims builds the claims of a token; it is pure so that tests pin it.
func mintClaims(o *mintOptions, tp *v1alpha1.TokenPolicy, now time.Time, jti string) (map[string]any, error) {
	ttl := o.ttl
	if ttl == 0 {
		ttl = cmp.Or(tp.Spec.AccessToken.TTL.Duration, 10*time.Minute)
	}
	if ttl < time.Second {
		return nil, fmt.Errorf("--ttl %s: must be at least 1s", ttl)
	}
	aud := o.audience
	if aud == "" && len(tp.Spec.Audiences) > 0 {
		aud = tp.Spec.Audiences[0]
	}
	claims := map[string]any{
		"iss": tp.Spec.Issuer, "aud": aud, "sub": o.subject, "jti": jti,
		"iat": now.Unix(), "exp": now.Add(ttl).Unix(),
	}
	if scope := strings.Join(strings.Fields(strings.Join(o.scopes, " ")), " "); scope != "" {
		claims["scope"] = scope
	}
	if o.sid != "" {
		claims["sid"] = o.sid
	}
	if o.clientID != "" {
		claims["client_id"] = o.clientID
	}
	add := func(kv string, parse bool) error {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("claim %q: want NAME=VALUE", kv)
		}
		if slices.Contains(reservedClaims, k) {
			return fmt.Errorf("claim %q is set by mint's own flags (--sub, --scope, --ttl, --aud, --jti, --sid, --client-id)", k)
		}
		if _, dup := claims[k]; dup {
			return fmt.Errorf("claim %q is given twice", k)
		}
		if !parse {
			claims[k] = v
			return nil
		}
		var val any
		if err := json.Unmarshal([]byte(v), &val); err != nil {
			return fmt.Errorf("claim %q: the value is not JSON: %w", k, err)
		}
		claims[k] = val
		return nil
	}
	for _, kv := range o.claims {
		if err := add(kv, false); err != nil {
			return nil, err
		}
	}
	for _, kv := range o.jsonClaim {
		if err := add(kv, true); err != nil {
			return nil, err
		}
	}
	return claims, nil
}

func (a *app) mint(ctx context.Context, o *mintOptions) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	ns, err := a.namespace()
	if err != nil {
		return err
	}
	tp := &v1alpha1.TokenPolicy{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: o.policy}, tp); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("TokenPolicy %q not found in namespace %q", o.policy, ns)
		}
		return permissionError(err, "get", "tokenpolicies.auth.keyward.dev", ns, o.policy, "mint")
	}
	skName := tp.Spec.SigningKeys[0]
	sk := &v1alpha1.SigningKey{}
	sk.Name, sk.Namespace = skName, ns
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: skName}, sk); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("TokenPolicy %s signs with SigningKey %q, which does not exist in namespace %q", tp.Name, skName, ns)
		}
		if !apierrors.IsForbidden(err) {
			return fmt.Errorf("reading SigningKey %s: %w", skName, err)
		}
		// The Secret name is deterministic; the SigningKey only confirms it.
	}
	secret := &corev1.Secret{}
	name := secretName(sk)
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("SigningKey %s has no Secret %s yet: %s", skName, name, dash(readyMessage(sk.Status.Conditions)))
		}
		return permissionError(err, "get", "secrets", ns, name,
			fmt.Sprintf("mint reads the private signing key of SigningKey %s, so it", skName))
	}
	signer, err := mint.FromSecret(secret.Data)
	if err != nil {
		return fmt.Errorf("the Secret %s of SigningKey %s: %w", name, skName, err)
	}
	jti := o.jti
	if jti == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		jti = hex.EncodeToString(b)
	}
	now := a.Clock.Now()
	claims, err := mintClaims(o, tp, now, jti)
	if err != nil {
		return err
	}
	tok, err := signer.Sign(claims, cmp.Or(tp.Spec.AccessToken.Type, "at+jwt"))
	if err != nil {
		return err
	}
	if o.outFile != "" {
		if err := os.WriteFile(o.outFile, []byte(tok+"\n"), 0o600); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(a.Out, tok)
	}
	exp := time.Unix(claims["exp"].(int64), 0)
	fmt.Fprintf(a.ErrOut, "Minted a token for sub %q (jti %s) with key %s of SigningKey %s/%s for TokenPolicy %s; it expires %s (%s). It is a bearer credential: keep it out of tickets and chat.\n",
		o.subject, jti, signer.KID(), ns, skName, tp.Name, stamp(exp), relative(now, exp))
	return nil
}
