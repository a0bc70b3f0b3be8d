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
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/bundle"
	"github.com/keyward-dev/keyward/internal/jwks"
	"github.com/keyward-dev/keyward/internal/policy"
	"github.com/keyward-dev/keyward/internal/verify"
)

func TestTargetHeldBy(t *testing.T) {
	k, err := jwks.Generate(jwks.AlgES256, 0)
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := k.KeyID()
	pub, _ := jwk.PublicKeyOf(k)
	withKey := &bundle.Bundle{Keys: []jwk.Key{pub}}
	b := func(r bundle.Revocations, keys ...jwk.Key) *bundle.Bundle {
		return &bundle.Bundle{Content: bundle.Content{Revocations: r}, Keys: keys}
	}
	tests := []struct {
		name string
		t    target
		b    *bundle.Bundle
		want bool
	}{
		{"jti held", target{Kind: kindJTI, Value: "a"}, b(bundle.Revocations{JTI: []bundle.Revoked{{Value: "a", Expires: 1}}}), true},
		{"jti missing", target{Kind: kindJTI, Value: "a"}, b(bundle.Revocations{JTI: []bundle.Revoked{{Value: "b", Expires: 1}}}), false},
		{"value in another kind", target{Kind: kindJTI, Value: "a"}, b(bundle.Revocations{Session: []bundle.Revoked{{Value: "a", Expires: 1}}}), false},
		{"empty bundle", target{Kind: kindSession, Value: "s"}, withKey, false},
		{"sub same cut-off", target{Kind: kindSubject, Value: "alice", IssuedBefore: 100}, b(bundle.Revocations{Subject: []bundle.Revoked{{Value: "alice", IssuedBefore: 100, Expires: 1}}}), true},
		{"sub wider cut-off (merged)", target{Kind: kindSubject, Value: "alice", IssuedBefore: 100}, b(bundle.Revocations{Subject: []bundle.Revoked{{Value: "alice", IssuedBefore: 200, Expires: 1}}}), true},
		{"sub narrower cut-off", target{Kind: kindSubject, Value: "alice", IssuedBefore: 100}, b(bundle.Revocations{Subject: []bundle.Revoked{{Value: "alice", IssuedBefore: 50, Expires: 1}}}), false},
		{"client every token", target{Kind: kindClientID, Value: "c", IssuedBefore: 100}, b(bundle.Revocations{ClientID: []bundle.Revoked{{Value: "c", Expires: 1}}}), true},
		{"kid listed and withdrawn", target{Kind: kindKeyID, Value: kid}, b(bundle.Revocations{KeyID: []bundle.Revoked{{Value: kid, Expires: 1}}}), true},
		{"kid listed but still published", target{Kind: kindKeyID, Value: kid}, b(bundle.Revocations{KeyID: []bundle.Revoked{{Value: kid, Expires: 1}}}, pub), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.t.heldBy(tt.b); got != tt.want {
				t.Fatalf("heldBy = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTargetOf(t *testing.T) {
	created := metav1.NewTime(time.Unix(1000, 0))
	before := metav1.NewTime(time.Unix(500, 0))
	tests := []struct {
		spec v1alpha1.RevocationEntrySpec
		want target
	}{
		{v1alpha1.RevocationEntrySpec{JTI: "j"}, target{Kind: kindJTI, Value: "j"}},
		{v1alpha1.RevocationEntrySpec{Subject: "s"}, target{Kind: kindSubject, Value: "s", IssuedBefore: 1000}},
		{v1alpha1.RevocationEntrySpec{Subject: "s", IssuedBefore: &before}, target{Kind: kindSubject, Value: "s", IssuedBefore: 500}},
		{v1alpha1.RevocationEntrySpec{SessionID: "x"}, target{Kind: kindSession, Value: "x"}},
		{v1alpha1.RevocationEntrySpec{KeyID: "k"}, target{Kind: kindKeyID, Value: "k"}},
		{v1alpha1.RevocationEntrySpec{ClientID: "c"}, target{Kind: kindClientID, Value: "c", IssuedBefore: 1000}},
	}
	for _, tt := range tests {
		re := &v1alpha1.RevocationEntry{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: created}, Spec: tt.spec}
		if got := targetOf(re); got != tt.want {
			t.Errorf("targetOf(%+v) = %+v, want %+v", tt.spec, got, tt.want)
		}
	}
}

func TestEntryName(t *testing.T) {
	dns := regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	a := entryName(target{Kind: kindJTI, Value: "Some JTI/with ünïcode"}, []string{"web", "api"})
	if a != entryName(target{Kind: kindJTI, Value: "Some JTI/with ünïcode"}, []string{"api", "web"}) {
		t.Fatal("the name depends on the order of --policy")
	}
	for _, other := range []string{
		entryName(target{Kind: kindJTI, Value: "Some JTI/with ünïcode"}, nil),
		entryName(target{Kind: kindSession, Value: "Some JTI/with ünïcode"}, []string{"web", "api"}),
		entryName(target{Kind: kindSubject, Value: "Some JTI/with ünïcode", IssuedBefore: 1}, []string{"web", "api"}),
	} {
		if other == a {
			t.Fatalf("two targets share the name %s", a)
		}
	}
	for _, k := range kinds {
		n := entryName(target{Kind: k, Value: strings.Repeat("x", 256)}, nil)
		if !dns.MatchString(n) || len(n) > 63 {
			t.Errorf("%s: %q is not a valid name", k, n)
		}
	}
}

func TestMintClaims(t *testing.T) {
	tp := &v1alpha1.TokenPolicy{Spec: v1alpha1.TokenPolicySpec{Issuer: "https://i", Audiences: []string{"a1", "a2"},
		AccessToken: v1alpha1.AccessTokenSpec{TTL: metav1.Duration{Duration: 5 * time.Minute}}}}
	now := time.Unix(1000, 0)
	c, err := mintClaims(&mintOptions{subject: "s"}, tp, now, "j")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(c)
	if want := `{"aud":"a1","exp":1300,"iat":1000,"iss":"https://i","jti":"j","sub":"s"}`; string(got) != want {
		t.Fatalf("claims %s, want %s", got, want)
	}
	for _, o := range []mintOptions{
		{subject: "s", ttl: time.Millisecond},
		{subject: "s", claims: []string{"sid=x"}},
		{subject: "s", claims: []string{"a=1", "a=2"}},
		{subject: "s", claims: []string{"=1"}},
		{subject: "s", jsonClaim: []string{"a=nope"}},
	} {
		if _, err := mintClaims(&o, tp, now, "j"); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func TestCheckBinding(t *testing.T) {
	jkt := &verify.Confirmation{JKT: "t"}
	x5t := &verify.Confirmation{X5TS256: "c"}
	tests := []struct {
		mode     string
		required bool
		cnf      *verify.Confirmation
		reason   string
		note     bool
	}{
		{policy.BindingNone, false, nil, "", false},
		{policy.BindingNone, false, jkt, "binding_unsupported", false},
		{policy.BindingNone, false, x5t, "binding_unsupported", false},
		{policy.BindingDPoP, false, nil, "", false},
		{policy.BindingDPoP, true, nil, "unbound", false},
		{policy.BindingDPoP, true, jkt, "", true},
		{policy.BindingDPoP, false, x5t, "binding_unsupported", false},
		{policy.BindingMTLS, false, nil, "", false},
		{policy.BindingMTLS, true, nil, "unbound", false},
		{policy.BindingMTLS, true, x5t, "", true},
		{policy.BindingMTLS, false, jkt, "binding_unsupported", false},
	}
	for _, tt := range tests {
		reason, text := checkBinding(&policy.Policy{BindingMode: tt.mode, BindingRequired: tt.required}, tt.cnf)
		if reason != tt.reason || (reason == "" && (text != "") != tt.note) {
			t.Errorf("%s required=%v cnf=%+v: %q %q", tt.mode, tt.required, tt.cnf, reason, text)
		}
	}
}

func TestDecodeToken(t *testing.T) {
	d := decodeToken("eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJodHRwczovL2kiLCJleHAiOjIwMDAsImlhdCI6MTAwMH0.c2ln")
	if d.err != "" || d.kid != "k1" || d.iss != "https://i" || d.exp != 2000 || d.iat != 1000 || len(d.sha) != 12 {
		t.Fatalf("%+v", d)
	}
	for _, bad := range []string{"a.b", "!!!.e30.x", "e30.bm90IGpzb24.x"} {
		if d := decodeToken(bad); d.err == "" {
			t.Errorf("%q decoded without an error: %+v", bad, d)
		}
	}
}

func TestRelative(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	for d, want := range map[time.Duration]string{
		0: "now", 500 * time.Millisecond: "now", -500 * time.Millisecond: "now",
		90 * time.Second: "in 90s", -5 * time.Minute: "5m ago", 30 * 24 * time.Hour: "in 30d",
	} {
		if got := relative(now, now.Add(d)); got != want {
			t.Errorf("relative(%s) = %q, want %q", d, got, want)
		}
	}
	if relative(now, time.Time{}) != "-" {
		t.Error("the zero time")
	}
}

func TestLongestLifetime(t *testing.T) {
	if got := longestLifetime(nil); got != 720*time.Hour+30*time.Second {
		t.Fatalf("defaults: %s", got)
	}
	short := v1alpha1.TokenPolicy{Spec: v1alpha1.TokenPolicySpec{RefreshToken: v1alpha1.RefreshTokenSpec{TTL: metav1.Duration{Duration: time.Hour}},
		Leeway: metav1.Duration{Duration: time.Minute}}}
	if got := longestLifetime([]v1alpha1.TokenPolicy{short}); got != time.Hour+time.Minute {
		t.Fatalf("one policy: %s", got)
	}
}
