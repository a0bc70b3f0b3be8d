package jwks

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

type keyMap = map[string]any

// setOf renders keys as a private or public set and decodes it to maps.
func setOf(t *testing.T, private bool, keys ...jwk.Key) []keyMap {
	t.Helper()
	render := PublicSetJSON
	if private {
		render = PrivateSetJSON
	}
	data, err := render(keys)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return decodeSet(t, data)
}

func encodeSet(t *testing.T, keys ...keyMap) []byte {
	t.Helper()
	list := make([]any, len(keys))
	for i, k := range keys {
		list[i] = k
	}
	data, err := json.Marshal(map[string]any{"keys": list})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func with(k keyMap, kv ...any) keyMap {
	out := keyMap{}
	for n, v := range k {
		out[n] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

// del is a sentinel for with(): remove the member.
var del any = nil

// b64mod decodes a base64url member, applies f, and re-encodes it.
func b64mod(t *testing.T, s any, f func([]byte) []byte) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s.(string))
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(f(append([]byte(nil), b...)))
}

func flipLast(b []byte) []byte { b[len(b)-1] ^= 1; return b }

// secretValues lists long string values (key parameters) in a document, to
// check that errors never echo them.
func secretValues(data []byte) []string {
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if json.Unmarshal(data, &doc) != nil {
		return nil
	}
	var out []string
	for _, k := range doc.Keys {
		for name, v := range k {
			if s, ok := v.(string); ok && len(s) >= 16 && name != "kid" {
				out = append(out, s[:16])
			}
		}
	}
	return out
}

func TestParseSetRejects(t *testing.T) {
	es256Priv := setOf(t, true, testKey(t, "ES256"))[0]
	es256Pub := setOf(t, false, testKey(t, "ES256"))[0]
	es384Pub := setOf(t, false, testKey(t, "ES384"))[0]
	edPriv := setOf(t, true, testKey(t, "EdDSA"))[0]
	edPub := setOf(t, false, testKey(t, "EdDSA"))[0]
	rsaPriv := setOf(t, true, testKey(t, "RS256"))[0]
	rsaPub := setOf(t, false, testKey(t, "RS256"))[0]
	psPub := setOf(t, false, testKey(t, "PS256"))[0]

	otherES, err := Generate("ES256", 0)
	if err != nil {
		t.Fatal(err)
	}
	otherESPriv := setOf(t, true, otherES)[0]
	otherEd, err := Generate("EdDSA", 0)
	if err != nil {
		t.Fatal(err)
	}
	otherEdPriv := setOf(t, true, otherEd)[0]

	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024 := keyMap{"kty": "RSA", "alg": "RS256", "kid": "small", "n": b64int(small.N), "e": "AQAB"}

	validPub := encodeSet(t, es256Pub)
	validPubStr := string(validPub)

	tests := []struct {
		name    string
		data    []byte
		private bool
		want    string
	}{
		// Document level.
		{"too large", append(bytes.Repeat([]byte(" "), MaxSetBytes), validPub...), false, "larger than the 262144-byte limit"},
		{"empty document", []byte(""), false, "empty document"},
		{"invalid JSON", []byte(`{"keys":[`), false, "invalid JSON"},
		{"syntax error", []byte(`{"keys":[}]}`), false, "syntax error"},
		{"not UTF-8", []byte("{\"keys\":[],\"x\":\"\xff\"}"), false, "UTF-8"},
		{"trailing data", append(append([]byte(nil), validPub...), []byte(` {}`)...), false, "trailing data"},
		{"duplicate top-level member", []byte(strings.Replace(validPubStr, `{"keys":`, `{"keys":[],"keys":`, 1)), false, `duplicate member name "keys"`},
		{"duplicate member in key", []byte(strings.Replace(validPubStr, `"kid":`, `"kid":"x","kid":`, 1)), false, `duplicate member name "kid" at $.keys[0]`},
		{"escaped duplicate member", []byte(strings.Replace(validPubStr, `"kid":`, `"kid":"x","k\u0069d":`, 1)), false, `duplicate member name "kid"`},
		{"case-variant member", []byte(strings.Replace(validPubStr, `"kid":`, `"KID":"x","kid":`, 1)), false, "differ only in case"},
		{"top level array", []byte(`[` + validPubStr + `]`), false, "must be a JSON object"},
		{"top level string", []byte(`"keys"`), false, "must be a JSON object"},
		{"missing keys", []byte(`{"kees":[]}`), false, `missing "keys"`},
		{"keys null", []byte(`{"keys":null}`), false, `"keys" must be an array`},
		{"keys object", []byte(`{"keys":{}}`), false, `"keys" must be an array`},
		{"keys empty", []byte(`{"keys":[]}`), false, `"keys" is empty`},
		{"key not object", []byte(`{"keys":["x"]}`), false, "must be a JSON object"},
		{"key null", []byte(`{"keys":[null]}`), false, "must be a JSON object"},

		// kty.
		{"missing kty", encodeSet(t, with(es256Pub, "kty", del)), false, `missing "kty"`},
		{"kty number", encodeSet(t, with(es256Pub, "kty", 1)), false, `"kty" must be a string`},
		{"unknown kty", encodeSet(t, with(es256Pub, "kty", "XYZ")), false, `unsupported kty "XYZ"`},
		{"symmetric key", encodeSet(t, keyMap{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA", "alg": "HS256", "kid": "hmac"}), false, "symmetric"},
		{"symmetric key private", encodeSet(t, keyMap{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA", "alg": "HS256", "kid": "hmac"}), true, "symmetric"},

		// kid.
		{"missing kid", encodeSet(t, with(es256Pub, "kid", del)), false, `missing "kid"`},
		{"empty kid", encodeSet(t, with(es256Pub, "kid", "")), false, `empty "kid"`},
		{"kid number", encodeSet(t, with(es256Pub, "kid", 7)), false, `"kid" must be a string`},
		{"kid not thumbprint", encodeSet(t, with(es256Pub, "kid", "key-2024")), false, "kid is not the RFC 7638 SHA-256 thumbprint"},
		{"kid of another key", encodeSet(t, with(es256Pub, "kid", es384Pub["kid"])), false, "thumbprint"},
		{"duplicate kid", encodeSet(t, es256Pub, edPub, es256Pub), false, "keys[2]: duplicate kid (same as keys[0])"},
		{"duplicate kid private", encodeSet(t, rsaPriv, rsaPriv), true, "duplicate kid"},

		// alg.
		{"missing alg", encodeSet(t, with(es256Pub, "alg", del)), false, `missing "alg"`},
		{"alg HS256", encodeSet(t, with(es256Pub, "alg", "HS256")), false, `unsupported alg "HS256"`},
		{"alg none", encodeSet(t, with(es256Pub, "alg", "none")), false, `unsupported alg "none"`},
		{"alg ES512", encodeSet(t, with(es256Pub, "alg", "ES512")), false, `unsupported alg "ES512"`},
		{"alg Ed25519", encodeSet(t, with(edPub, "alg", "Ed25519")), false, `unsupported alg "Ed25519"`},
		{"alg lower case", encodeSet(t, with(es256Pub, "alg", "es256")), false, "unsupported alg"},
		{"ES384 on P-256", encodeSet(t, with(es256Pub, "alg", "ES384")), false, `alg "ES384" does not match crv "P-256"`},
		{"ES256 on P-384", encodeSet(t, with(es384Pub, "alg", "ES256")), false, `alg "ES256" does not match crv "P-384"`},
		{"RS256 on EC", encodeSet(t, with(es256Pub, "alg", "RS256")), false, `alg "RS256" does not match kty "EC"`},
		{"EdDSA on EC", encodeSet(t, with(es256Pub, "alg", "EdDSA")), false, `alg "EdDSA" does not match kty "EC"`},
		{"ES256 on OKP", encodeSet(t, with(edPub, "alg", "ES256")), false, `alg "ES256" does not match kty "OKP"`},
		{"PS256 on OKP", encodeSet(t, with(edPub, "alg", "PS256")), false, "does not match kty"},
		{"ES256 on RSA", encodeSet(t, with(rsaPub, "alg", "ES256")), false, `alg "ES256" does not match kty "RSA"`},
		{"X25519 curve", encodeSet(t, with(edPub, "crv", "X25519")), false, `alg "EdDSA" does not match crv "X25519"`},
		{"RSA 1024 bits", encodeSet(t, rsa1024), false, "RSA modulus is 1024 bits; it must be 2048 to 8192 bits"},

		// use.
		{"use enc", encodeSet(t, with(es256Pub, "use", "enc")), false, `"use" is "enc"; only "sig" is allowed`},
		{"use empty", encodeSet(t, with(es256Pub, "use", "")), false, `"use" is ""`},
		{"use number", encodeSet(t, with(es256Pub, "use", 1)), false, `"use" must be a string`},
		{"use enc private", encodeSet(t, with(rsaPriv, "use", "enc")), true, `only "sig" is allowed`},

		// key_ops.
		{"key_ops without verify", encodeSet(t, with(es256Pub, "key_ops", []string{"sign"})), false, `"key_ops" of a public key must include "verify"`},
		{"key_ops empty", encodeSet(t, with(es256Pub, "key_ops", []string{})), false, `must include "verify"`},
		{"private key_ops without sign", encodeSet(t, with(es256Priv, "key_ops", []string{"verify"})), true, `"key_ops" of a private key must include "sign"`},
		{"key_ops encrypt", encodeSet(t, with(es256Pub, "key_ops", []string{"verify", "encrypt"})), false, `"key_ops" contains "encrypt"`},
		{"key_ops repeated", encodeSet(t, with(es256Pub, "key_ops", []string{"verify", "verify"})), false, `contains "verify" more than once`},
		{"key_ops string", encodeSet(t, with(es256Pub, "key_ops", "verify")), false, `"key_ops" must be an array of strings`},
		{"key_ops null entry", encodeSet(t, with(es256Pub, "key_ops", []any{"verify", nil})), false, `"key_ops" must be an array of strings`},
		{"key_ops null", []byte(strings.Replace(validPubStr, `"kid":`, `"key_ops":null,"kid":`, 1)), false, `"key_ops" must be an array of strings`},

		// Private material in a public set.
		{"public with d (EC)", encodeSet(t, es256Priv), false, `carries private key material ("d")`},
		{"public with d (OKP)", encodeSet(t, edPriv), false, `carries private key material ("d")`},
		{"public with RSA private", encodeSet(t, rsaPriv), false, "carries private key material"},
		{"public with p only", encodeSet(t, with(rsaPub, "p", rsaPriv["p"])), false, `carries private key material ("p")`},
		{"public with qi only", encodeSet(t, with(rsaPub, "qi", rsaPriv["qi"])), false, `("qi")`},
		{"public with oth", encodeSet(t, with(rsaPub, "oth", []any{})), false, `("oth")`},
		{"public with k", encodeSet(t, with(es256Pub, "k", "AAAA")), false, `("k")`},
		{"mixed set", encodeSet(t, es256Pub, rsaPriv), false, "keys[1]: carries private key material"},

		// Private set without private halves.
		{"private without d (EC)", encodeSet(t, es256Pub), true, `missing private key material ("d")`},
		{"private without d (OKP)", encodeSet(t, edPub), true, `missing private key material ("d")`},
		{"private without RSA private", encodeSet(t, rsaPub), true, `missing private key material ("d")`},
		{"private without qi", encodeSet(t, with(rsaPriv, "qi", del)), true, `missing private key material ("qi")`},
		{"private mixed set", encodeSet(t, rsaPriv, es256Pub), true, "keys[1]: missing private key material"},
		{"private multi-prime", encodeSet(t, with(rsaPriv, "oth", []any{})), true, "multi-prime"},
		{"private d mismatch (EC)", encodeSet(t, with(es256Priv, "d", otherESPriv["d"])), true, "the private key does not match the public key"},
		{"private d mismatch (OKP)", encodeSet(t, with(edPriv, "d", otherEdPriv["d"])), true, "the private key does not match the public key"},
		{"private qi tampered", encodeSet(t, with(rsaPriv, "qi", b64mod(t, rsaPriv["qi"], flipLast))), true, "the RSA private key is inconsistent"},
		{"private d tampered", encodeSet(t, with(rsaPriv, "d", b64mod(t, rsaPriv["d"], flipLast))), true, "the RSA private key is inconsistent"},
		{"private p swapped with q", encodeSet(t, with(rsaPriv, "p", rsaPriv["q"], "q", rsaPriv["p"])), true, "the RSA private key is inconsistent"},
		{"EC d out of range", encodeSet(t, with(es256Priv, "d", base64.RawURLEncoding.EncodeToString(make([]byte, 32)))), true, "out of range"},

		// Parameters.
		{"parameter of another kty", encodeSet(t, with(es256Pub, "n", rsaPub["n"])), false, `parameter "n" is not valid for kty "EC"`},
		{"crv on RSA", encodeSet(t, with(rsaPub, "crv", "P-256")), false, `parameter "crv" is not valid for kty "RSA"`},
		{"y on OKP", encodeSet(t, with(edPub, "y", es256Pub["y"])), false, `parameter "y" is not valid for kty "OKP"`},
		{"missing x", encodeSet(t, with(es256Pub, "x", del)), false, `missing "x"`},
		{"missing crv", encodeSet(t, with(es256Pub, "crv", del)), false, `missing "crv"`},
		{"missing n", encodeSet(t, with(rsaPub, "n", del)), false, `missing "n"`},
		{"x number", encodeSet(t, with(es256Pub, "x", 5)), false, `"x" must be a string`},
		{"EC point not on curve", encodeSet(t, with(es256Pub, "y", b64mod(t, es256Pub["y"], flipLast))), false, "not a valid point on P-256"},
		{"EC identity", encodeSet(t, with(es256Pub, "x", base64.RawURLEncoding.EncodeToString(make([]byte, 32)), "y", base64.RawURLEncoding.EncodeToString(make([]byte, 32)))), false, "not a valid point"},
		{"EC x short", encodeSet(t, with(es256Pub, "x", b64mod(t, es256Pub["x"], func(b []byte) []byte { return b[1:] }))), false, `"x" must be 32 bytes, got 31`},
		{"EC x long", encodeSet(t, with(es256Pub, "x", b64mod(t, es256Pub["x"], func(b []byte) []byte { return append([]byte{0}, b...) }))), false, `"x" must be 32 bytes, got 33`},
		{"OKP x short", encodeSet(t, with(edPub, "x", "AAAA")), false, `"x" must be 32 bytes`},
		{"padded base64", encodeSet(t, with(es256Pub, "x", es256Pub["x"].(string)+"=")), false, `"x" is not canonical unpadded base64url`},
		{"standard base64 alphabet", encodeSet(t, with(rsaPub, "n", strings.NewReplacer("-", "+", "_", "/").Replace(rsaPub["n"].(string))+"+")), false, `"n" is not canonical`},
		{"base64 with newline", encodeSet(t, with(es256Pub, "x", es256Pub["x"].(string)[:20]+"\n"+es256Pub["x"].(string)[20:])), false, `"x" is not canonical`},
		{"non-zero trailing bits", encodeSet(t, with(es256Pub, "x", es256Pub["x"].(string)[:42]+"B")), false, `"x" is not canonical`},
		{"RSA n leading zero", encodeSet(t, with(rsaPub, "n", b64mod(t, rsaPub["n"], func(b []byte) []byte { return append([]byte{0}, b...) }))), false, `"n" has leading zero octets`},
		{"RSA e leading zero", encodeSet(t, with(rsaPub, "e", "AAEAAQ")), false, `"e" has leading zero octets`},
		{"RSA e = 1", encodeSet(t, with(rsaPub, "e", "AQ")), false, "RSA public exponent must be odd"},
		{"RSA e even", encodeSet(t, with(rsaPub, "e", "AQAA")), false, "RSA public exponent must be odd"},
		{"RSA e huge", encodeSet(t, with(rsaPub, "e", "AQAAAAE")), false, "RSA public exponent must be odd and in [3, 2^31-1]"},
		{"RSA n even", encodeSet(t, with(psPub, "n", b64mod(t, psPub["n"], flipLast))), false, "RSA modulus is even"},
		{"RSA too large", encodeSet(t, with(rsaPub, "n", base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 1025)))), false, "RSA modulus is 8200 bits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := ParseSet(tt.data, tt.private)
			if err == nil {
				t.Fatalf("ParseSet accepted the set (%d keys)", len(keys))
			}
			t.Logf("error: %v", err)
			if keys != nil {
				t.Errorf("ParseSet returned keys along with error %v", err)
			}
			if !errors.Is(err, ErrInvalidSet) {
				t.Errorf("error %v does not wrap ErrInvalidSet", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			for _, s := range secretValues(tt.data) {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q echoes key material", err)
				}
			}
		})
	}
}

func TestParseSetAccepts(t *testing.T) {
	es256Pub := setOf(t, false, testKey(t, "ES256"))[0]
	es256Priv := setOf(t, true, testKey(t, "ES256"))[0]
	rsaPub := setOf(t, false, testKey(t, "RS256"))[0]

	tests := []struct {
		name    string
		data    []byte
		private bool
		check   func(t *testing.T, keys []jwk.Key)
	}{
		{"use absent", encodeSet(t, with(es256Pub, "use", del)), false, func(t *testing.T, keys []jwk.Key) {
			if _, ok := keys[0].KeyUsage(); ok {
				t.Error("use set on the parsed key")
			}
		}},
		{"key_ops verify", encodeSet(t, with(es256Pub, "key_ops", []string{"verify"})), false, func(t *testing.T, keys []jwk.Key) {
			if ops, ok := keys[0].KeyOps(); !ok || len(ops) != 1 || ops[0] != "verify" {
				t.Errorf("key_ops = %v, %v", ops, ok)
			}
		}},
		{"private key_ops sign+verify", encodeSet(t, with(es256Priv, "key_ops", []string{"sign", "verify"})), true, nil},
		{"unknown members dropped", encodeSet(t, with(rsaPub, "x5u", "https://example.invalid/cert", "ext", true, "iat", 12)), false, func(t *testing.T, keys []jwk.Key) {
			for _, name := range []string{"x5u", "ext", "iat"} {
				if keys[0].Has(name) {
					t.Errorf("parsed key carries %q", name)
				}
			}
		}},
		{"other top-level members ignored", []byte(strings.Replace(string(encodeSet(t, es256Pub)), `{"keys":`, `{"issuer":"x","keys":`, 1)), false, nil},
		{"whitespace", []byte(" \n" + strings.ReplaceAll(string(encodeSet(t, es256Pub)), ",", " ,\n\t") + "\n"), false, nil},
		{"exactly MaxSetBytes", func() []byte {
			d := encodeSet(t, es256Pub)
			return append(d, bytes.Repeat([]byte(" "), MaxSetBytes-len(d))...)
		}(), false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := ParseSet(tt.data, tt.private)
			if err != nil {
				t.Fatalf("ParseSet: %v", err)
			}
			if len(keys) != 1 {
				t.Fatalf("got %d keys", len(keys))
			}
			if tt.check != nil {
				tt.check(t, keys)
			}
		})
	}
}

func BenchmarkParseSet(b *testing.B) {
	keys := allTestKeys(b)
	priv, err := PrivateSetJSON(keys)
	if err != nil {
		b.Fatal(err)
	}
	pub, err := PublicSetJSON(keys)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("private", func(b *testing.B) {
		for b.Loop() {
			if _, err := ParseSet(priv, true); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("public", func(b *testing.B) {
		for b.Loop() {
			if _, err := ParseSet(pub, false); err != nil {
				b.Fatal(err)
			}
		}
	})
}
