package verify

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/keyward-dev/keyward/internal/bundle"
	"github.com/keyward-dev/keyward/internal/jwks"
	"github.com/keyward-dev/keyward/internal/revocation"
)

// testRevocations revokes one value of every kind, and revKey's kid.
func testRevocations() *revocation.Set {
	exp := testNow.Unix() + 3600
	return revocation.New(bundle.Revocations{
		JTI:      []bundle.Revoked{{Value: "revoked-jti", Expires: exp}},
		Subject:  []bundle.Revoked{{Value: "revoked-sub", IssuedBefore: testNow.Unix() - 60, Expires: exp}},
		Session:  []bundle.Revoked{{Value: "revoked-sid", Expires: exp}},
		KeyID:    []bundle.Revoked{{Value: revKey.kid, Expires: exp}},
		ClientID: []bundle.Revoked{{Value: "revoked-client", Expires: exp}},
	})
}

func newTestVerifier(t testing.TB, mutate func(*Options)) *Verifier {
	t.Helper()
	ks := testKeySet(t)
	opts := testOptions()
	if mutate != nil {
		mutate(&opts)
	}
	return New(ks, opts, testRevocations(), newFakeClock())
}

// hs256 builds an HMAC-signed token with secret (the key-confusion attack).
func hs256(header, payload string, secret []byte) string {
	in := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(in))
	return in + "." + enc.EncodeToString(m.Sum(nil))
}

// unsigned assembles a token from raw parts with the given signature bytes.
func unsigned(header, payload string, sig []byte) string {
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(sig)
}

// TestAttackCatalogue is the RFC 8725 catalogue (plus Keyward's own rules): every token
// is built here, and each row names the reason it must be refused ("" = accepted).
func TestAttackCatalogue(t *testing.T) {
	s := testSigners(t)
	es, es384, ed, rs, ps := s[jwks.AlgES256], s[jwks.AlgES384], s[jwks.AlgEdDSA], s[jwks.AlgRS256], s[jwks.AlgPS256]
	now := testNow.Unix()
	std := claims(nil)

	ecPoint, err := es.priv.Public().(interface{ Bytes() ([]byte, error) }).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(rs.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	attackerJWK, err := json.Marshal(attacker.pub)
	if err != nil {
		t.Fatal(err)
	}

	// hdr builds es's header with extra members.
	hdr := func(extra string) string {
		return `{"alg":"ES256","kid":"` + es.kid + `","typ":"at+jwt"` + extra + `}`
	}
	withClaims := func(o map[string]any) func() string {
		return func() string { return es.token(t, es.stdHeader(), claims(o)) }
	}
	psychic := func(r, sv []byte) func() string {
		return func() string {
			sig := append(append([]byte{}, r...), sv...)
			return unsigned(es.stdHeader(), std, sig)
		}
	}
	nBytes := p256N.FillBytes(make([]byte, 32))
	pssSalt := func(salt int) func() string {
		return func() string {
			in := enc.EncodeToString([]byte(ps.stdHeader())) + "." + enc.EncodeToString([]byte(std))
			d := sha256.Sum256([]byte(in))
			return in + "." + enc.EncodeToString(signPSSRaw(t, ps.priv.(*rsa.PrivateKey), d[:], salt))
		}
	}
	// replacePart swaps part i of a valid token.
	replacePart := func(tok string, i int, f func(string) string) string {
		parts := strings.Split(tok, ".")
		parts[i] = f(parts[i])
		return strings.Join(parts, ".")
	}

	tests := []struct {
		name  string
		token func() string
		want  string // Error.Reason; "" means accepted
	}{
		// Valid tokens, one per algorithm.
		{"valid ES256", func() string { return es.token(t, es.stdHeader(), std) }, ""},
		{"valid ES384", func() string { return es384.token(t, es384.stdHeader(), std) }, ""},
		{"valid EdDSA", func() string { return ed.token(t, ed.stdHeader(), std) }, ""},
		{"valid RS256", func() string { return rs.token(t, rs.stdHeader(), std) }, ""},
		{"valid PS256", func() string { return ps.token(t, ps.stdHeader(), std) }, ""},
		{"valid typ application/at+jwt", func() string {
			return es.token(t, `{"alg":"ES256","kid":"`+es.kid+`","typ":"application/AT+JWT"}`, std)
		}, ""},
		{"valid aud as string", withClaims(map[string]any{"aud": testAudience}), ""},
		{"valid fractional exp", withClaims(map[string]any{"exp": float64(now) + 600.5}), ""},
		{"valid unknown header and claims ignored", func() string {
			return es.token(t, hdr(`,"zzz":{"a":[1,2]}`), claims(map[string]any{"ext": map[string]any{"x": 1}}))
		}, ""},

		// alg none and HMAC key confusion.
		{"alg none", func() string { return unsigned(`{"alg":"none","kid":"`+es.kid+`","typ":"at+jwt"}`, std, nil) }, "alg_none"},
		{"alg None", func() string { return unsigned(`{"alg":"None","kid":"`+es.kid+`","typ":"at+jwt"}`, std, nil) }, "alg_none"},
		{"alg NONE without kid", func() string { return unsigned(`{"alg":"NONE"}`, std, nil) }, "alg_none"},
		{"HS256 keyed with the EC public key", func() string {
			return hs256(`{"alg":"HS256","kid":"`+es.kid+`","typ":"at+jwt"}`, std, ecPoint)
		}, "alg_hmac"},
		{"HS256 keyed with the RSA public key PEM", func() string {
			return hs256(`{"alg":"HS256","kid":"`+rs.kid+`","typ":"at+jwt"}`, std, rsaPEM)
		}, "alg_hmac"},
		{"HS512", func() string { return hs256(`{"alg":"HS512","kid":"`+rs.kid+`"}`, std, rsaPEM) }, "alg_hmac"},
		{"alg ES512", func() string { return unsigned(`{"alg":"ES512","kid":"`+es.kid+`"}`, std, make([]byte, 132)) }, "alg_unsupported"},
		{"alg es256 (case)", func() string { return es.token(t, `{"alg":"es256","kid":"`+es.kid+`","typ":"at+jwt"}`, std) }, "alg_unsupported"},
		{"alg missing", func() string { return es.token(t, `{"kid":"`+es.kid+`","typ":"at+jwt"}`, std) }, "header"},
		{"alg not a string", func() string { return es.token(t, `{"alg":["ES256"],"kid":"`+es.kid+`","typ":"at+jwt"}`, std) }, "header"},

		// Keys supplied or referenced by the token.
		{"embedded jwk with the attacker's key", func() string {
			return attacker.token(t, `{"alg":"ES256","kid":"`+attacker.kid+`","typ":"at+jwt","jwk":`+string(attackerJWK)+`}`, std)
		}, "embedded_key"},
		{"embedded jwk under a trusted kid", func() string { return attacker.token(t, hdr(`,"jwk":`+string(attackerJWK)), std) }, "embedded_key"},
		{"jku", func() string { return es.token(t, hdr(`,"jku":"https://attacker.test/jwks.json"`), std) }, "embedded_key"},
		{"x5u", func() string { return es.token(t, hdr(`,"x5u":"https://attacker.test/cert.pem"`), std) }, "embedded_key"},
		{"x5c", func() string { return es.token(t, hdr(`,"x5c":["MIIB"]`), std) }, "embedded_key"},
		{"x5t#S256", func() string { return es.token(t, hdr(`,"x5t#S256":"abc"`), std) }, "embedded_key"},

		// crit and b64.
		{"crit exp", func() string { return es.token(t, hdr(`,"crit":["exp"],"exp":1`), std) }, "crit"},
		{"crit b64 false", func() string { return es.token(t, hdr(`,"crit":["b64"],"b64":false`), std) }, "crit"},
		{"b64 false without crit", func() string { return es.token(t, hdr(`,"b64":false`), std) }, "crit"},

		// kid tricks.
		{"kid unknown", func() string { return attacker.token(t, attacker.stdHeader(), std) }, "unknown_kid"},
		{"kid path traversal", func() string { return attacker.token(t, `{"alg":"ES256","kid":"../../x","typ":"at+jwt"}`, std) }, "unknown_kid"},
		{"kid SQL injection", func() string { return attacker.token(t, `{"alg":"ES256","kid":"' OR 1=1","typ":"at+jwt"}`, std) }, "unknown_kid"},
		{"kid empty", func() string { return es.token(t, `{"alg":"ES256","kid":"","typ":"at+jwt"}`, std) }, "unknown_kid"},
		{"kid missing", func() string { return es.token(t, `{"alg":"ES256","typ":"at+jwt"}`, std) }, "header"},
		{"kid not a string", func() string { return es.token(t, `{"alg":"ES256","kid":1,"typ":"at+jwt"}`, std) }, "header"},

		// Algorithm substitution: the key's alg decides.
		{"ES256 key, header ES384", func() string {
			return es384.token(t, `{"alg":"ES384","kid":"`+es.kid+`","typ":"at+jwt"}`, std)
		}, "alg_mismatch"},
		{"RS256 key, header PS256", func() string {
			return ps.token(t, `{"alg":"PS256","kid":"`+rs.kid+`","typ":"at+jwt"}`, std)
		}, "alg_mismatch"},

		// Signatures.
		{"psychic signature r=s=0", psychic(make([]byte, 32), make([]byte, 32)), "signature"},
		{"psychic signature r=s=N", psychic(nBytes, nBytes), "signature"},
		{"ECDSA signature in ASN.1 DER", func() string {
			tok := es.token(t, es.stdHeader(), std)
			raw, _ := enc.DecodeString(tok[strings.LastIndexByte(tok, '.')+1:])
			der := appendASN1Int(appendASN1Int([]byte{0x30, 0}, raw[:32]), raw[32:])
			der[1] = byte(len(der) - 2)
			return tok[:strings.LastIndexByte(tok, '.')+1] + enc.EncodeToString(der)
		}, "signature"},
		{"PS256 salt length 0", pssSalt(0), "signature"},
		{"PS256 maximum salt length", pssSalt(256 - 32 - 2), "signature"},
		{"PS256 hash-length salt (control)", pssSalt(32), ""},
		{"empty signature", func() string { return unsigned(es.stdHeader(), std, nil) }, "signature"},
		{"signature of another payload", func() string {
			a := es.token(t, es.stdHeader(), std)
			b := es.token(t, es.stdHeader(), claims(map[string]any{"sub": "admin"}))
			return b[:strings.LastIndexByte(b, '.')] + a[strings.LastIndexByte(a, '.'):]
		}, "signature"},

		// Encoding.
		{"base64 padding", func() string {
			return replacePart(es.token(t, es.stdHeader(), std), 2, func(p string) string { return p + "==" })
		}, "base64"},
		{"base64 standard alphabet", func() string {
			for {
				tok := es.token(t, es.stdHeader(), std)
				sig := tok[strings.LastIndexByte(tok, '.')+1:]
				if strings.ContainsAny(sig, "-_") {
					return replacePart(tok, 2, func(p string) string {
						return strings.NewReplacer("-", "+", "_", "/").Replace(p)
					})
				}
			}
		}, "base64"},
		{"base64 non-zero trailing bits", func() string {
			return replacePart(es.token(t, es.stdHeader(), std), 2, func(p string) string {
				// 64 bytes encode to 86 characters: the last carries 4 unused bits.
				const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
				v := strings.IndexByte(alphabet, p[len(p)-1])
				return p[:len(p)-1] + string(alphabet[v|1])
			})
		}, "base64"},
		{"base64 impossible length", func() string {
			return replacePart(es.token(t, es.stdHeader(), std), 1, func(p string) string {
				for len(p)%4 != 1 {
					p += "A"
				}
				return p
			})
		}, "base64"},

		// JSON.
		{"duplicate exp", func() string {
			return es.token(t, es.stdHeader(), `{"iss":"`+testIssuer+`","aud":"`+testAudience+`","exp":1,"exp":`+itoa(now+600)+`}`)
		}, "duplicate_member"},
		{"EXP next to exp", func() string {
			return es.token(t, es.stdHeader(), `{"iss":"`+testIssuer+`","aud":"`+testAudience+`","exp":`+itoa(now+600)+`,"EXP":1}`)
		}, "duplicate_member"},
		{"escaped duplicate exp", func() string {
			return es.token(t, es.stdHeader(), `{"iss":"`+testIssuer+`","aud":"`+testAudience+`","exp":`+itoa(now+600)+`,"\u0065xp":1}`)
		}, "duplicate_member"},
		{"duplicate alg in header", func() string { return es.token(t, `{"alg":"none","alg":"ES256","kid":"`+es.kid+`"}`, std) }, "duplicate_member"},
		{"duplicate member in a nested claim", func() string {
			return es.token(t, es.stdHeader(), claims(nil)[:1]+`"x":{"a":1,"a":2},`+claims(nil)[1:])
		}, "duplicate_member"},
		{"header not JSON", func() string { return es.token(t, `{"alg":"ES256"`, std) }, "malformed"},
		{"header not an object", func() string { return es.token(t, `["ES256"]`, std) }, "header"},
		{"payload not an object", func() string { return es.token(t, es.stdHeader(), `"hello"`) }, "claims"},
		{"payload not JSON", func() string { return es.token(t, es.stdHeader(), `{"exp":`) }, "malformed"},

		// Serialization.
		{"JSON serialization", func() string {
			tok := es.token(t, es.stdHeader(), std)
			p := strings.Split(tok, ".")
			return `{"payload":"` + p[1] + `","protected":"` + p[0] + `","signature":"` + p[2] + `"}`
		}, "malformed"},
		{"nested JWT (cty JWT)", func() string {
			inner := es.token(t, es.stdHeader(), std)
			return es.token(t, hdr(`,"cty":"JWT"`), inner)
		}, "header"},
		{"2 parts", func() string { tok := es.token(t, es.stdHeader(), std); return tok[:strings.LastIndexByte(tok, '.')] }, "malformed"},
		{"4 parts", func() string { return es.token(t, es.stdHeader(), std) + ".e30" }, "malformed"},
		{"JWE-like 5 parts", func() string { return "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d" }, "malformed"},
		{"trailing whitespace", func() string { return es.token(t, es.stdHeader(), std) + " " }, "malformed"},
		{"trailing newline", func() string { return es.token(t, es.stdHeader(), std) + "\n" }, "malformed"},
		{"empty token", func() string { return "" }, "malformed"},
		{"too large", func() string {
			return es.token(t, es.stdHeader(), claims(map[string]any{"pad": strings.Repeat("x", 9000)}))
		}, "too_large"},

		// typ.
		{"typ JWT when at+jwt is required", func() string { return es.token(t, `{"alg":"ES256","kid":"`+es.kid+`","typ":"JWT"}`, std) }, "typ"},
		{"typ missing", func() string { return es.token(t, `{"alg":"ES256","kid":"`+es.kid+`"}`, std) }, "typ"},
		{"typ dpop+jwt", func() string { return es.token(t, `{"alg":"ES256","kid":"`+es.kid+`","typ":"dpop+jwt"}`, std) }, "typ"},

		// Time claims.
		{"exp missing", withClaims(map[string]any{"exp": nil}), "missing_exp"},
		{"expired", withClaims(map[string]any{"exp": now - 31}), "expired"},
		{"expired at exactly exp+leeway", withClaims(map[string]any{"exp": now - 30}), "expired"},
		{"expired within leeway", withClaims(map[string]any{"exp": now - 10}), ""},
		{"exp as string", withClaims(map[string]any{"exp": itoa(now + 600)}), "claims"},
		{"exp negative", withClaims(map[string]any{"exp": -1}), "claims"},
		{"exp null", withClaims(map[string]any{"exp": json.RawMessage("null")}), "claims"},
		{"exp beyond year 9999", withClaims(map[string]any{"exp": 1e300}), "claims"},
		{"nbf in the future", withClaims(map[string]any{"nbf": now + 31}), "not_yet_valid"},
		{"nbf within leeway", withClaims(map[string]any{"nbf": now + 29}), ""},
		{"nbf as string", withClaims(map[string]any{"nbf": "0"}), "claims"},
		{"iat in the future", withClaims(map[string]any{"iat": now + 31}), "issued_in_future"},
		{"iat as bool", withClaims(map[string]any{"iat": true}), "claims"},

		// Issuer and audience.
		{"wrong iss", withClaims(map[string]any{"iss": "https://attacker.test"}), "issuer"},
		{"iss missing", withClaims(map[string]any{"iss": nil}), "issuer"},
		{"iss as array", withClaims(map[string]any{"iss": []string{testIssuer}}), "claims"},
		{"wrong aud", withClaims(map[string]any{"aud": []string{"api://billing"}}), "audience"},
		{"aud missing", withClaims(map[string]any{"aud": nil}), "audience"},
		{"aud empty array", withClaims(map[string]any{"aud": []string{}}), "audience"},
		{"aud as number", withClaims(map[string]any{"aud": 42}), "claims"},
		{"aud array with a number", withClaims(map[string]any{"aud": []any{testAudience, 1}}), "claims"},

		// Other registered claims with wrong types.
		{"sub as number", withClaims(map[string]any{"sub": 1}), "claims"},
		{"scope as array", withClaims(map[string]any{"scope": []string{"a"}}), "claims"},
		{"scope with a control character", withClaims(map[string]any{"scope": "a\nb"}), "claims"},
		{"cnf as string", withClaims(map[string]any{"cnf": "x"}), "claims"},
		{"cnf jkt as number", withClaims(map[string]any{"cnf": map[string]any{"jkt": 1}}), "claims"},

		// Revocation.
		{"revoked by jti", withClaims(map[string]any{"jti": "revoked-jti"}), "revoked"},
		{"revoked by sub (iat before the cut-off)", withClaims(map[string]any{"sub": "revoked-sub", "iat": now - 61}), "revoked"},
		{"sub revocation spares later tokens (iat after the cut-off)", withClaims(map[string]any{"sub": "revoked-sub", "iat": now - 59}), ""},
		{"revoked by sub (no iat: fail closed)", withClaims(map[string]any{"sub": "revoked-sub", "iat": nil}), "revoked"},
		{"revoked by sid", withClaims(map[string]any{"sid": "revoked-sid"}), "revoked"},
		{"revoked by kid", func() string { return revKey.token(t, revKey.stdHeader(), std) }, "revoked"},
		{"revoked by client_id", withClaims(map[string]any{"client_id": "revoked-client"}), "revoked"},
	}
	v := newTestVerifier(t, nil)
	seen := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if seen[tc.name] {
				t.Fatalf("duplicate test name")
			}
			seen[tc.name] = true
			tok := tc.token()
			c, err := v.Verify(tok)
			checkOutcome(t, tok, c, err, tc.want)
		})
	}
}

func checkOutcome(t *testing.T, tok string, c *Claims, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("Verify() = %v, want accepted", err)
		}
		if c == nil || c.Expiry == 0 || c.KID == "" {
			t.Fatalf("accepted token has incomplete claims: %+v", c)
		}
		return
	}
	if err == nil {
		t.Fatalf("Verify() accepted the token, want %q", want)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Verify() error %T is not *Error", err)
	}
	if e.Reason != want {
		t.Fatalf("Verify() reason = %q (%v), want %q", e.Reason, err, want)
	}
	if c != nil {
		t.Fatalf("rejected token returned claims")
	}
	if len(tok) > 16 && strings.Contains(e.Detail, tok[len(tok)-16:]) {
		t.Fatalf("error detail quotes the token: %q", e.Detail)
	}
}

func itoa(n int64) string { return jsonNumber(n) }

func jsonNumber(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestPolicyOptions covers Options other than the defaults of TestAttackCatalogue.
func TestPolicyOptions(t *testing.T) {
	s := testSigners(t)
	es, ed := s[jwks.AlgES256], s[jwks.AlgEdDSA]
	std := claims(nil)
	jwtHeader := func(typ string) string {
		h := `{"alg":"ES256","kid":"` + es.kid + `"`
		if typ != "" {
			h += `,"typ":"` + typ + `"`
		}
		return h + "}"
	}
	tests := []struct {
		name   string
		mutate func(*Options)
		token  func() string
		want   string
	}{
		{"algorithm not in the policy list", func(o *Options) { o.Algorithms = []string{"ES256"} },
			func() string { return ed.token(t, ed.stdHeader(), std) }, "alg_unsupported"},
		{"algorithm in the policy list", func(o *Options) { o.Algorithms = []string{"ES256"} },
			func() string { return es.token(t, es.stdHeader(), std) }, ""},
		{"type JWT: typ absent", func(o *Options) { o.Type = "JWT" }, func() string { return es.token(t, jwtHeader(""), std) }, ""},
		{"type JWT: typ JWT", func(o *Options) { o.Type = "JWT" }, func() string { return es.token(t, jwtHeader("JWT"), std) }, ""},
		{"type JWT: typ jwt", func(o *Options) { o.Type = "JWT" }, func() string { return es.token(t, jwtHeader("jwt"), std) }, ""},
		{"type JWT: typ at+jwt", func(o *Options) { o.Type = "JWT" }, func() string { return es.token(t, jwtHeader("at+jwt"), std) }, "typ"},
		{"type unknown refuses everything", func(o *Options) { o.Type = "" }, func() string { return es.token(t, es.stdHeader(), std) }, "typ"},
		{"no issuer configured refuses everything", func(o *Options) { o.Issuer = "" },
			func() string { return es.token(t, es.stdHeader(), claims(map[string]any{"iss": nil})) }, "issuer"},
		{"no audience configured refuses everything", func(o *Options) { o.Audiences = nil },
			func() string { return es.token(t, es.stdHeader(), std) }, "audience"},
		{"leeway 0: exp just passed", func(o *Options) { o.Leeway = 0 },
			func() string { return es.token(t, es.stdHeader(), claims(map[string]any{"exp": testNow.Unix()})) }, "expired"},
		{"leeway 0: exp one second ahead", func(o *Options) { o.Leeway = 0 },
			func() string { return es.token(t, es.stdHeader(), claims(map[string]any{"exp": testNow.Unix() + 1})) }, ""},
		{"MaxTokenBytes", func(o *Options) { o.MaxTokenBytes = 100 }, func() string { return es.token(t, es.stdHeader(), std) }, "too_large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVerifier(t, tc.mutate)
			tok := tc.token()
			c, err := v.Verify(tok)
			checkOutcome(t, tok, c, err, tc.want)
		})
	}
}

// TestClaimsValues checks what an accepted token's claims hold.
func TestClaimsValues(t *testing.T) {
	es := testSigners(t)[jwks.AlgES256]
	now := testNow.Unix()
	payload := `{"iss":"` + testIssuer + `","sub":"us\u0065r-1","aud":"` + testAudience + `","exp":` + itoa(now+600) +
		`.9,"iat":` + itoa(now-10) + `.1,"nbf":` + itoa(now-10) + `,"jti":"j","sid":"s","client_id":"c",` +
		`"scope":" a  b:c ","cnf":{"jkt":"thumb","x5t#S256":"cert"},"groups":["x","y"],"n":1.50}`
	v := newTestVerifier(t, nil)
	c, err := v.Verify(es.token(t, es.stdHeader(), payload))
	if err != nil {
		t.Fatal(err)
	}
	want := Claims{
		Issuer: testIssuer, Subject: "user-1", JTI: "j", SessionID: "s", ClientID: "c",
		Audience: []string{testAudience}, Scopes: []string{"a", "b:c"},
		IssuedAt: now - 9, NotBefore: now - 10, Expiry: now + 600,
		Cnf: &Confirmation{JKT: "thumb", X5TS256: "cert"}, KID: es.kid,
	}
	got := *c
	got.payload = nil
	if !equalClaims(got, want) {
		t.Fatalf("claims = %+v (cnf %+v), want %+v", got, got.Cnf, want)
	}
	for name, raw := range map[string]string{"groups": `["x","y"]`, "n": `1.50`, "sub": `"us\u0065r-1"`} {
		got, ok := c.Raw(name)
		if !ok || string(got) != raw {
			t.Errorf("Raw(%q) = %s, %v; want %s", name, got, ok, raw)
		}
	}
	if _, ok := c.Raw("missing"); ok {
		t.Error(`Raw("missing") found a claim`)
	}
}

func equalClaims(a, b Claims) bool {
	aj, _ := json.Marshal(a)
	bj, _ := json.Marshal(b)
	return string(aj) == string(bj) && a.KID == b.KID && *a.Cnf == *b.Cnf
}

// TestVerifyJWS checks the JWS layer alone: claims are not looked at.
func TestVerifyJWS(t *testing.T) {
	es := testSigners(t)[jwks.AlgES256]
	ks := testKeySet(t)
	tok := es.token(t, `{"alg":"ES256","kid":"`+es.kid+`"}`, "not json at all")
	h, payload, err := VerifyJWS(tok, ks, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.Alg != "ES256" || h.KID != es.kid || h.Typ != "" || string(payload) != "not json at all" {
		t.Fatalf("VerifyJWS = %+v, %q", h, payload)
	}
	if _, _, err := VerifyJWS(tok, ks, []string{"EdDSA"}); err == nil || err.(*Error).Reason != "alg_unsupported" {
		t.Fatalf("VerifyJWS with a disallowed alg = %v", err)
	}
	h, _, err = VerifyJWS(es.token(t, es.stdHeader(), "{}"), ks, nil)
	if err != nil || h.Typ != "at+jwt" {
		t.Fatalf("VerifyJWS = %+v, %v", h, err)
	}
	if _, _, err := VerifyJWS(tok, nil, nil); err == nil || err.(*Error).Reason != "unknown_kid" {
		t.Fatalf("VerifyJWS with no keys = %v", err)
	}
}

// TestNewKeySet covers which keys a KeySet takes.
func TestNewKeySet(t *testing.T) {
	s := testSigners(t)
	es := s[jwks.AlgES256]
	withMeta := func(k jwk.Key, name string, value any) jwk.Key {
		c, err := k.Clone()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Set(name, value); err != nil {
			t.Fatal(err)
		}
		return c
	}
	private, err := jwks.Generate(jwks.AlgEdDSA, 0)
	if err != nil {
		t.Fatal(err)
	}
	oct, err := jwk.Import([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	oct = withMeta(withMeta(oct, jwk.KeyIDKey, "oct"), jwk.AlgorithmKey, "HS256")

	tests := []struct {
		name    string
		keys    []jwk.Key
		wantLen int
		wantErr bool
	}{
		{"all algorithms", []jwk.Key{s["ES256"].pub, s["ES384"].pub, s["EdDSA"].pub, s["RS256"].pub, s["PS256"].pub}, 5, false},
		{"use enc left out", []jwk.Key{withMeta(es.pub, jwk.KeyUsageKey, "enc")}, 0, false},
		{"key_ops without verify left out", []jwk.Key{withMeta(es.pub, jwk.KeyOpsKey, jwk.KeyOperationList{jwk.KeyOpEncrypt})}, 0, false},
		{"key_ops with verify kept", []jwk.Key{withMeta(es.pub, jwk.KeyOpsKey, jwk.KeyOperationList{jwk.KeyOpVerify})}, 1, false},
		{"private key: public half used", []jwk.Key{private}, 1, false},
		{"duplicate kid", []jwk.Key{es.pub, es.pub}, 0, true},
		{"no kid", []jwk.Key{withMeta(es.pub, jwk.KeyIDKey, "")}, 0, true},
		{"alg of another key type", []jwk.Key{withMeta(es.pub, jwk.AlgorithmKey, "RS256")}, 0, true},
		{"alg of another curve", []jwk.Key{withMeta(es.pub, jwk.AlgorithmKey, "ES384")}, 0, true},
		{"unsupported alg", []jwk.Key{withMeta(es.pub, jwk.AlgorithmKey, "ES512")}, 0, true},
		{"symmetric key", []jwk.Key{oct}, 0, true},
		{"empty", nil, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ks, err := NewKeySet(tc.keys)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("NewKeySet accepted the keys")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ks.Len() != tc.wantLen {
				t.Fatalf("Len() = %d, want %d", ks.Len(), tc.wantLen)
			}
		})
	}
}

// TestErrorString checks that errors render their reason.
func TestErrorString(t *testing.T) {
	e := &Error{Reason: "expired", Detail: "token has expired"}
	if got := e.Error(); got != "token rejected: expired: token has expired" {
		t.Fatal(got)
	}
}

// TestNewKey covers the key checks NewKeySet applies after converting a JWK.
func TestNewKey(t *testing.T) {
	s := testSigners(t)
	ecPub := s[jwks.AlgES256].priv.Public().(*ecdsa.PublicKey)
	ec384 := s[jwks.AlgES384].priv.Public().(*ecdsa.PublicKey)
	edPub := s[jwks.AlgEdDSA].priv.Public().(ed25519.PublicKey)
	rsaPub := s[jwks.AlgRS256].priv.Public().(*rsa.PublicKey)
	withE := func(e int) *rsa.PublicKey { return &rsa.PublicKey{N: rsaPub.N, E: e} }
	small := new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 1023), big.NewInt(1)) // odd, 1024 bits
	tests := []struct {
		name, alg string
		pub       any
		ok        bool
	}{
		{"ES256", "ES256", ecPub, true},
		{"ES384", "ES384", ec384, true},
		{"EdDSA", "EdDSA", edPub, true},
		{"RS256", "RS256", rsaPub, true},
		{"PS256", "PS256", rsaPub, true},
		{"ES256 with a P-384 key", "ES256", ec384, false},
		{"ES256 with a point off the curve", "ES256", &ecdsa.PublicKey{Curve: elliptic.P256(), X: big.NewInt(1), Y: big.NewInt(1)}, false},
		{"ES256 with an RSA key", "ES256", rsaPub, false},
		{"EdDSA with 31 bytes", "EdDSA", edPub[:31], false},
		{"RS256 with an EC key", "RS256", ecPub, false},
		{"RS256 with a 1024-bit modulus", "RS256", &rsa.PublicKey{N: small, E: 65537}, false},
		{"RS256 with e = 1", "RS256", withE(1), false},
		{"RS256 with an even e", "RS256", withE(65536), false},
		{"RS256 with an even modulus", "RS256", &rsa.PublicKey{N: new(big.Int).Lsh(small, 1024), E: 65537}, false},
		{"HS256", "HS256", []byte("secret"), false},
		{"ES512", "ES512", ecPub, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newKey("k", tc.alg, tc.pub)
			if (err == nil) != tc.ok {
				t.Fatalf("newKey() error = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
