package jwks

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// Wycheproof vectors (testdata/wycheproof, Apache 2.0, see README.md there).
//
// Two files apply to this package:
//
//   - json_web_key_test.json: JWK sets (a "private" and usually a "public"
//     form) with one JWS each. Every group is run: each set goes through
//     ParseSet (private sets with private=true, public sets with
//     private=false), and when a set is accepted the JWS is verified with the
//     parsed key.
//   - json_web_signature_test.json: one JWK and many JWSs per group. Every
//     group's key goes through ParseSet; for the keys ParseSet accepts, every
//     JWS is verified and the outcome must match the vector.
//
// Deliberate deviations from the vectors' "valid" results, by policy:
//
//   - Symmetric (kty "oct", HS256/384/512) keys are refused: Keyward signs
//     only with asymmetric keys, and a JWKS must never carry a secret. The
//     HMAC groups (json_web_key tcId 2, 13-15; json_web_signature groups
//     "hs256", "base64" and the rfc7520 HS256 figures) are therefore only
//     checked to be refused.
//   - RS384, RS512, PS384, PS512 and ES512 (P-521) keys are refused as
//     unsupported algorithms, so their JWS vectors (including the PS512
//     group's alg-confusion vectors) are not verified.
//   - A JWS whose header "alg" differs from the key's "alg" is refused (alg
//     pinning, jws.WithAlgorithmMatch(true)); the rfc7520 "Figure20" vectors
//     sign with PS384 under a key marked PS256, which Wycheproof calls valid.
//   - Only the compact serialization is accepted.
//
// Wycheproof kids are names ("kid-rsa-sign"), not RFC 7638 thumbprints, and
// ParseSet requires thumbprint kids; rekey() replaces each kid with the
// thumbprint computed from the raw members so that the defect a vector is
// about is the only one in the set. Sets flagged DuplicateKid keep their kids.
//
// The raw-primitive files in /work/shared/testdata/wycheproof (ecdsa_*,
// ed25519, rsa_*) exercise crypto/ecdsa, crypto/ed25519 and crypto/rsa
// rather than this package and are not copied.

type wycheproofFile struct {
	TestGroups []struct {
		Comment string          `json:"comment"`
		Private json.RawMessage `json:"private"`
		Public  json.RawMessage `json:"public"`
		Tests   []struct {
			TcID    int      `json:"tcId"`
			Comment string   `json:"comment"`
			JWS     string   `json:"jws"`
			Result  string   `json:"result"`
			Flags   []string `json:"flags"`
		} `json:"tests"`
	} `json:"testGroups"`
}

func loadWycheproof(t *testing.T, name string) wycheproofFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "wycheproof", name))
	if err != nil {
		t.Fatal(err)
	}
	var f wycheproofFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(f.TestGroups) == 0 {
		t.Fatalf("%s: no test groups", name)
	}
	return f
}

// rawThumbprint computes the RFC 7638 thumbprint from a JWK's raw members;
// ok is false when the required members are missing.
func rawThumbprint(k map[string]any) (string, bool) {
	var names []string
	switch k["kty"] {
	case "EC":
		names = []string{"crv", "kty", "x", "y"}
	case "OKP":
		names = []string{"crv", "kty", "x"}
	case "RSA":
		names = []string{"e", "kty", "n"}
	case "oct":
		names = []string{"k", "kty"}
	default:
		return "", false
	}
	m := map[string]string{}
	for _, n := range names {
		s, ok := k[n].(string)
		if !ok {
			return "", false
		}
		m[n] = s
	}
	data, err := json.Marshal(m) // sorted keys, no whitespace
	if err != nil {
		return "", false
	}
	sum := sha256.Sum256(data)
	return base64.RawURLEncoding.EncodeToString(sum[:]), true
}

// rekey returns the JWK Set doc with every kid replaced by the key's raw
// thumbprint (when it can be computed).
func rekey(t *testing.T, doc []byte) []byte {
	t.Helper()
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		if tp, ok := rawThumbprint(k); ok {
			k["kid"] = tp
		}
	}
	out, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func hasFlag(flags []string, f string) bool {
	for _, v := range flags {
		if v == f {
			return true
		}
	}
	return false
}

// verifyCompact verifies a compact JWS the way a Keyward verifier should:
// compact serialization only, algorithm pinned to the key's alg.
func verifyCompact(token string, key jwk.Key) error {
	alg, _ := key.Algorithm()
	salg, _ := jwa.LookupSignatureAlgorithm(alg.String())
	if strings.HasPrefix(strings.TrimSpace(token), "{") {
		return errNotCompact
	}
	_, err := jws.Verify([]byte(token), jws.WithKey(salg, key), jws.WithAlgorithmMatch(true))
	return err
}

var errNotCompact = jwsError("JSON serialization is not accepted")

type jwsError string

func (e jwsError) Error() string { return string(e) }

func TestWycheproofJSONWebKey(t *testing.T) {
	// Why ParseSet refuses each vector's sets ("" = accepted). Wycheproof's
	// own expectation is in the comment where it differs.
	want := map[int]string{
		1:  "symmetric",                              // MixedKeySet
		2:  "symmetric",                              // valid HMAC set (policy)
		3:  "symmetric",                              // modified HMAC signature
		4:  "symmetric",                              // DuplicateKid (HMAC)
		5:  "",                                       // valid RS256
		6:  `"use" is "enc"`,                         // RSA1_5/enc key used to verify
		7:  "ROCA",                                   // ROCA-vulnerable modulus
		8:  "RSA modulus is 1024 bits",               // too small
		9:  "RSA public exponent must be odd",        // e = 1
		10: "symmetric",                              // short HMAC keys
		11: "symmetric",                              //
		12: "symmetric",                              //
		13: "symmetric",                              // long HMAC keys, valid (policy)
		14: "symmetric",                              //
		15: "symmetric",                              //
		16: "symmetric",                              // empty HMAC keys
		17: "symmetric",                              //
		18: "symmetric",                              //
		19: `unsupported alg "ES521"`,                // alg/curve mismatch
		20: `unsupported alg "ES224"`,                //
		21: `"use" is "enc"`,                         //
		22: "not a valid point on P-256",             // modified point
		23: `alg "ES256" does not match crv "P-384"`, // wrong curve
		24: `alg "ES256" does not match kty "RSA"`,   // wrong kty
		25: "symmetric",                              // AES keys
		26: "symmetric",                              //
	}

	f := loadWycheproof(t, "json_web_key_test.json")
	ran := 0
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			reason, ok := want[tc.TcID]
			if !ok {
				t.Errorf("tcId %d (%s/%s): no expectation in this test", tc.TcID, g.Comment, tc.Comment)
				continue
			}
			if reason == "" && tc.Result != "valid" {
				t.Errorf("tcId %d: expected to accept a vector Wycheproof calls %s", tc.TcID, tc.Result)
			}
			sets := []struct {
				doc     json.RawMessage
				private bool
			}{{g.Private, true}, {g.Public, false}}
			for _, s := range sets {
				if len(s.doc) == 0 {
					continue
				}
				doc := []byte(s.doc)
				if !hasFlag(tc.Flags, "DuplicateKid") {
					doc = rekey(t, doc)
				}
				ran++
				keys, err := ParseSet(doc, s.private)
				if reason != "" {
					if err == nil {
						t.Errorf("tcId %d (%s, private=%v): ParseSet accepted the set", tc.TcID, g.Comment, s.private)
					} else if !strings.Contains(err.Error(), reason) {
						t.Errorf("tcId %d (%s, private=%v): error %q does not mention %q", tc.TcID, g.Comment, s.private, err, reason)
					}
					continue
				}
				if err != nil {
					t.Errorf("tcId %d (%s, private=%v): ParseSet: %v", tc.TcID, g.Comment, s.private, err)
					continue
				}
				pub, err := jwk.PublicKeyOf(keys[0])
				if err != nil {
					t.Fatal(err)
				}
				if err := verifyCompact(tc.JWS, pub); err != nil {
					t.Errorf("tcId %d (private=%v): valid JWS does not verify: %v", tc.TcID, s.private, err)
				}
			}
		}
	}
	if ran != 37 { // 26 vectors, 11 of them with a public set too
		t.Errorf("only %d set checks ran", ran)
	}
}

func TestWycheproofJSONWebSignature(t *testing.T) {
	f := loadWycheproof(t, "json_web_signature_test.json")
	verified, refusedKeys := 0, 0
	for gi, g := range f.TestGroups {
		// The group's public JWK, or the one derived from its private JWK.
		var pubJWK map[string]any
		src := g.Public
		if len(src) == 0 {
			src = g.Private
		}
		if err := json.Unmarshal(src, &pubJWK); err != nil {
			t.Fatalf("group %d: %v", gi, err)
		}
		for _, name := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
			if pubJWK["kty"] != "oct" {
				delete(pubJWK, name)
			}
		}
		if tp, ok := rawThumbprint(pubJWK); ok {
			pubJWK["kid"] = tp
		}
		alg, _ := pubJWK["alg"].(string)
		use, hasUse := pubJWK["use"]
		_, hasOps := pubJWK["key_ops"]
		opsVerify := false
		if ops, ok := pubJWK["key_ops"].([]any); ok {
			for _, op := range ops {
				opsVerify = opsVerify || op == "verify"
			}
		}

		// Why ParseSet must refuse this key, if it must.
		var reason string
		switch {
		case pubJWK["kty"] == "oct":
			reason = "symmetric"
		case hasUse && use != "sig":
			reason = `"use" is`
		case hasOps && !opsVerify:
			reason = `"key_ops"`
		case alg == "":
			reason = `missing "alg"`
		case !IsSupported(alg):
			reason = "unsupported alg"
		}

		doc, err := json.Marshal(map[string]any{"keys": []any{pubJWK}})
		if err != nil {
			t.Fatal(err)
		}
		keys, err := ParseSet(doc, false)
		if reason != "" {
			if err == nil {
				t.Errorf("group %d (%s, alg %q): ParseSet accepted a key it must refuse (%s)", gi, g.Comment, alg, reason)
			} else if !strings.Contains(err.Error(), reason) {
				t.Errorf("group %d (%s): error %q does not mention %q", gi, g.Comment, err, reason)
			}
			refusedKeys++
			continue
		}
		if err != nil {
			t.Errorf("group %d (%s): ParseSet: %v", gi, g.Comment, err)
			continue
		}
		key := keys[0]

		// The private JWK parses as a private set and has the same kid.
		if len(g.Private) > 0 {
			var privJWK map[string]any
			if err := json.Unmarshal(g.Private, &privJWK); err != nil {
				t.Fatal(err)
			}
			privJWK["kid"] = pubJWK["kid"]
			// One vector's private key_ops is ["sign, verify"] (a single
			// malformed entry); ParseSet must refuse it.
			badOps := false
			if ops, ok := privJWK["key_ops"].([]any); ok {
				for _, op := range ops {
					badOps = badOps || (op != "sign" && op != "verify")
				}
			}
			pdoc, _ := json.Marshal(map[string]any{"keys": []any{privJWK}})
			_, err := ParseSet(pdoc, true)
			switch {
			case badOps && (err == nil || !strings.Contains(err.Error(), `"key_ops" contains`)):
				t.Errorf("group %d (%s): private JWK with malformed key_ops: err = %v", gi, g.Comment, err)
			case !badOps && err != nil:
				t.Errorf("group %d (%s): private JWK: %v", gi, g.Comment, err)
			}
		}

		for _, tc := range g.Tests {
			wantValid := tc.Result == "valid"
			if wantValid && headerAlg(tc.JWS) != alg {
				wantValid = false // alg pinning (see the comment at the top)
			}
			err := verifyCompact(tc.JWS, key)
			verified++
			if gotValid := err == nil; gotValid != wantValid {
				t.Errorf("tcId %d (%s/%s, flags %v): verified=%v (err %v), want %v (Wycheproof: %s)",
					tc.TcID, g.Comment, tc.Comment, tc.Flags, gotValid, err, wantValid, tc.Result)
			}
		}
	}
	t.Logf("verified %d JWS vectors; refused %d group keys", verified, refusedKeys)
	if verified < 300 {
		t.Errorf("only %d JWS vectors were verified", verified)
	}
}

// headerAlg returns the protected header's alg of a compact JWS ("" if it
// cannot be read).
func headerAlg(token string) string {
	head, _, ok := strings.Cut(token, ".")
	if !ok {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return ""
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(raw, &h) != nil {
		return ""
	}
	return h.Alg
}
