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

package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

var pol = Policy{
	DNSNames:     ServiceDNSNames("keyward-webhook", "keyward-system", ""),
	CALifetime:   DefaultCALifetime,
	LeafLifetime: DefaultLeafLifetime,
}

// issue runs one plan-and-apply pass at now, as the controller does, and checks that the
// result is a fixpoint.
func issue(t *testing.T, now time.Time, p Policy, s Stored) (Stored, Plan) {
	t.Helper()
	st := Parse(s)
	pl := PlanRenewal(now, p, st)
	if !pl.Changes() {
		return s, pl
	}
	out, err := Apply(now, p, st, pl)
	if err != nil {
		t.Fatalf("apply at %s: %v", now.Sub(t0), err)
	}
	if again := PlanRenewal(now, p, Parse(out)); again.Changes() {
		t.Fatalf("not a fixpoint at %s: %+v", now.Sub(t0), again)
	}
	return out, pl
}

func mustParse(t *testing.T, s Stored) *State {
	t.Helper()
	st := Parse(s)
	if st.CAErr != nil || st.LeafErr != nil {
		t.Fatalf("parse: CA %v, leaf %v", st.CAErr, st.LeafErr)
	}
	return st
}

// verifyLeaf checks that s's serving certificate chains to bundle for the webhook name.
func verifyLeaf(s Stored, bundle []byte, now time.Time) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		return errors.New("empty bundle")
	}
	block, _ := pem.Decode(s.CertPEM)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		DNSName: "keyward-webhook.keyward-system.svc", Roots: pool, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

func TestCertPolicyValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Policy
		want string
	}{
		{"defaults", pol, ""},
		{"no names", Policy{CALifetime: day, LeafLifetime: day}, "no DNS names"},
		{"short CA", Policy{DNSNames: []string{"a"}, CALifetime: time.Minute, LeafLifetime: time.Minute}, "CA lifetime 1m0s is shorter"},
		{"leaf outlives CA", Policy{DNSNames: []string{"a"}, CALifetime: day, LeafLifetime: 2 * day}, "longer than the CA lifetime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCertServiceDNSNames(t *testing.T) {
	got := ServiceDNSNames("svc", "ns", "")
	want := []string{"svc", "svc.ns", "svc.ns.svc", "svc.ns.svc.cluster.local"}
	if !slices.Equal(got, want) {
		t.Fatalf("ServiceDNSNames = %v, want %v", got, want)
	}
}

func TestCertIssue(t *testing.T) {
	s, pl := issue(t, t0, pol, Stored{})
	if !pl.NewCA || pl.CAReason != ReasonMissing || !pl.NewLeaf || pl.KeepOldCA {
		t.Fatalf("plan for nothing stored: %+v", pl)
	}
	st := mustParse(t, s)
	if len(st.Previous) != 0 || !s.OverlapUntil.IsZero() {
		t.Fatalf("fresh pair has previous CAs %d / overlap %v", len(st.Previous), s.OverlapUntil)
	}
	for name, c := range map[string]*x509.Certificate{"CA": st.CA, "leaf": st.Leaf} {
		k, ok := c.PublicKey.(*ecdsa.PublicKey)
		if !ok || k.Curve != elliptic.P256() {
			t.Fatalf("%s key is %T, want ECDSA P-256", name, c.PublicKey)
		}
	}
	if got, want := st.CA.NotAfter.Sub(t0), DefaultCALifetime; got != want {
		t.Fatalf("CA lifetime %v, want %v", got, want)
	}
	if got, want := st.Leaf.NotAfter.Sub(t0), DefaultLeafLifetime; got != want {
		t.Fatalf("leaf lifetime %v, want %v", got, want)
	}
	if !st.CA.IsCA || !st.CA.MaxPathLenZero || st.Leaf.IsCA {
		t.Fatalf("basic constraints: CA %v/%v leaf %v", st.CA.IsCA, st.CA.MaxPathLenZero, st.Leaf.IsCA)
	}
	if !slices.Equal(st.Leaf.DNSNames, pol.DNSNames) || st.Leaf.Subject.CommonName != pol.DNSNames[0] {
		t.Fatalf("leaf names %v / CN %q", st.Leaf.DNSNames, st.Leaf.Subject.CommonName)
	}
	if err := verifyLeaf(s, s.BundlePEM, t0); err != nil {
		t.Fatalf("leaf does not verify against its bundle: %v", err)
	}
	if err := verifyLeaf(s, s.BundlePEM, t0.Add(-Backdate)); err != nil {
		t.Fatalf("leaf is not valid %v before issue (clock skew): %v", Backdate, err)
	}
	if pl := PlanRenewal(t0, pol, st); pl.NextDue != RenewalTime(st.Leaf) {
		t.Fatalf("NextDue = %v, want the leaf renewal time %v", pl.NextDue, RenewalTime(st.Leaf))
	}
}

func TestCertParseKeyFormats(t *testing.T) {
	s, _ := issue(t, t0, pol, Stored{})
	st := mustParse(t, s)
	sec1, err := x509.MarshalECPrivateKey(st.LeafKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	s.KeyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})
	mustParse(t, s)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s.KeyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	if st := Parse(s); st.LeafErr == nil || !strings.Contains(st.LeafErr.Error(), "does not match") {
		t.Fatalf("RSA key for an EC certificate: %v", st.LeafErr)
	}
}

func reversed(s []string) []string {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

// at is a fake clock's time after stepping it by d from t0.
func at(d time.Duration) time.Time {
	c := clocktesting.NewFakeClock(t0)
	c.Step(d)
	return c.Now()
}

func TestCertPlanRenewal(t *testing.T) {
	base, _ := issue(t, t0, pol, Stored{})
	baseSt := mustParse(t, base)
	leafDue := RenewalTime(baseSt.Leaf).Sub(t0)
	caDue := RenewalTime(baseSt.CA).Sub(t0)
	other, _ := issue(t, t0, pol, Stored{})

	// renewLeaf is s with its serving certificate reissued at d.
	renewLeaf := func(s Stored, d time.Duration) Stored {
		out, err := Apply(at(d), pol, Parse(s), Plan{NewLeaf: true})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	fresh := func(d time.Duration) Stored { return renewLeaf(base, d) }
	// renewedCA is base after a CA renewal at caDue; its old leaf was issued 50 days
	// before, so the overlap ends before the new leaf is due.
	renewedCA, pl := issue(t, at(caDue), pol, fresh(caDue-50*day))
	if !pl.KeepOldCA {
		t.Fatalf("CA renewal with a current leaf did not keep the old CA: %+v", pl)
	}
	overlap := renewedCA.OverlapUntil.Sub(t0)

	edit := func(s Stored, f func(*Stored)) Stored { f(&s); return s }
	type want struct {
		newCA      bool
		caReason   Reason
		keepOld    bool
		newLeaf    bool
		leafReason Reason
		prune      int
		detail     string
	}
	for _, tc := range []struct {
		name   string
		stored Stored
		policy *Policy
		at     time.Duration
		want   want
	}{
		{name: "nothing stored", stored: Stored{}, want: want{newCA: true, caReason: ReasonMissing, newLeaf: true, leafReason: ReasonCARenewed}},
		{name: "fresh", stored: base},
		{name: "one second before the leaf is due", stored: base, at: leafDue - time.Second},
		{name: "leaf at 2/3 of its lifetime", stored: base, at: leafDue, want: want{newLeaf: true, leafReason: ReasonExpiring}},
		{name: "leaf expired", stored: base, at: DefaultLeafLifetime, want: want{newLeaf: true, leafReason: ReasonExpired}},
		{name: "clock went backwards", stored: base, at: -time.Hour, want: want{newCA: true, caReason: ReasonNotYetValid, newLeaf: true, leafReason: ReasonCARenewed}},
		{name: "names changed", stored: base, at: time.Hour,
			policy: &Policy{DNSNames: []string{"other"}, CALifetime: DefaultCALifetime, LeafLifetime: DefaultLeafLifetime},
			want:   want{newLeaf: true, leafReason: ReasonNamesChanged}},
		{name: "names reordered", stored: base,
			policy: &Policy{DNSNames: reversed(pol.DNSNames), CALifetime: DefaultCALifetime, LeafLifetime: DefaultLeafLifetime}},
		{name: "CA due, leaf current: overlap", stored: fresh(caDue - day), at: caDue,
			want: want{newCA: true, caReason: ReasonExpiring, keepOld: true, newLeaf: true, leafReason: ReasonCARenewed}},
		{name: "CA due, leaf expired: no overlap", stored: base, at: caDue,
			want: want{newCA: true, caReason: ReasonExpiring, newLeaf: true, leafReason: ReasonCARenewed}},
		{name: "CA expired", stored: fresh(caDue), at: DefaultCALifetime,
			want: want{newCA: true, caReason: ReasonExpired, newLeaf: true, leafReason: ReasonCARenewed}},
		{name: "garbage tls.crt: new leaf from the same CA", stored: edit(base, func(s *Stored) { s.CertPEM = []byte("garbage") }),
			want: want{newLeaf: true, leafReason: ReasonInvalid, detail: "no PEM certificate"}},
		{name: "tls.key of another pair", stored: edit(base, func(s *Stored) { s.KeyPEM = other.KeyPEM }),
			want: want{newLeaf: true, leafReason: ReasonInvalid, detail: "does not match"}},
		{name: "leaf of another CA", stored: edit(base, func(s *Stored) { s.CertPEM, s.KeyPEM = other.CertPEM, other.KeyPEM }),
			want: want{newLeaf: true, leafReason: ReasonInvalid, detail: "not signed by the current CA"}},
		{name: "tls.key missing", stored: edit(base, func(s *Stored) { s.KeyPEM = nil }),
			want: want{newLeaf: true, leafReason: ReasonInvalid, detail: "no PEM private key"}},
		{name: "leaf missing", stored: edit(base, func(s *Stored) { s.CertPEM, s.KeyPEM = nil, nil }),
			want: want{newLeaf: true, leafReason: ReasonMissing}},
		{name: "garbage ca.crt", stored: edit(base, func(s *Stored) {
			s.BundlePEM = []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
		}),
			want: want{newCA: true, caReason: ReasonInvalid, newLeaf: true, leafReason: ReasonCARenewed, detail: "CA bundle"}},
		{name: "ca.key of another CA", stored: edit(base, func(s *Stored) { s.CAKeyPEM = other.CAKeyPEM }),
			want: want{newCA: true, caReason: ReasonInvalid, newLeaf: true, leafReason: ReasonCARenewed, detail: "matches no certificate"}},
		{name: "ca.key is the leaf's", stored: edit(base, func(s *Stored) { s.BundlePEM, s.CAKeyPEM = append(s.BundlePEM, s.CertPEM...), s.KeyPEM }),
			want: want{newCA: true, caReason: ReasonInvalid, newLeaf: true, leafReason: ReasonCARenewed, detail: "is not a CA"}},
		{name: "during the overlap", stored: renewedCA, at: overlap - time.Second},
		{name: "overlap over: old CA pruned", stored: renewedCA, at: overlap, want: want{prune: 1}},
		{name: "overlap unknown: old CA kept until it expires", stored: edit(renewedCA, func(s *Stored) { s.OverlapUntil = time.Time{} }), at: overlap},
		{name: "overlap unknown, old CA expired: pruned",
			stored: renewLeaf(edit(renewedCA, func(s *Stored) { s.OverlapUntil = time.Time{} }), caDue+110*day), at: DefaultCALifetime, want: want{prune: 1}},
		{name: "invalid CA during an overlap drops the bundle", stored: edit(renewedCA, func(s *Stored) { s.CAKeyPEM = other.CAKeyPEM }), at: caDue + time.Hour,
			want: want{newCA: true, caReason: ReasonInvalid, newLeaf: true, leafReason: ReasonCARenewed, detail: "matches no certificate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(t0)
			clk.Step(tc.at)
			p := pol
			if tc.policy != nil {
				p = *tc.policy
			}
			st := Parse(tc.stored)
			pl := PlanRenewal(clk.Now(), p, st)
			got := want{
				newCA: pl.NewCA, caReason: pl.CAReason, keepOld: pl.KeepOldCA,
				newLeaf: pl.NewLeaf, leafReason: pl.LeafReason, prune: len(pl.Prune),
			}
			detail := pl.CADetail + pl.LeafDetail
			wantDetail := tc.want.detail
			tc.want.detail, got.detail = "", ""
			if got != tc.want {
				t.Fatalf("plan = %+v\nwant   %+v", got, tc.want)
			}
			if !strings.Contains(detail, wantDetail) {
				t.Fatalf("detail %q does not mention %q", detail, wantDetail)
			}
			if pl.Changes() {
				if !pl.NextDue.Equal(clk.Now()) {
					t.Fatalf("NextDue %v of a plan with changes is not now", pl.NextDue)
				}
				out, err := Apply(clk.Now(), p, st, pl)
				if err != nil {
					t.Fatalf("apply: %v", err)
				}
				if again := PlanRenewal(clk.Now(), p, Parse(out)); again.Changes() {
					t.Fatalf("not a fixpoint: %+v", again)
				}
				if !pl.NewCA && !mustParse(t, out).CA.Equal(st.CA) {
					t.Fatal("the CA changed though the plan keeps it")
				}
			} else if !pl.NextDue.After(clk.Now()) {
				t.Fatalf("NextDue %v is not after now %v", pl.NextDue, clk.Now())
			}
		})
	}
}

// TestCARenewalOverlap checks the bundle across a CA renewal: old CA + new CA until the
// old serving certificate expires, and that certificate keeps verifying meanwhile.
func TestCertCARenewalOverlap(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	s, _ := issue(t, clk.Now(), pol, Stored{})
	caDue := RenewalTime(mustParse(t, s).CA)
	for {
		st := mustParse(t, s)
		if !RenewalTime(st.Leaf).Before(caDue) {
			break
		}
		clk.SetTime(RenewalTime(st.Leaf))
		s, _ = issue(t, clk.Now(), pol, s)
	}
	old := s
	oldSt := mustParse(t, old)

	clk.SetTime(caDue)
	s, pl := issue(t, clk.Now(), pol, s)
	if !pl.NewCA || !pl.KeepOldCA {
		t.Fatalf("plan at the CA renewal point: %+v", pl)
	}
	st := mustParse(t, s)
	if len(st.Previous) != 1 || !st.Previous[0].Equal(oldSt.CA) || st.CA.Equal(oldSt.CA) {
		t.Fatalf("bundle after CA renewal: current new %v, previous %d", !st.CA.Equal(oldSt.CA), len(st.Previous))
	}
	if !s.OverlapUntil.Equal(oldSt.Leaf.NotAfter) {
		t.Fatalf("OverlapUntil %v, want the old leaf's expiry %v", s.OverlapUntil, oldSt.Leaf.NotAfter)
	}
	// A replica that still serves the old certificate is trusted through the new bundle,
	// and the new certificate is trusted too.
	for _, d := range []time.Duration{0, day, s.OverlapUntil.Sub(clk.Now()) - time.Second} {
		now := clk.Now().Add(d)
		if err := verifyLeaf(old, s.BundlePEM, now); err != nil {
			t.Fatalf("old leaf at +%v against the new bundle: %v", d, err)
		}
		if err := verifyLeaf(s, s.BundlePEM, now); err != nil {
			t.Fatalf("new leaf at +%v: %v", d, err)
		}
	}
	// Wake at every due time until the overlap ends; the old leaf stays trusted all along.
	overlapUntil := s.OverlapUntil
	for clk.Now().Before(overlapUntil) {
		pl := PlanRenewal(clk.Now(), pol, mustParse(t, s))
		if pl.Changes() || pl.NextDue.After(overlapUntil) {
			t.Fatalf("during the overlap: %+v, want no changes and a due time by %v", pl, overlapUntil)
		}
		if err := verifyLeaf(old, s.BundlePEM, pl.NextDue.Add(-time.Second)); err != nil {
			t.Fatalf("old leaf against the bundle just before %v: %v", pl.NextDue, err)
		}
		clk.SetTime(pl.NextDue)
		s, _ = issue(t, clk.Now(), pol, s)
	}
	if st := mustParse(t, s); len(st.Previous) != 0 || !s.OverlapUntil.IsZero() {
		t.Fatalf("after the overlap: previous %d, overlap %v", len(st.Previous), s.OverlapUntil)
	}
	if err := verifyLeaf(old, s.BundlePEM, clk.Now().Add(-time.Second)); err == nil {
		t.Fatal("the old leaf still verifies after the old CA left the bundle")
	}
}

// TestTimeline runs the planner for five years, waking at every NextDue, and checks that
// the current serving certificate always verifies against the bundle, that the one it
// replaced still does, and that the bundle never holds more than two CAs.
func TestCertTimeline(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	s, _ := issue(t, clk.Now(), pol, Stored{})
	caRenewals, leafRenewals := 0, 0
	for clk.Now().Before(t0.Add(5 * 365 * day)) {
		pl := PlanRenewal(clk.Now(), pol, mustParse(t, s))
		if pl.Changes() {
			t.Fatalf("unplanned changes at +%v: %+v", clk.Now().Sub(t0), pl)
		}
		clk.SetTime(pl.NextDue)
		prev := s
		s, pl = issue(t, clk.Now(), pol, s)
		if pl.NewCA {
			caRenewals++
		} else if pl.NewLeaf {
			leafRenewals++
		}
		if err := verifyLeaf(s, s.BundlePEM, clk.Now()); err != nil {
			t.Fatalf("at +%v: leaf does not verify: %v", clk.Now().Sub(t0), err)
		}
		if err := verifyLeaf(prev, s.BundlePEM, clk.Now()); err != nil {
			t.Fatalf("at +%v: the replaced leaf does not verify against the new bundle: %v", clk.Now().Sub(t0), err)
		}
		if n := len(mustParse(t, s).Previous); n > 1 {
			t.Fatalf("at +%v: %d previous CAs in the bundle", clk.Now().Sub(t0), n)
		}
	}
	// A CA lasts a year and is renewed at 2/3 of it: 7 renewals in 5 years; leaves in between.
	if caRenewals != 7 || leafRenewals < 20 {
		t.Fatalf("%d CA and %d leaf renewals in five years", caRenewals, leafRenewals)
	}
}
