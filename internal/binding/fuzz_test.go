package binding

import (
	"errors"
	"net/url"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

var knownReasons = map[string]bool{
	ReasonMalformed: true, ReasonTyp: true, ReasonAlg: true, ReasonJWK: true,
	ReasonSignature: true, ReasonHTM: true, ReasonHTU: true, ReasonIAT: true,
	ReasonReplay: true, ReasonATH: true, ReasonJKT: true, ReasonNonce: true,
	ReasonClaims: true,
}

// FuzzDPoPCheck feeds arbitrary proofs and request data to Check. It must
// never panic, must fail only with a *binding.Error carrying a known
// Reason, and must return a consistent Proof on success. Seeds live in
// testdata/fuzz/FuzzDPoPCheck (the RFC 9449 example proofs and variants).
func FuzzDPoPCheck(f *testing.F) {
	f.Add(rfc9449TokenProof, "POST", "https://server.example.com/token", "", "")
	f.Add(rfc9449ResourceProof, "GET", "https://resource.example.org/protectedresource", rfc9449AccessToken, rfc9449JKT)
	f.Fuzz(func(t *testing.T, proof, method, rawURL, token, jkt string) {
		u, err := url.Parse(rawURL)
		if err != nil {
			u = &url.URL{}
		}
		// The clock sits between the two RFC examples' iat so both can pass.
		clk := clocktesting.NewFakeClock(time.Unix(1562262617, 0))
		for _, opts := range []DPoPOptions{{}, {RequireNonce: true}} {
			c := NewDPoPChecker(opts, clk)
			p, err := c.Check(proof, method, u, token, jkt)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("error %v (%T) is not a *binding.Error", err, err)
				}
				if !knownReasons[e.Reason] {
					t.Fatalf("unknown reason %q", e.Reason)
				}
				if e.UseNonce != (e.Reason == ReasonNonce) || (e.UseNonce && e.Nonce == "") {
					t.Fatalf("inconsistent nonce error %+v", e)
				}
				continue
			}
			if p == nil || len(p.JKT) != 43 || p.HTM != method || p.JTI == "" || len(proof) > MaxProofBytes {
				t.Fatalf("inconsistent accepted proof %+v", p)
			}
			if jkt != "" && p.JKT != jkt {
				t.Fatalf("accepted proof with jkt %q, want %q", p.JKT, jkt)
			}
			if opts.RequireNonce {
				t.Fatalf("accepted a proof without a valid server nonce")
			}
			// A second check of the same proof is always a replay.
			if _, err := c.Check(proof, method, u, token, jkt); err == nil {
				t.Fatalf("replay accepted")
			}
		}
	})
}
