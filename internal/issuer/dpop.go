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

package issuer

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"k8s.io/utils/clock"

	"github.com/keyward-dev/keyward/internal/binding"
)

// DefaultDPoPNonceLifetime is how long a DPoP server nonce is current; the previous one
// is accepted too, so a nonce lives between one and two lifetimes.
const DefaultDPoPNonceLifetime = 5 * time.Minute

// dpopVerifier checks DPoP proofs at the token endpoint with the verifier's checker
// (internal/binding: signature, typ, alg, jwk, htm, htu, iat window, jti replay cache)
// and adds server nonces (RFC 9449 §8) that every replica shares: they are derived from
// the replay key, where the checker's own nonces are per process.
type dpopVerifier struct {
	checker  *binding.DPoPChecker
	clk      clock.PassiveClock
	require  bool
	key      []byte
	lifetime time.Duration
}

func newDPoPVerifier(clk clock.PassiveClock, nonceKey []byte, requireNonce bool, lifetime time.Duration) *dpopVerifier {
	if lifetime <= 0 {
		lifetime = DefaultDPoPNonceLifetime
	}
	return &dpopVerifier{
		checker:  binding.NewDPoPChecker(binding.DPoPOptions{}, clk),
		clk:      clk,
		require:  requireNonce,
		key:      nonceKey,
		lifetime: lifetime,
	}
}

// check verifies the DPoP header of r for htu. jkt, when set, is the key the proof must
// be signed with. No header: (nil, nil); the caller decides whether a proof is required.
func (d *dpopVerifier) check(r *http.Request, htu *url.URL, jkt string) (*binding.Proof, *oauthError) {
	values := r.Header.Values("DPoP")
	switch {
	case len(values) == 0:
		return nil, nil
	case len(values) > 1:
		return nil, invalidDPoP("multiple", "more than one DPoP header")
	}
	proof, err := d.checker.Check(values[0], r.Method, htu, "", jkt)
	if err != nil {
		var be *binding.Error
		if !errors.As(err, &be) {
			return nil, invalidDPoP("invalid", "the DPoP proof is invalid")
		}
		if be.Reason == binding.ReasonJKT {
			return nil, invalidDPoP("jkt", "the DPoP proof is not signed by the key the refresh token is bound to")
		}
		return nil, invalidDPoP(be.Reason, "the DPoP proof is invalid: "+be.Detail)
	}
	if d.require {
		now := d.clk.Now()
		if n, ok := proofNonce(values[0]); !ok || !d.valid(n, now) {
			e := newError(http.StatusBadRequest, ErrUseDPoPNonce, "dpop_nonce",
				"a DPoP proof for this server must carry the nonce of the DPoP-Nonce header")
			e.Nonce = d.nonce(now)
			return nil, e
		}
	}
	return proof, nil
}

// proofNonce reads the nonce claim of a proof the checker has accepted (so its payload is
// canonical base64url JSON without duplicate members). The name is matched exactly.
func proofNonce(proof string) (string, bool) {
	parts := strings.Split(proof, ".")
	if len(parts) != 3 {
		return "", false
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(parts[1])
	if err != nil {
		return "", false
	}
	var claims map[string]json.RawMessage
	if json.Unmarshal(payload, &claims) != nil {
		return "", false
	}
	raw, ok := claims["nonce"]
	if !ok {
		return "", false
	}
	var n string
	if json.Unmarshal(raw, &n) != nil || n == "" || len(n) > 256 {
		return "", false
	}
	return n, true
}

// nonce is the current server nonce.
func (d *dpopVerifier) nonce(now time.Time) string { return d.mac(now.UnixNano() / int64(d.lifetime)) }

func (d *dpopVerifier) valid(n string, now time.Time) bool {
	c := now.UnixNano() / int64(d.lifetime)
	a := subtle.ConstantTimeCompare([]byte(n), []byte(d.mac(c)))
	b := subtle.ConstantTimeCompare([]byte(n), []byte(d.mac(c-1)))
	return a|b == 1
}

func (d *dpopVerifier) mac(counter int64) string {
	m := hmac.New(sha256.New, d.key)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(counter))
	m.Write(b[:])
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}
