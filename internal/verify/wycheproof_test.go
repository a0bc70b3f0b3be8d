package verify

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/keyward-dev/keyward/internal/jwks"
)

// Wycheproof vectors (Apache 2.0): the JWS and JWK files are shared with internal/jwks
// (../jwks/testdata/wycheproof/), the raw signature files are in testdata/wycheproof/
// (see the README there).
//
// Every "invalid" vector must be rejected. Every "valid" vector must be accepted, except
// the ones Keyward's policy refuses on purpose, listed in wycheproofRefused with the
// reason. A listed vector that starts being accepted fails the test too, so the list
// stays exact. "acceptable" vectors are listed in wycheproofAcceptable with the choice.

// wycheproofRefused: valid JWS/JWK vectors refused by policy, by file and tcId.
var wycheproofRefused = map[string]map[string]string{
	"json_web_signature_test.json": {
		// HMAC: Keyward verifies only with asymmetric keys; a bundle never carries a
		// secret, and NewKeySet refuses symmetric keys ("hs256", "base64", rfc7520 groups).
		"1": "HS256 key", "348": "HS256 key", "352": "HS256 key",
		"357": "HS256 key", "358": "HS256 key", "359": "HS256 key",
		"376": "HS256 key", "377": "HS256 key",
		// Also HMAC, and besides a '?' inside a base64url part, which we refuse as not
		// canonical base64url (the vectors call it valid because their decoder skips it).
		"372": "HS256 key; '?' in the header part", "373": "HS256 key; '?' in the payload part",
		// Algorithms outside ES256, ES384, EdDSA, RS256, PS256: NewKeySet refuses the key.
		"264": "RS384 unsupported", "265": "RS384 unsupported", "266": "RS384 unsupported", "267": "RS384 unsupported",
		"268": "RS512 unsupported", "269": "RS512 unsupported", "270": "RS512 unsupported", "271": "RS512 unsupported",
		"320": "PS384 unsupported", "321": "PS384 unsupported", "322": "PS384 unsupported", "323": "PS384 unsupported",
		"325": "PS512 unsupported", "326": "PS512 unsupported", "327": "PS512 unsupported", "328": "PS512 unsupported",
		// RFC 7520 Figure 20 signs with PS384 under a key whose alg is PS256: the key's alg
		// decides (alg pinning), and PS384 is unsupported anyway.
		"346": "PS384 under a PS256 key", "350": "PS384 under a PS256 key",
		// RFC 7520 Figure 27: ES512 (P-521), key alg "ES521": unsupported.
		"347": "ES512 / P-521 unsupported", "351": "ES512 / P-521 unsupported",
	},
	"json_web_key_test.json": {
		// HMAC key sets.
		"2": "HS256 key set", "13": "HS256 key", "14": "HS384 key", "15": "HS512 key",
	},
}

// wycheproofAcceptable: "acceptable" raw vectors and what we do with them.
var wycheproofAcceptable = map[string]map[string]bool{ // true = accepted
	// PKCS #1 v1.5 DigestInfo without the NULL parameters: crypto/rsa compares the
	// encoded message with the one canonical encoding, so it is refused (strict).
	"rsa_signature_2048_sha256_test.json": {"tcId 8": false},
}

type wycheTest struct {
	TcID    json.RawMessage `json:"tcId"`
	Comment string          `json:"comment"`
	Flags   []string        `json:"flags"`
	Result  string          `json:"result"`
	JWS     json.RawMessage `json:"jws"`
	Msg     string          `json:"msg"`
	Sig     string          `json:"sig"`
}

func (w wycheTest) id() string { return strings.Trim(string(w.TcID), `"`) }

type wycheGroup struct {
	Comment      string          `json:"comment"`
	Private      json.RawMessage `json:"private"`
	Public       json.RawMessage `json:"public"`
	PublicKeyDer string          `json:"publicKeyDer"`
	Tests        []wycheTest     `json:"tests"`
}

func loadWyche(t *testing.T, path string) []wycheGroup {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		TestGroups []wycheGroup `json:"testGroups"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.TestGroups) == 0 {
		t.Fatalf("%s: no test groups", path)
	}
	return f.TestGroups
}

// checkRefused compares a valid vector's outcome with the policy list.
func checkWycheOutcome(t *testing.T, file string, tc wycheTest, accepted bool, why string) (refused bool) {
	t.Helper()
	reason, listed := wycheproofRefused[file][tc.id()]
	switch tc.Result {
	case "invalid":
		if accepted {
			t.Errorf("tcId %s (%s, %v): invalid vector accepted", tc.id(), tc.Comment, tc.Flags)
		}
		if listed {
			t.Errorf("tcId %s: invalid vector in the refused-by-policy list", tc.id())
		}
	case "valid":
		switch {
		case listed && accepted:
			t.Errorf("tcId %s: listed as refused (%s) but accepted", tc.id(), reason)
		case !listed && !accepted:
			t.Errorf("tcId %s (%s): valid vector rejected: %s", tc.id(), tc.Comment, why)
		}
		return listed
	default:
		t.Errorf("tcId %s: unexpected result %q", tc.id(), tc.Result)
	}
	return false
}

// jwsString returns a vector's jws member as the string a client would send.
func jwsString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw) // JSON serialization given as an object
}

// keySetFromJWK builds a KeySet from a JWK or JWK Set document as a bundle would hand
// it over, leniently parsed by jwx (jwks.ParseSet would refuse Wycheproof's name kids).
// A key set NewKeySet refuses, or keys jwx cannot parse, give an empty set.
func keySetFromJWK(t *testing.T, doc json.RawMessage, isSet bool) (*KeySet, string) {
	t.Helper()
	var keys []jwk.Key
	if isSet {
		set, err := jwk.Parse(doc)
		if err != nil {
			return &KeySet{}, "jwx: " + err.Error()
		}
		for i := range set.Len() {
			k, _ := set.Key(i)
			keys = append(keys, k)
		}
	} else {
		k, err := jwk.ParseKey(doc)
		if err != nil {
			return &KeySet{}, "jwx: " + err.Error()
		}
		keys = []jwk.Key{k}
	}
	ks, err := NewKeySet(keys)
	if err != nil {
		return &KeySet{}, err.Error()
	}
	return ks, ""
}

func TestWycheproofJWS(t *testing.T) {
	const file = "json_web_signature_test.json"
	groups := loadWyche(t, filepath.Join("..", "jwks", "testdata", "wycheproof", file))
	total, refused := 0, 0
	for _, g := range groups {
		doc := g.Public
		if len(doc) == 0 {
			doc = g.Private // NewKeySet uses the public half
		}
		ks, keyErr := keySetFromJWK(t, doc, false)
		for _, tc := range g.Tests {
			total++
			_, _, err := VerifyJWS(jwsString(tc.JWS), ks, nil)
			why := keyErr
			if err != nil {
				why += " " + err.Error()
			}
			if checkWycheOutcome(t, file, tc, err == nil, why) {
				refused++
			}
		}
	}
	if total != 401 || refused != len(wycheproofRefused[file]) {
		t.Errorf("ran %d vectors (want 401), %d refused by policy (want %d)", total, refused, len(wycheproofRefused[file]))
	}
}

func TestWycheproofJWK(t *testing.T) {
	const file = "json_web_key_test.json"
	groups := loadWyche(t, filepath.Join("..", "jwks", "testdata", "wycheproof", file))
	total, refused := 0, 0
	for _, g := range groups {
		// Each set is tried in both forms the vector gives; the token must pass (valid)
		// or fail (invalid) with every form.
		forms := []json.RawMessage{g.Private}
		if len(g.Public) > 0 {
			forms = append(forms, g.Public)
		}
		for _, doc := range forms {
			ks, keyErr := keySetFromJWK(t, doc, true)
			if os.Getenv("WYCHE_DEBUG") != "" {
				t.Logf("%s: keys %d, %s", g.Comment, ks.Len(), keyErr)
			}
			for _, tc := range g.Tests {
				total++
				_, _, err := VerifyJWS(jwsString(tc.JWS), ks, nil)
				why := keyErr
				if err != nil {
					why += " " + err.Error()
				}
				if checkWycheOutcome(t, file, tc, err == nil, why) {
					refused++
				}
			}
		}
	}
	if total < 26 || refused < len(wycheproofRefused[file]) {
		t.Errorf("ran %d vectors, %d refused by policy", total, refused)
	}
}

// TestWycheproofSignatures runs the raw signature vectors through key.verifySignature,
// the function the JWS layer calls.
func TestWycheproofSignatures(t *testing.T) {
	files := []struct {
		file, alg string
		tests     int
	}{
		{"ecdsa_secp256r1_sha256_p1363_test.json", jwks.AlgES256, 262},
		{"ecdsa_secp384r1_sha384_p1363_test.json", jwks.AlgES384, 280},
		{"ed25519_test.json", jwks.AlgEdDSA, 151},
		{"rsa_signature_2048_sha256_test.json", jwks.AlgRS256, 259},
		{"rsa_pss_2048_sha256_mgf1_32_test.json", jwks.AlgPS256, 108},
	}
	for _, f := range files {
		t.Run(f.alg, func(t *testing.T) {
			groups := loadWyche(t, filepath.Join("testdata", "wycheproof", f.file))
			total := 0
			for _, g := range groups {
				der, err := hex.DecodeString(g.PublicKeyDer)
				if err != nil {
					t.Fatal(err)
				}
				pub, err := x509.ParsePKIXPublicKey(der)
				if err != nil {
					t.Fatalf("group key: %v", err)
				}
				k, err := newKey("wycheproof", f.alg, pub)
				if err != nil {
					t.Fatalf("group key: %v", err)
				}
				for _, tc := range g.Tests {
					total++
					msg, err1 := hex.DecodeString(tc.Msg)
					sig, err2 := hex.DecodeString(tc.Sig)
					if err1 != nil || err2 != nil {
						t.Fatalf("tcId %s: bad hex", tc.id())
					}
					got := k.verifySignature(msg, sig)
					switch tc.Result {
					case "valid", "invalid":
						if want := tc.Result == "valid"; got != want {
							t.Errorf("tcId %s (%s, %v): verify = %v, want %v", tc.id(), tc.Comment, tc.Flags, got, want)
						}
					case "acceptable":
						want, listed := wycheproofAcceptable[f.file]["tcId "+tc.id()]
						if !listed {
							t.Errorf("tcId %s (%s, %v): acceptable vector not documented (verify = %v)", tc.id(), tc.Comment, tc.Flags, got)
						} else if got != want {
							t.Errorf("tcId %s: acceptable vector: verify = %v, documented %v", tc.id(), got, want)
						}
					}
				}
			}
			if total != f.tests {
				t.Errorf("ran %d vectors, want %d", total, f.tests)
			}
		})
	}
}
