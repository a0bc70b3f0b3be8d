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
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/spf13/cobra"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/bundle"
	"github.com/keyward-dev/keyward/internal/jwks"
	"github.com/keyward-dev/keyward/internal/mint"
)

func TestStatus(t *testing.T) {
	f := newFixture(t, "status", nil)
	sk := f.signingKey(t)
	tp := env.WaitPolicyReady(t, f.ns, "web")
	f.mustKW(t, "revoke", "token", "jti-status-1", "--reason", "test", "--wait=30s")
	f.mustKW(t, "revoke", "subject", "alice", "--policy", "web", "--reason", "lost laptop", "--wait=30s")

	r := f.mustKW(t, "status")
	wantContains(t, "status", r.out,
		"SIGNING KEYS", "web-keys", "ES256", sk.Status.ActiveKeyID, "Active",
		"TOKEN POLICIES", "web-bundle", "admin-bundle", f.issuer,
		"REVOCATIONS: 2 active (jti 1, sub 1)", "jti-status-1", "alice", "lost laptop", "all", "web")
	if strings.Contains(r.out, "NOTES") {
		t.Fatalf("a healthy namespace has notes:\n%s", r.out)
	}
	if !strings.Contains(r.out, "in 29d") && !strings.Contains(r.out, "in 30d") { // 720h from activation, whole seconds
		t.Fatalf("status lacks the next rotation:\n%s", r.out)
	}

	var rep statusReport
	if err := json.Unmarshal([]byte(f.mustKW(t, "status", "-o", "json").out), &rep); err != nil {
		t.Fatal(err)
	}
	b := f.bundle(t, "web")
	var web *tokenPolicyStatus
	for i := range rep.TokenPolicies {
		if rep.TokenPolicies[i].Name == "web" {
			web = &rep.TokenPolicies[i]
		}
	}
	switch {
	case web == nil:
		t.Fatalf("no web policy in %+v", rep.TokenPolicies)
	case web.Source != "bundle" || web.BundleGeneration != b.Generation || web.BundleHash != b.Hash || web.Revocations != 2:
		t.Fatalf("web policy %+v, bundle generation %d hash %s", web, b.Generation, b.Hash)
	case tp.Status.BundleConfigMapName != web.BundleConfigMap:
		t.Fatalf("bundle ConfigMap %q, status says %q", web.BundleConfigMap, tp.Status.BundleConfigMapName)
	}
	if len(rep.SigningKeys) != 1 || rep.SigningKeys[0].ActiveKeyID != sk.Status.ActiveKeyID || len(rep.SigningKeys[0].Keys) != 1 ||
		!slices.Equal(rep.SigningKeys[0].TokenPolicies, []string{"admin", "web"}) {
		t.Fatalf("signing keys %+v", rep.SigningKeys)
	}
	if rep.Revocations.Active != 2 || rep.Revocations.ByKind["jti"] != 1 || rep.Revocations.ByKind["sub"] != 1 {
		t.Fatalf("revocations %+v", rep.Revocations)
	}

	var asYAML statusReport
	if err := yaml.Unmarshal([]byte(f.mustKW(t, "status", "-o", "yaml").out), &asYAML); err != nil || len(asYAML.TokenPolicies) != 2 {
		t.Fatalf("yaml: %v %+v", err, asYAML)
	}
	all := mustKW(t, "status", "-A")
	wantContains(t, "status -A", all.out, "NAMESPACE", f.ns)
	if r := f.kw(t, "status", "-o", "wide"); r.err == nil {
		t.Fatal("status -o wide was accepted")
	}
}

func TestRevokeWaitsForEveryBundle(t *testing.T) {
	f := newFixture(t, "revoke", nil)
	before := f.bundle(t, "web").Generation

	r := f.mustKW(t, "revoke", "token", "0b6f8f7e-3c1a", "--reason", "INC-42", "--wait=30s")
	name := entryName(target{Kind: kindJTI, Value: "0b6f8f7e-3c1a"}, nil)
	wantContains(t, "revoke output", r.out, "revocationentry.auth.keyward.dev/"+name+" created", "TokenPolicy admin: bundle admin-bundle generation",
		"TokenPolicy web: bundle web-bundle generation", "holds jti=0b6f8f7e-3c1a", "Every bundle in scope (2)")
	// When --wait returned, the bundle ConfigMaps themselves hold the entry, and the
	// generation printed is the one in the ConfigMap.
	for _, p := range []string{"web", "admin"} {
		b := f.bundle(t, p)
		if !slices.ContainsFunc(b.Content.Revocations.JTI, func(e bundle.Revoked) bool { return e.Value == "0b6f8f7e-3c1a" }) {
			t.Fatalf("bundle of %s lacks the jti: %+v", p, b.Content.Revocations)
		}
		wantContains(t, "revoke output", r.out, "bundle "+p+"-bundle generation "+strconv.FormatInt(b.Generation, 10)+" ")
	}
	if g := f.bundle(t, "web").Generation; g <= before {
		t.Fatalf("generation %d after the revocation, %d before", g, before)
	}

	// The same command again (a retry) names the same entry and creates nothing.
	r = f.mustKW(t, "revoke", "token", "0b6f8f7e-3c1a", "--reason", "INC-42 retry", "--wait=30s")
	wantContains(t, "retried revoke", r.out, name+" unchanged", "holds jti=0b6f8f7e-3c1a")
	var list v1alpha1.RevocationEntryList
	if err := env.Client.List(context.Background(), &list, client.InNamespace(f.ns)); err != nil || len(list.Items) != 1 {
		t.Fatalf("entries after a retry: %v %d", err, len(list.Items))
	}
	if list.Items[0].Labels[LabelCreatedBy] != CreatedByValue || list.Items[0].Spec.Reason != "INC-42" {
		t.Fatalf("entry %+v", list.Items[0].ObjectMeta)
	}

	// Scoped to one policy: only that bundle is waited for.
	r = f.mustKW(t, "revoke", "session", "s-7f3e", "--policy", "web", "--wait=30s")
	wantContains(t, "scoped revoke", r.out, "TokenPolicies web of namespace", "TokenPolicy web: bundle web-bundle", "Every bundle in scope (1)")
	if strings.Contains(r.out, "TokenPolicy admin") {
		t.Fatalf("a revocation scoped to web waited for admin:\n%s", r.out)
	}
	if f.bundle(t, "admin").Content.Revocations.Session != nil {
		t.Fatal("the admin bundle holds a revocation scoped to web")
	}

	// Subject revocations without --issued-before get generated names: each run is a new cut-off.
	for range 2 {
		f.mustKW(t, "revoke", "subject", "alice", "--reason", "lost laptop", "--wait=30s")
	}
	if err := env.Client.List(context.Background(), &list, client.InNamespace(f.ns)); err != nil || len(list.Items) != 4 {
		t.Fatalf("entries: %v %d, want 4", err, len(list.Items))
	}
	// An explicit cut-off is deterministic again; a client revocation with it waits too.
	cutoff := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	r = f.mustKW(t, "revoke", "client", "billing-batch", "--issued-before", cutoff, "--wait=30s")
	wantContains(t, "client revoke", r.out, "revocationentry.auth.keyward.dev/client-", "holds client_id=billing-batch")

	// A namespace without TokenPolicies: recorded, with a warning, nothing to wait for.
	empty := env.Namespace(t, "revoke-empty")
	r = mustKW(t, "-n", empty, "revoke", "token", "x", "--wait=5s")
	wantContains(t, "revoke without policies", r.errOut, "has no TokenPolicy")
	wantContains(t, "revoke without policies", r.out, "created", "No TokenPolicy is in scope")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"revoke", "token", "x", "--issued-before", "now"}, "unknown flag: --issued-before"},
		{[]string{"revoke", "token", "x", "--policy", "nope"}, `TokenPolicy "nope" not found`},
		{[]string{"revoke", "subject", "x", "--issued-before", "yesterday"}, "RFC 3339"},
		{[]string{"revoke", "token", "x", "--reason", ""}, "--reason must be"},
		{[]string{"revoke", "token"}, "accepts 1 arg"},
		{[]string{"revoke", "user", "alice"}, `unknown revocation kind "user"`},
		{[]string{"revoke"}, "say what to revoke"},
		{[]string{"revoke", "subject", "x", "--issued-before", "2020-01-02T03:04:05Z"}, "every token it could match has already expired"},
	} {
		if r := f.kw(t, tc.args...); r.err == nil || !strings.Contains(r.err.Error(), tc.want) {
			t.Errorf("%v: %s, want an error with %q", tc.args, r, tc.want)
		}
	}
}

func TestRevokeWaitTimesOutWhileTheOperatorIsDown(t *testing.T) {
	f := newFixture(t, "revoke-down", nil)
	if err := env.StopManager(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			_ = env.StartManager()
		}
	}()
	r := f.kw(t, "revoke", "token", "jti-down", "--wait=3s")
	if r.err == nil || !strings.Contains(r.err.Error(), "timed out waiting for the bundles") ||
		!strings.Contains(r.err.Error(), "TokenPolicy web: bundle generation") || !strings.Contains(r.err.Error(), "does not hold it") {
		t.Fatalf("revoke --wait with the operator down: %s", r)
	}
	wantContains(t, "revoke output", r.out, "created")
	st := f.mustKW(t, "status")
	wantContains(t, "status while the operator is down", st.out, "jti-down", "pending")

	if err := env.StartManager(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	r = f.mustKW(t, "revoke", "token", "jti-down", "--wait=60s")
	wantContains(t, "revoke after the restart", r.out, "unchanged", "holds jti=jti-down")
}

func TestRotateScheduled(t *testing.T) {
	f := newFixture(t, "rotate", &v1alpha1.SigningKeySpec{Rotation: v1alpha1.RotationSpec{
		Period: metav1.Duration{Duration: time.Hour}, PrePublish: metav1.Duration{Duration: 10 * time.Minute}, Retain: metav1.Duration{Duration: time.Hour},
	}})
	old := f.signingKey(t).Status.ActiveKeyID
	r := f.mustKW(t, "rotate", "web-keys", "--wait=60s")
	wantContains(t, "rotate", r.out, "a new ES256 key is published now", "starts signing after rotation.prePublish (10m0s)",
		"Nothing stops working", "spec.rotationRequest=", "is Pending and signs", "JWKS ConfigMap web-keys-jwks: holds",
		"TokenPolicy web: bundle web-bundle generation", "TokenPolicy admin: bundle admin-bundle generation")
	sk := f.signingKey(t)
	if sk.Status.ActiveKeyID != old || len(sk.Status.Keys) != 2 {
		t.Fatalf("after a scheduled rotation: active %s (was %s), keys %+v", sk.Status.ActiveKeyID, old, sk.Status.Keys)
	}
	var pending string
	for _, k := range sk.Status.Keys {
		if k.State == v1alpha1.KeyPending {
			pending = k.KeyID
		}
	}
	for _, p := range []string{"web", "admin"} {
		if kids := bundleKIDs(f.bundle(t, p)); !slices.Contains(kids, pending) || !slices.Contains(kids, old) {
			t.Fatalf("bundle of %s holds %v, want %s and %s", p, kids, old, pending)
		}
	}
	// The same --id again is refused: the operator acts only on a new value.
	f.mustKW(t, "rotate", "web-keys", "--id", "change-1")
	if r := f.kw(t, "rotate", "web-keys", "--id", "change-1"); r.err == nil || !strings.Contains(r.err.Error(), "already") {
		t.Fatalf("a repeated --id: %s", r)
	}
	if r := f.kw(t, "rotate", "nope"); r.err == nil || !strings.Contains(r.err.Error(), `SigningKey "nope" not found`) {
		t.Fatalf("an unknown SigningKey: %s", r)
	}
}

func TestRotateEmergency(t *testing.T) {
	f := newFixture(t, "emergency", nil)
	f.mustKW(t, "rotate", "web-keys", "--wait=60s") // a pending key too: every key must go
	sk := f.signingKey(t)
	var oldKIDs []string
	for _, k := range sk.Status.Keys {
		oldKIDs = append(oldKIDs, k.KeyID)
	}
	if len(oldKIDs) != 2 {
		t.Fatalf("keys before the emergency: %+v", sk.Status.Keys)
	}
	token := f.mint(t, invocation{}, "--sub", "alice")

	// Without a terminal and without --yes it refuses, and changes nothing.
	r := f.kw(t, "rotate", "web-keys", "--emergency")
	if r.err == nil || !strings.Contains(r.err.Error(), "stdin is not a terminal") {
		t.Fatalf("emergency without a terminal: %s", r)
	}
	// It said what would stop working before asking.
	wantContains(t, "emergency impact", r.out, "EMERGENCY ROTATION of SigningKey "+f.ns+"/web-keys", oldKIDs[0], oldKIDs[1],
		"web-bundle", "admin-bundle", "signs and verifies", "every token signed by these keys is rejected", "What signs next: a fresh ES256 key")
	// On a terminal, a wrong answer cancels.
	r = invocation{tty: true, stdin: "yes\n"}.run(t, "-n", f.ns, "rotate", "web-keys", "--emergency")
	if r.err == nil || !strings.Contains(r.err.Error(), "cancelled") {
		t.Fatalf("emergency with a wrong confirmation: %s", r)
	}
	if got := f.signingKey(t); got.Spec.EmergencyRotationRequest != "" {
		t.Fatalf("a refused emergency rotation changed the spec: %+v", got.Spec)
	}

	// Typing the name confirms; --wait returns once the JWKS and the bundles are clean.
	r = invocation{tty: true, stdin: "web-keys\n"}.run(t, "-n", f.ns, "rotate", "web-keys", "--emergency", "--wait=60s", "--id", "INC-42")
	if r.err != nil {
		t.Fatalf("confirmed emergency rotation: %s", r)
	}
	wantContains(t, "emergency", r.errOut, `Type "web-keys"`)
	wantContains(t, "emergency", r.out, `spec.emergencyRotationRequest="INC-42"`, "every old key is withdrawn", "TokenPolicy web: bundle web-bundle generation", "TokenPolicy admin: bundle admin-bundle generation")
	sk = f.signingKey(t)
	if slices.Contains(oldKIDs, sk.Status.ActiveKeyID) || len(sk.Status.Keys) != 1 {
		t.Fatalf("after the emergency: %+v", sk.Status)
	}
	jwksDoc := f.jwksKIDs(t)
	for _, kid := range oldKIDs {
		if strings.Contains(jwksDoc, kid) {
			t.Fatalf("the JWKS ConfigMap still holds %s: %s", kid, jwksDoc)
		}
		for _, p := range []string{"web", "admin"} {
			if kids := bundleKIDs(f.bundle(t, p)); slices.Contains(kids, kid) || !slices.Contains(kids, sk.Status.ActiveKeyID) {
				t.Fatalf("bundle of %s holds %v after the emergency (old %v, new %s)", p, kids, oldKIDs, sk.Status.ActiveKeyID)
			}
		}
	}
	// A token the old key signed is now rejected everywhere: unknown kid.
	r = f.inspect(t, token)
	if r.code() != 1 {
		t.Fatalf("inspect of a token of a withdrawn key: %s", r)
	}
	wantContains(t, "inspect", r.out, "REJECTED: unknown_kid", "No SigningKey of the namespace publishes it")

	// --yes skips the question.
	r = f.mustKW(t, "rotate", "web-keys", "--emergency", "--yes", "--wait=60s")
	wantContains(t, "emergency --yes", r.out, "every old key is withdrawn")
}

func TestRevokeKeyNeedsConfirmation(t *testing.T) {
	f := newFixture(t, "revoke-key", nil)
	kid := f.signingKey(t).Status.ActiveKeyID
	r := f.kw(t, "revoke", "key", kid)
	if r.err == nil || !strings.Contains(r.err.Error(), "stdin is not a terminal") {
		t.Fatalf("revoke key without confirmation: %s", r)
	}
	wantContains(t, "revoke key", r.out, "It is the Active key of SigningKey web-keys", "a fresh key signs immediately", "every token this key signed is rejected")
	r = f.mustKW(t, "revoke", "key", kid, "--yes", "--reason", "INC-7", "--wait=60s")
	wantContains(t, "revoke key", r.out, "holds kid="+kid)
	for _, p := range []string{"web", "admin"} {
		b := f.bundle(t, p)
		if slices.Contains(bundleKIDs(b), kid) || len(b.Content.Revocations.KeyID) != 1 {
			t.Fatalf("bundle of %s after revoking %s: kids %v, revoked %+v", p, kid, bundleKIDs(b), b.Content.Revocations.KeyID)
		}
	}
}

func TestInspectReasons(t *testing.T) {
	f := newFixture(t, "inspect", nil)
	now := time.Now()

	good := f.mint(t, invocation{}, "--sub", "alice", "--scope", "orders:read", "--sid", "s-1")
	r := f.inspect(t, good, "--policy", "web")
	if r.err != nil {
		t.Fatalf("inspect of a fresh token: %s", r)
	}
	wantContains(t, "inspect", r.out, "TokenPolicy "+f.ns+"/web", "ACCEPTED", `"sub": "alice"`, `"typ": "at+jwt"`, "Expires (exp):", "in 9m")
	// Without --policy, every policy with the token's issuer is tried: web accepts, admin
	// (another audience) rejects, and the exit status is 0.
	r = f.inspect(t, good)
	if r.err != nil {
		t.Fatalf("inspect without --policy: %s", r)
	}
	wantContains(t, "inspect", r.out, "TokenPolicy "+f.ns+"/admin", "REJECTED: audience", `the policy's audiences ["admin-api"]`, "TokenPolicy "+f.ns+"/web")

	// Expired: minted with a clock an hour back.
	old := f.mint(t, invocation{clock: clocktesting.NewFakePassiveClock(now.Add(-time.Hour))}, "--sub", "alice")
	r = f.inspect(t, old, "--policy", "web")
	if r.code() != 1 {
		t.Fatalf("inspect of an expired token: %s", r)
	}
	wantContains(t, "inspect", r.out, "REJECTED: expired", "It expired at", "50m ago")

	// Revoked: by jti, and the entry is named.
	revoked := f.mint(t, invocation{}, "--sub", "bob", "--jti", "jti-inspect-1")
	f.mustKW(t, "revoke", "token", "jti-inspect-1", "--reason", "INC-9", "--wait=30s")
	r = f.inspect(t, revoked, "--policy", "web")
	if r.code() != 1 {
		t.Fatalf("inspect of a revoked token: %s", r)
	}
	wantContains(t, "inspect", r.out, "REJECTED: revoked (revoked by jti)", "It is revoked by a jti revocation",
		"Revoked by RevocationEntry "+entryName(target{Kind: kindJTI, Value: "jti-inspect-1"}, nil), `reason "INC-9"`)
	// Revoked by session.
	f.mustKW(t, "revoke", "session", "s-1", "--wait=30s")
	r = f.inspect(t, good, "--policy", "web")
	wantContains(t, "inspect", r.out, "REJECTED: revoked (revoked by sid)", "sid=s-1")

	// Forged: a token with the right kid signed by another key.
	forged := forge(t, good)
	r = f.inspect(t, forged, "--policy", "web")
	if r.code() != 1 {
		t.Fatalf("inspect of a forged token: %s", r)
	}
	wantContains(t, "inspect", r.out, "REJECTED: signature", "forged")

	// JSON for scripts, without the token.
	r = invocation{stdin: revoked}.run(t, "-n", f.ns, "inspect", "--policy", "web", "-o", "json")
	assertNoToken(t, r, revoked)
	var rep inspectReport
	if err := json.Unmarshal([]byte(r.out), &rep); err != nil || len(rep.Verdicts) != 1 || rep.Verdicts[0].Reason != "revoked" || len(rep.Verdicts[0].RevokedBy) != 1 {
		t.Fatalf("inspect -o json: %v %s", err, r)
	}

	// Pasted on a terminal: one line, with a prompt on stderr.
	r = invocation{tty: true, stdin: good + "\n"}.run(t, "-n", f.ns, "inspect", "--policy", "web")
	assertNoToken(t, r, good)
	wantContains(t, "inspect on a terminal", r.errOut, "not echoed")
	wantContains(t, "inspect on a terminal", r.out, "REJECTED: revoked")

	// A token on the command line works, with a warning.
	r = invocation{}.run(t, "-n", f.ns, "inspect", "--policy", "web", "Bearer "+good)
	wantContains(t, "inspect TOKEN", r.errOut, "shell history")
	// Errors: no policy with the issuer, garbage.
	other := f.mint(t, invocation{}, "--sub", "x")
	if r := (invocation{stdin: other}).run(t, "-n", "default", "inspect"); r.err == nil || !strings.Contains(r.err.Error(), "no TokenPolicy of namespace") {
		t.Fatalf("inspect in a namespace without the issuer: %s", r)
	}
	if r := f.inspect(t, "not-a-token"); r.err == nil || !strings.Contains(r.err.Error(), "no readable iss") {
		t.Fatalf("inspect of garbage: %s", r)
	}
	r = f.inspect(t, "not-a-token", "--policy", "web")
	wantContains(t, "inspect of garbage", r.out, "REJECTED: malformed")
}

// forge re-signs a token's header and claims with a fresh key: same kid, wrong signature.
func forge(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	var header map[string]string
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(hb, &header); err != nil {
		t.Fatal(err)
	}
	k, err := jwks.Generate(jwks.AlgES256, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Set(jwk.KeyIDKey, header["kid"]); err != nil {
		t.Fatal(err)
	}
	s, err := mint.New(k)
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(cb, &claims); err != nil {
		t.Fatal(err)
	}
	forged, err := s.Sign(claims, header["typ"])
	if err != nil {
		t.Fatal(err)
	}
	return forged
}

func TestMint(t *testing.T) {
	f := newFixture(t, "mint", nil)
	at := time.Date(2026, 5, 28, 20, 0, 0, 0, time.UTC)
	r := invocation{clock: clocktesting.NewFakePassiveClock(at)}.run(t, "-n", f.ns, "mint", "--policy", "web", "--sub", "alice",
		"--scope", "a b", "--scope", "c", "--ttl", "2m", "--sid", "s-9", "--client-id", "web-app", "--jti", "j-1",
		"--claim", "email=alice@example.com", "--claim-json", `roles=["admin"]`)
	if r.err != nil {
		t.Fatal(r)
	}
	tok := strings.TrimSpace(r.out)
	if strings.Count(tok, ".") != 2 || strings.Contains(r.out, "Minted") {
		t.Fatalf("stdout must hold the token alone: %q", r.out)
	}
	wantContains(t, "mint summary", r.errOut, `sub "alice"`, "jti j-1", "SigningKey "+f.ns+"/web-keys", "2026-05-28T20:02:00Z")
	cb, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	var claims map[string]any
	if err := json.Unmarshal(cb, &claims); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"iss": f.issuer, "aud": "api", "sub": "alice", "jti": "j-1", "scope": "a b c", "sid": "s-9", "client_id": "web-app",
		"email": "alice@example.com", "iat": float64(at.Unix()), "exp": float64(at.Add(2 * time.Minute).Unix()), "roles": []any{"admin"}}
	if gotJSON, wantJSON := mustJSON(t, claims), mustJSON(t, want); gotJSON != wantJSON {
		t.Fatalf("claims %s, want %s", gotJSON, wantJSON)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"mint", "--policy", "web", "--sub", "a", "--claim", "iss=x"}, "set by mint's own flags"},
		{[]string{"mint", "--policy", "web", "--sub", "a", "--claim", "novalue"}, "NAME=VALUE"},
		{[]string{"mint", "--policy", "web", "--sub", "a", "--claim-json", "x={"}, "not JSON"},
		{[]string{"mint", "--policy", "nope", "--sub", "a"}, `TokenPolicy "nope" not found`},
		{[]string{"mint", "--sub", "a"}, `required flag(s) "policy" not set`},
	} {
		if r := f.kw(t, tc.args...); r.err == nil || !strings.Contains(r.err.Error(), tc.want) {
			t.Errorf("%v: %s, want %q", tc.args, r, tc.want)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMintRefusedWithoutSecretAccess(t *testing.T) {
	f := newFixture(t, "mint-rbac", nil)
	// A developer who may read the Keyward resources but not Secrets.
	env.Grant(t, f.ns, "dev", rbacv1.PolicyRule{
		APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"tokenpolicies", "signingkeys"}, Verbs: []string{"get", "list"},
	})
	r := f.kw(t, "--as", "dev", "mint", "--policy", "web", "--sub", "alice")
	if r.err == nil || r.out != "" {
		t.Fatalf("mint without Secret access: %s", r)
	}
	wantContains(t, "mint refusal", r.err.Error(), "permission denied", "mint reads the private signing key of SigningKey web-keys",
		`needs "get" on secrets "web-keys-keys" in namespace "`+f.ns+`"`, "verbs [get] on resources [secrets]", "resourceNames [web-keys-keys]", `User "dev" cannot get resource "secrets"`)
	// With exactly that permission (a client-certificate user this time), it works.
	env.Grant(t, f.ns, "dev2",
		rbacv1.PolicyRule{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"tokenpolicies", "signingkeys"}, Verbs: []string{"get"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"web-keys-keys"}, Verbs: []string{"get"}})
	kc, err := env.KubeconfigFor("dev2")
	if err != nil {
		t.Fatal(err)
	}
	r = invocation{kubecfg: kc}.run(t, "-n", f.ns, "mint", "--policy", "web", "--sub", "alice")
	if r.err != nil || strings.Count(r.out, ".") != 2 {
		t.Fatalf("mint with get on the Secret: %s", r)
	}
}

func TestCompletion(t *testing.T) {
	f := newFixture(t, "complete", nil)
	kid := f.signingKey(t).Status.ActiveKeyID
	for _, tc := range []struct {
		args []string
		want []string
		not  []string
	}{
		{[]string{"rotate", ""}, []string{"web-keys"}, []string{"web\n"}},
		{[]string{"inspect", "--policy", ""}, []string{"admin", "web"}, nil},
		{[]string{"revoke", "token", "x", "--policy", "w"}, []string{"web"}, []string{"admin"}},
		{[]string{"mint", "--policy", ""}, []string{"admin", "web"}, nil},
		{[]string{"revoke", "key", ""}, []string{kid + "\tActive key of SigningKey web-keys"}, nil},
		{[]string{"status", "-o", ""}, []string{"table", "yaml", "json"}, nil},
		{[]string{"-n", ""}, []string{f.ns}, nil},
		{[]string{""}, []string{"status", "rotate", "revoke", "inspect", "mint", "completion"}, nil},
	} {
		args := tc.args
		if args[0] != "-n" {
			args = append([]string{"-n", f.ns}, args...)
		}
		r := mustKW(t, append([]string{cobra.ShellCompRequestCmd}, args...)...)
		for _, w := range tc.want {
			if !strings.Contains(r.out, w) {
				t.Errorf("completing %v: %q lacks %q", tc.args, r.out, w)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(r.out, n) {
				t.Errorf("completing %v: %q holds %q", tc.args, r.out, n)
			}
		}
	}
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		if r := mustKW(t, "completion", shell); !strings.Contains(r.out, "kubectl-keyward") {
			t.Errorf("completion %s: %.200s", shell, r.out)
		}
	}
}

// Every command has a help text with examples, and --help prints them as `kubectl keyward`.
func TestHelp(t *testing.T) {
	root := NewCommand(Options{})
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == cobra.ShellCompRequestCmd || c.Name() == cobra.ShellCompNoDescRequestCmd {
			return
		}
		if c.Parent() != nil && c.Parent().Name() == "completion" {
			return // cobra's own shell subcommands
		}
		if c.Example == "" && c.Name() != "completion" {
			t.Errorf("%q has no examples", c.CommandPath())
		}
		r := kw(t, append(strings.Fields(strings.TrimPrefix(c.CommandPath(), "kubectl keyward")), "--help")...)
		if r.err != nil || !strings.Contains(r.out, "kubectl keyward") {
			t.Errorf("%s --help: %s", c.CommandPath(), r)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if r := kw(t, "version"); r.out != "kubectl-keyward test\n" {
		t.Fatalf("version: %q", r.out)
	}
}
