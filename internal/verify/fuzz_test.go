package verify

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/keyward-dev/keyward/internal/bundle"
	"github.com/keyward-dev/keyward/internal/jwks"
	"github.com/keyward-dev/keyward/internal/revocation"
)

// Fuzzing uses fixed keys and a fixed clock so that the committed seed tokens in
// testdata/fuzz/FuzzVerify stay valid. The keys are derived from fixed strings: they
// protect nothing.

var (
	fuzzOnce    sync.Once
	fuzzSigners []*signer
	fuzzKeys    *KeySet
)

func fuzzSetup(t testing.TB) ([]*signer, *KeySet) {
	fuzzOnce.Do(func() {
		scalar := func(label string, n int) []byte {
			h := sha256.Sum256([]byte(label))
			out := append(h[:], h[:]...)[:n]
			out[0] &= 0x7f // below the group order
			return out
		}
		p256, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), scalar("keyward fuzz ES256", 32))
		if err != nil {
			t.Fatal(err)
		}
		p384, err := ecdsa.ParseRawPrivateKey(elliptic.P384(), scalar("keyward fuzz ES384", 48))
		if err != nil {
			t.Fatal(err)
		}
		edSeed := sha256.Sum256([]byte("keyward fuzz EdDSA"))
		ed := ed25519.NewKeyFromSeed(edSeed[:])
		fuzzSigners = []*signer{
			signerFromPrivate(t, jwks.AlgES256, "fuzz-es256", p256),
			signerFromPrivate(t, jwks.AlgES384, "fuzz-es384", p384),
			signerFromPrivate(t, jwks.AlgEdDSA, "fuzz-eddsa", ed),
		}
		var keys []jwk.Key
		for _, s := range fuzzSigners {
			keys = append(keys, s.pub)
		}
		fuzzKeys, err = NewKeySet(keys)
		if err != nil {
			t.Fatal(err)
		}
	})
	return fuzzSigners, fuzzKeys
}

// fuzzSeeds are the tokens written to testdata/fuzz/FuzzVerify by
// KEYWARD_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds ./internal/verify/
func fuzzSeeds(t testing.TB) map[string]string {
	signers, _ := fuzzSetup(t)
	es, es384, ed := signers[0], signers[1], signers[2]
	std := claims(nil)
	seeds := map[string]string{
		"valid_es256":        es.token(t, es.stdHeader(), std),
		"valid_es384":        es384.token(t, es384.stdHeader(), std),
		"valid_eddsa":        ed.token(t, ed.stdHeader(), std),
		"valid_escapes":      ed.token(t, `{"\u0061lg":"EdDSA","kid":"fuzz-\u0065ddsa","typ":"at+jwt"}`, `{"iss":"`+testIssuer+`","aud":["\u0061pi://orders"],"exp":1e10,"sc\u006fpe":"a b","cnf":{"jkt":"x"}}`),
		"alg_none":           unsigned(`{"alg":"none","kid":"fuzz-es256"}`, std, nil),
		"alg_hmac":           hs256(`{"alg":"HS256","kid":"fuzz-es256"}`, std, []byte("secret")),
		"embedded_jwk":       ed.token(t, `{"alg":"EdDSA","kid":"fuzz-eddsa","jwk":{"kty":"OKP"}}`, std),
		"crit":               ed.token(t, `{"alg":"EdDSA","kid":"fuzz-eddsa","crit":["b64"],"b64":false}`, std),
		"duplicate_exp":      ed.token(t, ed.stdHeader(), `{"exp":1,"EXP":2}`),
		"nested":             ed.token(t, `{"alg":"EdDSA","kid":"fuzz-eddsa","cty":"JWT"}`, ed.token(t, ed.stdHeader(), std)),
		"expired":            ed.token(t, ed.stdHeader(), claims(map[string]any{"exp": 1})),
		"psychic":            unsigned(es.stdHeader(), std, make([]byte, 64)),
		"padding":            ed.token(t, ed.stdHeader(), std) + "==",
		"deep_json":          ed.token(t, ed.stdHeader(), `{"exp":1,"x":`+strings.Repeat("[", 70)+strings.Repeat("]", 70)+`}`),
		"revoked_sub":        ed.token(t, ed.stdHeader(), claims(map[string]any{"sub": "revoked-sub", "iat": nil})),
		"json_serialization": `{"payload":"e30","protected":"eyJhbGciOiJFZERTQSJ9","signature":""}`,
	}
	return seeds
}

func fuzzVerifier(t testing.TB) *Verifier {
	_, ks := fuzzSetup(t)
	rev := revocation.New(bundle.Revocations{
		Subject: []bundle.Revoked{{Value: "revoked-sub", IssuedBefore: testNow.Unix(), Expires: testNow.Unix() + 1}},
	})
	opts := testOptions()
	opts.CacheSize = 16
	return New(ks, opts, rev, newFakeClock())
}

// FuzzVerify: Verify never panics, and an accepted token has exp in the future (within
// the leeway) and was verified by a key of the set; a second call agrees (cache hit).
func FuzzVerify(f *testing.F) {
	for _, tok := range fuzzSeeds(f) {
		f.Add([]byte(tok))
	}
	v := fuzzVerifier(f)
	_, ks := fuzzSetup(f)
	now := testNow.Unix()
	f.Fuzz(func(t *testing.T, data []byte) {
		tok := string(data)
		c, err := v.Verify(tok)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not *Error", err)
			}
			if c != nil {
				t.Fatal("claims returned with an error")
			}
			return
		}
		if c.Expiry+v.leeway <= now {
			t.Fatalf("accepted a token with exp %d at %d", c.Expiry, now)
		}
		if ks.lookup([]byte(c.KID)) == nil {
			t.Fatalf("accepted a token with kid %q not in the set", c.KID)
		}
		if c.Issuer != testIssuer {
			t.Fatalf("accepted iss %q", c.Issuer)
		}
		if c2, err := v.Verify(tok); err != nil || c2 != c {
			t.Fatalf("second Verify disagrees: %v", err)
		}
		if _, _, err := VerifyJWS(tok, ks, nil); err != nil {
			t.Fatalf("VerifyJWS refuses an accepted token: %v", err)
		}
	})
}

// FuzzCheckJSON: checkJSON agrees with jwks.CheckNoDuplicateMembers on every input.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `1`, `"x"`, `{"a":1,"A":2}`, `{"a":1,"a":2}`, `{"a":{"b":1,"b":2}}`,
		`{"\u0061":1,"a":2}`, `{"ſub":1,"sub":2}`, `{"K":1,"k":2}`, `{"a":[{"x":1},{"x":1}]}`,
		`{"a":"\ud800"}`, `{"a":1}x`, `{"a":-0.5e+3}`, `{"a":01}`, `{"a":1.}`, " {\"a\" : true } ",
		`{"a":"\x01"}`, "\xff", strings.Repeat("[", 64) + strings.Repeat("]", 64),
		strings.Repeat("[", 65) + strings.Repeat("]", 65), `{"a":nul}`, `{,}`, `[1,]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		mine := checkJSON(data)
		ref := jwks.CheckNoDuplicateMembers(data)
		if (mine == jsonOK) != (ref == nil) {
			t.Fatalf("checkJSON(%q) = %d, jwks.CheckNoDuplicateMembers = %v", data, mine, ref)
		}
		if mine == jsonOK && bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("{")) {
			it := newMemberIter(data) // must walk a checked object without panicking
			for {
				if _, _, _, _, ok := it.next(); !ok {
					break
				}
			}
		}
	})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzVerify (run with
// KEYWARD_WRITE_FUZZ_SEEDS=1). Without it, it checks that the committed valid seeds
// still verify, so they keep exercising the accepting path.
func TestWriteFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzVerify")
	if os.Getenv("KEYWARD_WRITE_FUZZ_SEEDS") != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, tok := range fuzzSeeds(t) {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", tok)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	v := fuzzVerifier(t)
	for _, name := range []string{"valid_es256", "valid_es384", "valid_eddsa", "valid_escapes"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(data), "\n")
		if len(lines) < 2 || !strings.HasPrefix(lines[1], "[]byte(") {
			t.Fatalf("%s: not a fuzz seed file", name)
		}
		var tok string
		if _, err := fmt.Sscanf(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"), "%q", &tok); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := v.Verify(tok); err != nil {
			t.Errorf("seed %s no longer verifies: %v", name, err)
		}
	}
}
