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
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/bundle"
	"github.com/keyward-dev/keyward/internal/policy"
	"github.com/keyward-dev/keyward/internal/sidecar"
	"github.com/keyward-dev/keyward/internal/verify"
)

// maxTokenInput bounds what inspect reads from stdin.
const maxTokenInput = 64 << 10

type inspectOptions struct {
	policy string
	output string
}

// inspectReport is the -o json form of inspect. It never holds the token or its
// signature: the token is named by the first 12 hex digits of its SHA-256, as in the
// verifier's audit records.
type inspectReport struct {
	TokenSHA256 string          `json:"tokenSHA256"`
	TokenBytes  int             `json:"tokenBytes"`
	Header      json.RawMessage `json:"header,omitempty"`
	Claims      json.RawMessage `json:"claims,omitempty"`
	DecodeError string          `json:"decodeError,omitempty"`
	Verdicts    []verdict       `json:"verdicts"`
}

// verdict is the decision of one TokenPolicy's bundle on the token.
type verdict struct {
	Policy           string   `json:"policy"`
	BundleConfigMap  string   `json:"bundleConfigMap"`
	BundleGeneration int64    `json:"bundleGeneration,omitempty"`
	BundleHash       string   `json:"bundleHash,omitempty"`
	Accepted         bool     `json:"accepted"`
	Reason           string   `json:"reason"`
	Detail           string   `json:"detail,omitempty"`
	Explanation      []string `json:"explanation,omitempty"`
	RevokedBy        []string `json:"revokedBy,omitempty"`
	Notes            []string `json:"notes,omitempty"`
}

func newInspectCommand(a *app) *cobra.Command {
	o := &inspectOptions{}
	cmd := &cobra.Command{
		Use:   "inspect [--policy P] (TOKEN | -)",
		Short: "Decode a token and say whether the cluster's verifiers accept it, and why not",
		Long: `Decode a JWT's header and claims, then verify it against the verifier bundle of a
TokenPolicy exactly as the sidecar does: the bundle ConfigMap is decoded with the readers'
own checks, compiled into the same verifier (keys, policy, revocation set) and the token
is verified with the same code. A rejection comes with its reason and an explanation:
expired, revoked (and by which RevocationEntry), unknown or withdrawn key, bad signature
(forged or altered), wrong audience or issuer, wrong typ, binding, ...

The token is a secret: pass it on stdin ("-", or no argument) rather than on the command
line. It is never printed, nor its signature; it is named by the first 12 hex digits of
its SHA-256, the token_sha256 of the verifier's audit records.

Without --policy, every TokenPolicy of the namespace whose issuer is the token's iss is
tried. The exit status is 0 when at least one policy accepts the token, 1 otherwise.`,
		Example: `  # From a file, without putting the token on the command line
  kubectl keyward inspect --policy web - < token.jwt

  # From the clipboard (Linux), trying every policy with the token's issuer
  xclip -o | kubectl keyward inspect -n shop

  # For scripts
  kubectl keyward inspect --policy web -o json - < token.jwt`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: noArgsCompletion,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(o.output, outputText, outputJSON); err != nil {
				return err
			}
			arg := "-"
			if len(args) == 1 {
				arg = args[0]
			}
			return a.inspect(cmd.Context(), arg, o)
		},
	}
	cmd.Flags().StringVar(&o.policy, "policy", "", "TokenPolicy whose bundle verifies the token (default: every policy of the namespace with the token's issuer).")
	cmd.Flags().StringVarP(&o.output, "output", "o", outputText, "Output format: text or json.")
	_ = cmd.RegisterFlagCompletionFunc("policy", a.completeTokenPolicies)
	_ = cmd.RegisterFlagCompletionFunc("output", fixedCompletions(outputText, outputJSON))
	return cmd
}

// decodedToken is what can be read from a token without verifying it.
type decodedToken struct {
	sha      string
	size     int
	header   json.RawMessage
	claims   json.RawMessage
	err      string
	iss      string
	kid      string
	iat, exp int64
	nbf      int64
}

func (a *app) readToken(arg string) (string, error) {
	tok := arg
	switch {
	case arg == "-" && a.IsTerminal(a.In):
		// Pasted on a terminal: one line, not echoed (screens get shared during incidents).
		fmt.Fprint(a.ErrOut, "Paste the token (it is not echoed), then press Enter: ")
		var line []byte
		var err error
		if f, ok := a.In.(*os.File); ok {
			line, err = term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(a.ErrOut)
		} else {
			var s string
			s, err = bufio.NewReader(io.LimitReader(a.In, maxTokenInput)).ReadString('\n')
			line = []byte(s)
			if errors.Is(err, io.EOF) {
				err = nil
			}
		}
		if err != nil {
			return "", fmt.Errorf("reading the token: %w", err)
		}
		tok = string(line)
	case arg == "-":
		b, err := io.ReadAll(io.LimitReader(a.In, maxTokenInput+1))
		if err != nil {
			return "", fmt.Errorf("reading the token from stdin: %w", err)
		}
		if len(b) > maxTokenInput {
			return "", fmt.Errorf("stdin holds more than %d bytes: not a token", maxTokenInput)
		}
		tok = string(b)
	default:
		fmt.Fprintln(a.ErrOut, "note: a token on the command line stays in shell history and the process list; pass it on stdin with \"-\" instead")
	}
	tok = strings.TrimSpace(tok)
	for _, scheme := range []string{"Bearer ", "DPoP "} {
		if len(tok) > len(scheme) && strings.EqualFold(tok[:len(scheme)], scheme) {
			tok = strings.TrimSpace(tok[len(scheme):])
		}
	}
	if tok == "" {
		return "", errors.New("no token: pass it on stdin (\"-\") or as the argument")
	}
	return tok, nil
}

// decodeToken reads header and claims leniently, for display; verification is strict.
func decodeToken(tok string) decodedToken {
	sum := sha256.Sum256([]byte(tok))
	d := decodedToken{sha: hex.EncodeToString(sum[:])[:12], size: len(tok)}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		d.err = fmt.Sprintf("not a compact JWS: %d dot-separated part(s), want 3", len(parts))
		return d
	}
	fail := func(format string, args ...any) {
		if d.err == "" { // the first problem is the one to show
			d.err = fmt.Sprintf(format, args...)
		}
	}
	part := func(s, what string) json.RawMessage {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
		if err != nil {
			fail("the %s is not base64url: %v", what, err)
			return nil
		}
		if !json.Valid(b) {
			fail("the %s is not JSON", what)
			return nil
		}
		var out bytes.Buffer
		_ = json.Compact(&out, b)
		return out.Bytes()
	}
	d.header = part(parts[0], "header")
	d.claims = part(parts[1], "payload")
	var h struct {
		KID any `json:"kid"`
	}
	if d.header != nil && json.Unmarshal(d.header, &h) == nil {
		d.kid, _ = h.KID.(string)
	}
	var c struct {
		Iss           any `json:"iss"`
		Iat, Exp, Nbf any
	}
	if d.claims != nil && json.Unmarshal(d.claims, &c) == nil {
		d.iss, _ = c.Iss.(string)
		d.iat, d.exp, d.nbf = numeric(c.Iat), numeric(c.Exp), numeric(c.Nbf)
	}
	return d
}

func numeric(v any) int64 {
	if f, ok := v.(float64); ok {
		return int64(f)
	}
	return 0
}

func (a *app) inspect(ctx context.Context, arg string, o *inspectOptions) error {
	tok, err := a.readToken(arg)
	if err != nil {
		return err
	}
	d := decodeToken(tok)
	c, err := a.client()
	if err != nil {
		return err
	}
	ns, err := a.namespace()
	if err != nil {
		return err
	}
	policies, err := a.inspectPolicies(ctx, c, ns, o.policy, d)
	if err != nil {
		return err
	}
	rep := inspectReport{TokenSHA256: d.sha, TokenBytes: d.size, Header: d.header, Claims: d.claims, DecodeError: d.err}
	accepted := false
	for i := range policies {
		v := a.verdictOf(ctx, c, &policies[i], tok, d)
		accepted = accepted || v.Accepted
		rep.Verdicts = append(rep.Verdicts, v)
	}
	if o.output == outputJSON {
		if err := writeStructured(a.Out, outputJSON, rep); err != nil {
			return err
		}
	} else {
		a.printInspect(rep, d)
	}
	if !accepted {
		return &ExitError{Code: 1}
	}
	return nil
}

// inspectPolicies is the named policy, or the namespace's policies with the token's issuer.
func (a *app) inspectPolicies(ctx context.Context, c client.Client, ns, name string, d decodedToken) ([]v1alpha1.TokenPolicy, error) {
	if name != "" {
		tp := &v1alpha1.TokenPolicy{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, tp); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("TokenPolicy %q not found in namespace %q", name, ns)
			}
			return nil, permissionError(err, "get", "tokenpolicies.auth.keyward.dev", ns, name, "inspect")
		}
		return []v1alpha1.TokenPolicy{*tp}, nil
	}
	if d.iss == "" {
		return nil, fmt.Errorf("the token has no readable iss claim (%s): name the TokenPolicy with --policy", dash(d.err))
	}
	var list v1alpha1.TokenPolicyList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, permissionError(err, "list", "tokenpolicies.auth.keyward.dev", ns, "", "inspect without --policy")
	}
	var others []string
	var match []v1alpha1.TokenPolicy
	for _, tp := range list.Items {
		if tp.Spec.Issuer == d.iss {
			match = append(match, tp)
		} else {
			others = append(others, fmt.Sprintf("%s (%s)", tp.Name, tp.Spec.Issuer))
		}
	}
	if len(match) == 0 {
		return nil, fmt.Errorf("no TokenPolicy of namespace %q has the token's issuer %q (policies here: %s): use -n or --policy",
			ns, d.iss, dash(strings.Join(others, ", ")))
	}
	return match, nil
}

// verdictOf verifies the token against the policy's bundle, as the sidecar does.
func (a *app) verdictOf(ctx context.Context, c client.Client, tp *v1alpha1.TokenPolicy, tok string, d decodedToken) verdict {
	v := verdict{Policy: tp.Namespace + "/" + tp.Name, BundleConfigMap: bundleConfigMapName(tp)}
	b, err := readBundle(ctx, c, tp)
	if err != nil {
		v.Reason, v.Detail = "no_bundle", err.Error()
		v.Explanation = []string{"A sidecar of this policy has no bundle to verify with: it is not ready and rejects every request (HTTP 503)."}
		return v
	}
	v.BundleGeneration, v.BundleHash = b.Generation, b.Hash
	st, err := sidecar.Compile(b, 0, a.Clock)
	if err != nil {
		v.Reason, v.Detail = "bundle_refused", err.Error()
		v.Explanation = []string{"Sidecars refuse this bundle and keep the previous one in force; this command cannot verify against that one."}
		return v
	}
	claims, err := st.Verifier.Verify(tok)
	if err != nil {
		var ve *verify.Error
		if !errors.As(err, &ve) {
			v.Reason, v.Detail = "invalid", err.Error()
			return v
		}
		v.Reason, v.Detail = ve.Reason, ve.Detail
		v.Explanation, v.RevokedBy = a.explain(ctx, c, tp, b, ve, d)
		return v
	}
	v.Accepted, v.Reason = true, "ok"
	if reason, text := checkBinding(st.Policy, claims.Cnf); reason != "" {
		v.Accepted, v.Reason, v.Explanation = false, reason, []string{text}
		return v
	} else if text != "" {
		v.Notes = append(v.Notes, text)
	}
	scopes := "no scope"
	if len(claims.Scopes) > 0 {
		scopes = "scopes " + strings.Join(claims.Scopes, " ")
	}
	v.Notes = append(v.Notes, fmt.Sprintf("Verified with key %s; subject %q; %s.", claims.KID, claims.Subject, scopes))
	for _, r := range b.Content.Policy.Routes {
		if r.Anonymous {
			continue
		}
		if missing := policy.MissingScopes(r.Scopes, claims.Scopes); len(missing) > 0 {
			methods := "any method"
			if len(r.Methods) > 0 {
				methods = strings.Join(r.Methods, ",")
			}
			v.Notes = append(v.Notes, fmt.Sprintf("Route %s (%s) answers 403 insufficient_scope: the token lacks %s.", r.Path, methods, strings.Join(missing, " ")))
		}
	}
	return v
}

// checkBinding applies the sidecar's binding rules that need no proof. It returns a
// rejection reason, or a note about how the token must be presented.
func checkBinding(p *policy.Policy, cnf *verify.Confirmation) (reason, text string) {
	var jkt, x5t string
	if cnf != nil {
		jkt, x5t = cnf.JKT, cnf.X5TS256
	}
	switch p.BindingMode {
	case policy.BindingDPoP:
		switch {
		case x5t != "":
			return "binding_unsupported", "The token is bound to a client certificate (cnf.x5t#S256), which a DPoP policy cannot check: rejected."
		case jkt != "":
			return "", fmt.Sprintf("DPoP-bound (cnf.jkt %s): accepted only as \"Authorization: DPoP\" with a DPoP proof signed by that key; as a Bearer token it is rejected (dpop_downgrade).", jkt)
		case p.BindingRequired:
			return "unbound", "The policy requires DPoP-bound tokens and this one has no cnf.jkt: rejected."
		}
	case policy.BindingMTLS:
		switch {
		case jkt != "":
			return "binding_unsupported", "The token is DPoP-bound (cnf.jkt), which an mTLS policy cannot check: rejected."
		case x5t != "":
			return "", fmt.Sprintf("Bound to a client certificate (cnf.x5t#S256 %s): accepted only over mTLS with that certificate.", x5t)
		case p.BindingRequired:
			return "unbound", "The policy requires certificate-bound tokens and this one has no cnf.x5t#S256: rejected."
		}
	default:
		if jkt != "" || x5t != "" {
			return "binding_unsupported", "The token is sender-constrained (cnf), but the policy's binding mode is None: the sidecar does not downgrade it to a bearer token and rejects it."
		}
	}
	return "", ""
}

// explain turns a verify rejection into sentences for the responder.
func (a *app) explain(ctx context.Context, c client.Client, tp *v1alpha1.TokenPolicy, b *bundle.Bundle, ve *verify.Error, d decodedToken) (lines, revokedBy []string) {
	now := a.Clock.Now()
	p := b.Content.Policy
	leeway := time.Duration(p.LeewaySeconds) * time.Second
	unix := func(s int64) string {
		t := time.Unix(s, 0)
		return fmt.Sprintf("%s (%s)", stamp(t), relative(now, t))
	}
	switch ve.Reason {
	case "expired":
		lines = append(lines, fmt.Sprintf("It expired at %s; the policy tolerates %s of clock skew. Get a new token.", unix(d.exp), leeway))
	case "not_yet_valid":
		lines = append(lines, fmt.Sprintf("Its nbf is %s, later than now plus the %s leeway: the issuer's clock may be ahead.", unix(d.nbf), leeway))
	case "issued_in_future":
		lines = append(lines, fmt.Sprintf("Its iat is %s, later than now plus the %s leeway: the issuer's clock may be ahead.", unix(d.iat), leeway))
	case "revoked":
		kind := strings.TrimPrefix(ve.Detail, "revoked by ")
		lines = append(lines, fmt.Sprintf("It is revoked by a %s revocation in bundle generation %d.", kind, b.Generation))
		revokedBy = a.revokingEntries(ctx, c, tp, kind, d)
		for _, e := range revokedBy {
			lines = append(lines, "Revoked by "+e+".")
		}
	case "unknown_kid":
		lines = append(lines, a.explainUnknownKID(ctx, c, tp, b, d.kid)...)
	case "signature":
		lines = append(lines, fmt.Sprintf("The signature does not verify with the published key %s: the token was altered after signing, or forged by someone without the private key.", d.kid))
	case "issuer":
		lines = append(lines, fmt.Sprintf("Its iss is %q; this policy accepts only %q.", d.iss, p.Issuer))
	case "audience":
		lines = append(lines, fmt.Sprintf("Its aud names none of the policy's audiences %q.", p.Audiences))
	case "typ":
		lines = append(lines, fmt.Sprintf("Its typ header does not fit the policy's access-token type %q (RFC 9068 tokens carry \"at+jwt\").", p.AccessTokenType))
	case "alg_unsupported", "alg_mismatch", "alg_none", "alg_hmac":
		lines = append(lines, fmt.Sprintf("Its alg is not acceptable: the policy allows %q, and the key found by kid fixes the algorithm.", p.Algorithms))
	default:
		lines = append(lines, "The token is not a well-formed, strictly encoded JWS access token: "+ve.Detail+".")
	}
	return lines, revokedBy
}

// revokingEntries names the RevocationEntries that revoke the token (best effort).
func (a *app) revokingEntries(ctx context.Context, c client.Client, tp *v1alpha1.TokenPolicy, kind string, d decodedToken) []string {
	var claims map[string]any
	_ = json.Unmarshal(d.claims, &claims)
	value, _ := claims[kind].(string)
	if kind == kindKeyID {
		value = d.kid
	}
	var list v1alpha1.RevocationEntryList
	if err := c.List(ctx, &list, client.InNamespace(tp.Namespace)); err != nil {
		return nil
	}
	now := a.Clock.Now()
	var out []string
	for i := range list.Items {
		re := &list.Items[i]
		t := targetOf(re)
		if t.Kind != kind || t.Value != value || !inScope(re, tp.Name) {
			continue
		}
		if t.IssuedBefore != 0 && d.iat != 0 && d.iat >= t.IssuedBefore {
			continue // a later login: this entry does not cover the token
		}
		s := fmt.Sprintf("RevocationEntry %s (%s, reason %q, created %s", re.Name, t, re.Spec.Reason, relative(now, re.CreationTimestamp.Time))
		if t.IssuedBefore != 0 {
			s += ", tokens issued before " + stamp(time.Unix(t.IssuedBefore, 0))
		}
		if exp := expiresOf(re); !exp.IsZero() {
			s += ", expires " + relative(now, exp)
		}
		out = append(out, s+")")
	}
	return out
}

func (a *app) explainUnknownKID(ctx context.Context, c client.Client, tp *v1alpha1.TokenPolicy, b *bundle.Bundle, kid string) []string {
	lines := []string{fmt.Sprintf("Bundle generation %d has no key %q; it holds %s.", b.Generation, kid, dash(strings.Join(bundleKIDs(b), ", ")))}
	for _, r := range b.Content.Revocations.KeyID {
		if r.Value == kid {
			return append(lines, "The key is revoked (a kid RevocationEntry): every token it signed is rejected.")
		}
	}
	var sks v1alpha1.SigningKeyList
	if err := c.List(ctx, &sks, client.InNamespace(tp.Namespace)); err == nil {
		for _, sk := range sks.Items {
			for _, k := range sk.Status.Keys {
				if k.KeyID == kid {
					return append(lines, fmt.Sprintf("SigningKey %s publishes it (%s), but TokenPolicy %s does not trust that SigningKey (spec.signingKeys: %s).",
						sk.Name, k.State, tp.Name, strings.Join(tp.Spec.SigningKeys, ", ")))
				}
			}
		}
	}
	return append(lines, "No SigningKey of the namespace publishes it: it was withdrawn by an emergency rotation, "+
		"removed after rotation.retain, or never issued by this cluster (a forged token).")
}

func (a *app) printInspect(rep inspectReport, d decodedToken) {
	w := a.Out
	now := a.Clock.Now()
	fmt.Fprintf(w, "Token sha256:%s (the token_sha256 of verifier audit records), %d bytes; the token and its signature are not shown.\n", rep.TokenSHA256, rep.TokenBytes)
	if d.err != "" {
		fmt.Fprintf(w, "Decoding: %s\n", d.err)
	}
	for _, part := range []struct {
		name string
		raw  json.RawMessage
	}{{"Header", d.header}, {"Claims", d.claims}} {
		if part.raw == nil {
			continue
		}
		var out bytes.Buffer
		_ = json.Indent(&out, part.raw, "  ", "  ")
		fmt.Fprintf(w, "%s:\n  %s\n", part.name, out.String())
	}
	tw := newTable(w)
	for _, t := range []struct {
		name string
		v    int64
	}{{"Issued (iat)", d.iat}, {"Not before (nbf)", d.nbf}, {"Expires (exp)", d.exp}} {
		if t.v != 0 {
			tm := time.Unix(t.v, 0)
			fmt.Fprintf(tw, "%s:\t%s\t%s\n", t.name, stamp(tm), relative(now, tm))
		}
	}
	_ = tw.Flush()
	for _, v := range rep.Verdicts {
		fmt.Fprintln(w)
		where := fmt.Sprintf("bundle %s", v.BundleConfigMap)
		if v.BundleGeneration > 0 {
			where += fmt.Sprintf(", generation %d (%s)", v.BundleGeneration, shortHash(v.BundleHash))
		}
		fmt.Fprintf(w, "TokenPolicy %s, %s:\n", v.Policy, where)
		if v.Accepted {
			fmt.Fprintln(w, "  ACCEPTED")
		} else {
			line := "  REJECTED: " + v.Reason
			if v.Detail != "" {
				line += " (" + v.Detail + ")"
			}
			fmt.Fprintln(w, line)
		}
		for _, l := range slices.Concat(v.Explanation, v.Notes) {
			fmt.Fprintln(w, "  "+l)
		}
	}
}
