package jwks

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// testKeys caches one generated key per algorithm (RSA 2048): key generation
// is the slow part of these tests.
var (
	testKeysOnce sync.Once
	testKeysMap  map[string]jwk.Key
	testKeysErr  error
)

func testKey(t testing.TB, alg string) jwk.Key {
	t.Helper()
	testKeysOnce.Do(func() {
		testKeysMap = map[string]jwk.Key{}
		for _, a := range Algorithms() {
			k, err := Generate(a, 0)
			if err != nil {
				testKeysErr = err
				return
			}
			testKeysMap[a] = k
		}
	})
	if testKeysErr != nil {
		t.Fatalf("Generate: %v", testKeysErr)
	}
	return testKeysMap[alg]
}

func allTestKeys(t testing.TB) []jwk.Key {
	t.Helper()
	var keys []jwk.Key
	for _, alg := range Algorithms() {
		keys = append(keys, testKey(t, alg))
	}
	return keys
}

func TestProfile(t *testing.T) {
	tests := []struct {
		alg  string
		bits int
		want string
	}{
		{"ES256", 0, "ES256"},
		{"ES384", 0, "ES384"},
		{"EdDSA", 0, "EdDSA"},
		{"ES256", 4096, "ES256"},
		{"RS256", 0, "RS256/2048"},
		{"RS256", 2048, "RS256/2048"},
		{"RS256", 3072, "RS256/3072"},
		{"PS256", 4096, "PS256/4096"},
		{"PS256", 0, "PS256/2048"},
	}
	for _, tt := range tests {
		if got := Profile(tt.alg, tt.bits); got != tt.want {
			t.Errorf("Profile(%q, %d) = %q, want %q", tt.alg, tt.bits, got, tt.want)
		}
	}
}

// checkGenerated checks a freshly generated key and that a JWS signed with it
// verifies with the key recovered from PublicSetJSON/ParseSet.
func checkGenerated(t *testing.T, key jwk.Key, alg string, rsaBits int) {
	t.Helper()
	kid, ok := key.KeyID()
	if !ok || kid == "" {
		t.Fatal("generated key has no kid")
	}
	tp, err := Thumbprint(key)
	if err != nil {
		t.Fatalf("Thumbprint: %v", err)
	}
	if kid != tp {
		t.Errorf("kid = %q, want thumbprint %q", kid, tp)
	}
	if len(kid) != 43 {
		t.Errorf("kid %q is %d chars, want 43 (base64url SHA-256 without padding)", kid, len(kid))
	}
	if a, ok := key.Algorithm(); !ok || a.String() != alg {
		t.Errorf("alg = %v (set %v), want %q", a, ok, alg)
	}
	if use, ok := key.KeyUsage(); !ok || use != "sig" {
		t.Errorf("use = %q (set %v), want \"sig\"", use, ok)
	}
	if priv, err := jwk.IsPrivateKey(key); err != nil || !priv {
		t.Errorf("IsPrivateKey = %v, %v; want a private key", priv, err)
	}
	if rsaBits != 0 {
		var raw rsa.PrivateKey
		if err := jwk.Export(key, &raw); err != nil {
			t.Fatalf("Export: %v", err)
		}
		if raw.N.BitLen() != rsaBits {
			t.Errorf("RSA modulus is %d bits, want %d", raw.N.BitLen(), rsaBits)
		}
	}

	salg, ok := jwa.LookupSignatureAlgorithm(alg)
	if !ok {
		t.Fatalf("jwa does not know %q", alg)
	}
	payload := []byte(`{"sub":"keyward-test"}`)
	signed, err := jws.Sign(payload, jws.WithKey(salg, key))
	if err != nil {
		t.Fatalf("jws.Sign: %v", err)
	}

	pubJSON, err := PublicSetJSON([]jwk.Key{key})
	if err != nil {
		t.Fatalf("PublicSetJSON: %v", err)
	}
	pubKeys, err := ParseSet(pubJSON, false)
	if err != nil {
		t.Fatalf("ParseSet(public): %v", err)
	}
	set := jwk.NewSet()
	for _, k := range pubKeys {
		if err := set.AddKey(k); err != nil {
			t.Fatalf("AddKey: %v", err)
		}
	}
	got, err := jws.Verify(signed, jws.WithKeySet(set))
	if err != nil {
		t.Fatalf("jws.Verify with the parsed public set: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("verified payload = %q, want %q", got, payload)
	}
	if _, err := jws.Verify(signed, jws.WithKey(salg, pubKeys[0])); err != nil {
		t.Errorf("jws.Verify with WithKey: %v", err)
	}

	// A modified signature must not verify.
	tampered := append([]byte(nil), signed...)
	i := len(tampered) - 5
	if tampered[i] == 'A' {
		tampered[i] = 'B'
	} else {
		tampered[i] = 'A'
	}
	if _, err := jws.Verify(tampered, jws.WithKeySet(set)); err == nil {
		t.Error("jws.Verify accepted a tampered signature")
	}
}

func TestGenerate(t *testing.T) {
	for _, alg := range Algorithms() {
		t.Run(alg, func(t *testing.T) {
			key, err := Generate(alg, 0)
			if err != nil {
				t.Fatalf("Generate(%q, 0): %v", alg, err)
			}
			bits := 0
			if IsRSA(alg) {
				bits = 2048
			}
			checkGenerated(t, key, alg, bits)
		})
	}
}

func TestGenerateIgnoresRSABitsForOtherAlgs(t *testing.T) {
	for _, alg := range []string{"ES256", "ES384", "EdDSA"} {
		key, err := Generate(alg, 4096)
		if err != nil {
			t.Fatalf("Generate(%q, 4096): %v", alg, err)
		}
		if a, _ := key.Algorithm(); a.String() != alg {
			t.Errorf("alg = %v, want %s", a, alg)
		}
	}
}

// TestGenerateLargeRSA covers the slow sizes once each.
func TestGenerateLargeRSA(t *testing.T) {
	tests := []struct {
		alg  string
		bits int
	}{
		{"RS256", 3072},
		{"PS256", 4096},
	}
	for _, tt := range tests {
		t.Run(Profile(tt.alg, tt.bits), func(t *testing.T) {
			key, err := Generate(tt.alg, tt.bits)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			checkGenerated(t, key, tt.alg, tt.bits)
			// The private set round-trips too.
			priv, err := PrivateSetJSON([]jwk.Key{key})
			if err != nil {
				t.Fatalf("PrivateSetJSON: %v", err)
			}
			if _, err := ParseSet(priv, true); err != nil {
				t.Fatalf("ParseSet(private): %v", err)
			}
		})
	}
}

func TestGenerateErrors(t *testing.T) {
	tests := []struct {
		alg  string
		bits int
		want string
	}{
		{"HS256", 0, "unsupported algorithm"},
		{"ES512", 0, "unsupported algorithm"},
		{"", 0, "unsupported algorithm"},
		{"RS256", 1024, "unsupported RSA key size"},
		{"PS256", 2049, "unsupported RSA key size"},
		{"RS256", 8192, "unsupported RSA key size"},
		{"RS256", -1, "unsupported RSA key size"},
	}
	for _, tt := range tests {
		_, err := Generate(tt.alg, tt.bits)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Generate(%q, %d) error = %v, want it to mention %q", tt.alg, tt.bits, err, tt.want)
		}
	}
}

// RFC 7638 section 3.1: the thumbprint of the example RSA key.
const (
	rfc7638N          = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	rfc7638Thumbprint = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
)

func TestThumbprintRFC7638(t *testing.T) {
	key, err := jwk.ParseKey([]byte(`{"kty":"RSA","n":"` + rfc7638N + `","e":"AQAB","alg":"RS256","kid":"2011-04-29"}`))
	if err != nil {
		t.Fatalf("jwk.ParseKey: %v", err)
	}
	got, err := Thumbprint(key)
	if err != nil {
		t.Fatalf("Thumbprint: %v", err)
	}
	if got != rfc7638Thumbprint {
		t.Errorf("Thumbprint = %q, want %q", got, rfc7638Thumbprint)
	}

	// ParseSet accepts the RFC key once its kid is the thumbprint, and
	// refuses it with the RFC's own kid.
	doc := `{"keys":[{"kty":"RSA","n":"` + rfc7638N + `","e":"AQAB","alg":"RS256","kid":"` + rfc7638Thumbprint + `"}]}`
	keys, err := ParseSet([]byte(doc), false)
	if err != nil {
		t.Fatalf("ParseSet: %v", err)
	}
	if kid, _ := keys[0].KeyID(); kid != rfc7638Thumbprint {
		t.Errorf("kid = %q", kid)
	}
	bad := strings.Replace(doc, rfc7638Thumbprint, "2011-04-29", 1)
	if _, err := ParseSet([]byte(bad), false); err == nil || !strings.Contains(err.Error(), "thumbprint") {
		t.Errorf("ParseSet with kid 2011-04-29: err = %v, want a thumbprint error", err)
	}
}

func TestThumbprintPrivateEqualsPublic(t *testing.T) {
	for _, key := range allTestKeys(t) {
		pub, err := jwk.PublicKeyOf(key)
		if err != nil {
			t.Fatal(err)
		}
		a, err := Thumbprint(key)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Thumbprint(pub)
		if err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Errorf("%v: private thumbprint %q != public thumbprint %q", key.KeyType(), a, b)
		}
	}
	oct, err := jwk.Import([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Thumbprint(oct); err == nil {
		t.Error("Thumbprint accepted a symmetric key")
	}
	if _, err := Thumbprint(nil); err == nil {
		t.Error("Thumbprint accepted nil")
	}
}

// decodeSet decodes a rendered set into raw member maps.
func decodeSet(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("decoding rendered set: %v", err)
	}
	return doc.Keys
}

func memberNames(m map[string]any) string {
	var names []string
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

func TestPublicSetHasNoPrivateMembers(t *testing.T) {
	wantMembers := map[string]string{
		"ES256": "alg,crv,kid,kty,use,x,y",
		"ES384": "alg,crv,kid,kty,use,x,y",
		"EdDSA": "alg,crv,kid,kty,use,x",
		"RS256": "alg,e,kid,kty,n,use",
		"PS256": "alg,e,kid,kty,n,use",
	}
	wantPrivate := map[string]string{
		"ES256": "alg,crv,d,kid,kty,use,x,y",
		"ES384": "alg,crv,d,kid,kty,use,x,y",
		"EdDSA": "alg,crv,d,kid,kty,use,x",
		"RS256": "alg,d,dp,dq,e,kid,kty,n,p,q,qi,use",
		"PS256": "alg,d,dp,dq,e,kid,kty,n,p,q,qi,use",
	}
	for _, alg := range Algorithms() {
		t.Run(alg, func(t *testing.T) {
			key := testKey(t, alg)
			pub, err := PublicSetJSON([]jwk.Key{key})
			if err != nil {
				t.Fatal(err)
			}
			members := decodeSet(t, pub)
			if len(members) != 1 {
				t.Fatalf("got %d keys", len(members))
			}
			for _, name := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
				if _, ok := members[0][name]; ok {
					t.Errorf("public set carries private member %q", name)
				}
			}
			if got := memberNames(members[0]); got != wantMembers[alg] {
				t.Errorf("public members = %s, want %s", got, wantMembers[alg])
			}
			// Belt and braces: no private value appears anywhere in the bytes.
			priv, err := PrivateSetJSON([]jwk.Key{key})
			if err != nil {
				t.Fatal(err)
			}
			pm := decodeSet(t, priv)[0]
			if got := memberNames(pm); got != wantPrivate[alg] {
				t.Errorf("private members = %s, want %s", got, wantPrivate[alg])
			}
			for _, name := range []string{"d", "p", "q", "dp", "dq", "qi"} {
				if v, ok := pm[name].(string); ok && bytes.Contains(pub, []byte(v)) {
					t.Errorf("public set contains the value of private member %q", name)
				}
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	keys := allTestKeys(t)
	var kids []string
	for _, k := range keys {
		kid, _ := k.KeyID()
		kids = append(kids, kid)
	}
	kidsOf := func(keys []jwk.Key) []string {
		var out []string
		for _, k := range keys {
			kid, _ := k.KeyID()
			out = append(out, kid)
		}
		return out
	}

	priv1, err := PrivateSetJSON(keys)
	if err != nil {
		t.Fatalf("PrivateSetJSON: %v", err)
	}
	priv2, err := PrivateSetJSON(keys)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(priv1, priv2) {
		t.Error("PrivateSetJSON is not deterministic")
	}
	pub1, err := PublicSetJSON(keys)
	if err != nil {
		t.Fatalf("PublicSetJSON: %v", err)
	}
	pub2, err := PublicSetJSON(keys)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pub1, pub2) {
		t.Error("PublicSetJSON is not deterministic")
	}

	// Private: parse, check order, re-render to the same bytes.
	parsed, err := ParseSet(priv1, true)
	if err != nil {
		t.Fatalf("ParseSet(private): %v", err)
	}
	if got := kidsOf(parsed); strings.Join(got, " ") != strings.Join(kids, " ") {
		t.Errorf("private kids = %v, want %v", got, kids)
	}
	for i, k := range parsed {
		if ok, _ := jwk.IsPrivateKey(k); !ok {
			t.Errorf("keys[%d] parsed from the private set is not private", i)
		}
		if a, _ := k.Algorithm(); a.String() != Algorithms()[i] {
			t.Errorf("keys[%d] alg = %v, want %s", i, a, Algorithms()[i])
		}
	}
	again, err := PrivateSetJSON(parsed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, priv1) {
		t.Errorf("private set does not round-trip:\n got %s\nwant %s", again, priv1)
	}
	// Public halves of parsed private keys render like the originals.
	pubFromParsed, err := PublicSetJSON(parsed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pubFromParsed, pub1) {
		t.Error("PublicSetJSON(ParseSet(private)) differs from PublicSetJSON(keys)")
	}

	// Public: parse, check order, re-render to the same bytes.
	parsedPub, err := ParseSet(pub1, false)
	if err != nil {
		t.Fatalf("ParseSet(public): %v", err)
	}
	if got := kidsOf(parsedPub); strings.Join(got, " ") != strings.Join(kids, " ") {
		t.Errorf("public kids = %v, want %v", got, kids)
	}
	for i, k := range parsedPub {
		if ok, _ := jwk.IsPrivateKey(k); ok {
			t.Errorf("keys[%d] parsed from the public set is private", i)
		}
	}
	againPub, err := PublicSetJSON(parsedPub)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(againPub, pub1) {
		t.Errorf("public set does not round-trip:\n got %s\nwant %s", againPub, pub1)
	}

	// Each kind of set is refused in the other mode.
	if _, err := ParseSet(priv1, false); err == nil || !strings.Contains(err.Error(), "private key material") {
		t.Errorf("ParseSet(private set, false) err = %v, want a private-material error", err)
	}
	if _, err := ParseSet(pub1, true); err == nil || !strings.Contains(err.Error(), "missing private key material") {
		t.Errorf("ParseSet(public set, true) err = %v, want a missing-private-material error", err)
	}
	if _, err := PrivateSetJSON(parsedPub); err == nil || !strings.Contains(err.Error(), "not a private key") {
		t.Errorf("PrivateSetJSON(public keys) err = %v, want \"not a private key\"", err)
	}
}

func TestRenderKeyOpsAndUse(t *testing.T) {
	key, err := Generate("ES256", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := key.Set(jwk.KeyOpsKey, []string{"sign"}); err != nil {
		t.Fatal(err)
	}
	if err := key.Remove(jwk.KeyUsageKey); err != nil {
		t.Fatal(err)
	}
	priv, err := PrivateSetJSON([]jwk.Key{key})
	if err != nil {
		t.Fatalf("PrivateSetJSON: %v", err)
	}
	if got := memberNames(decodeSet(t, priv)[0]); got != "alg,crv,d,key_ops,kid,kty,x,y" {
		t.Errorf("private members = %s", got)
	}
	pub, err := PublicSetJSON([]jwk.Key{key})
	if err != nil {
		t.Fatalf("PublicSetJSON: %v", err)
	}
	if !bytes.Contains(pub, []byte(`"key_ops":["verify"]`)) {
		t.Errorf("public set %s does not carry key_ops [\"verify\"]", pub)
	}
	keys, err := ParseSet(pub, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := keys[0].KeyUsage(); ok {
		t.Error("use appeared on a key that had none")
	}
}

func TestRenderErrors(t *testing.T) {
	es := testKey(t, "ES256")
	clone := func(mod func(k jwk.Key)) jwk.Key {
		c, err := es.Clone()
		if err != nil {
			t.Fatal(err)
		}
		mod(c)
		return c
	}
	oct, err := jwk.Import([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	_ = oct.Set(jwk.KeyIDKey, "oct")
	_ = oct.Set(jwk.AlgorithmKey, jwa.HS256())
	pub, err := jwk.PublicKeyOf(es)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		keys    []jwk.Key
		private bool
		want    string
	}{
		{"no keys", nil, false, "no keys"},
		{"nil key", []jwk.Key{nil}, false, "nil key"},
		{"no kid", []jwk.Key{clone(func(k jwk.Key) { _ = k.Remove(jwk.KeyIDKey) })}, true, `missing "kid"`},
		{"no alg", []jwk.Key{clone(func(k jwk.Key) { _ = k.Remove(jwk.AlgorithmKey) })}, true, `missing "alg"`},
		{"wrong alg", []jwk.Key{clone(func(k jwk.Key) { _ = k.Set(jwk.AlgorithmKey, jwa.ES512()) })}, true, "unsupported alg"},
		{"mismatched alg", []jwk.Key{clone(func(k jwk.Key) { _ = k.Set(jwk.AlgorithmKey, jwa.ES384()) })}, false, "does not match crv"},
		{"kid not thumbprint", []jwk.Key{clone(func(k jwk.Key) { _ = k.Set(jwk.KeyIDKey, "key-1") })}, false, "thumbprint"},
		{"use enc", []jwk.Key{clone(func(k jwk.Key) { _ = k.Set(jwk.KeyUsageKey, "enc") })}, false, `"use"`},
		{"duplicate", []jwk.Key{es, es}, true, "duplicate kid"},
		{"public key in private set", []jwk.Key{pub}, true, "not a private key"},
		{"symmetric", []jwk.Key{oct}, false, "unsupported alg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			render := PublicSetJSON
			if tt.private {
				render = PrivateSetJSON
			}
			out, err := render(tt.keys)
			if err == nil {
				t.Fatalf("rendered %s", out)
			}
			if !errors.Is(err, ErrInvalidSet) {
				t.Errorf("error %v does not wrap ErrInvalidSet", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestRSAKeyWithoutPrecomputedValues(t *testing.T) {
	raw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	bare := &rsa.PrivateKey{PublicKey: raw.PublicKey, D: raw.D, Primes: raw.Primes}
	key, err := jwk.Import(bare)
	if err != nil {
		t.Fatal(err)
	}
	if err := setMetadata(key, "", "RS256", "sig", nil); err != nil {
		t.Fatal(err)
	}
	out, err := PrivateSetJSON([]jwk.Key{key})
	if err != nil {
		t.Fatalf("PrivateSetJSON: %v", err)
	}
	if m := decodeSet(t, out)[0]; m["qi"] == nil || m["dp"] == nil || m["dq"] == nil {
		t.Errorf("CRT values missing from %v", memberNames(m))
	}
	if bare.Precomputed.Dp != nil {
		t.Error("PrivateSetJSON mutated the caller's key")
	}
}
