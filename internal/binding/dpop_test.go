package binding

import (
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward-dev/keyward/internal/jwks"
)

func TestCheckAcceptsValidProofs(t *testing.T) {
	ks := keys(t)
	for _, alg := range jwks.Algorithms() {
		k := ks[alg]
		t.Run(alg, func(t *testing.T) {
			for _, bound := range []bool{false, true} {
				c, _ := newTestChecker(DPoPOptions{})
				o := proofOpts{key: k}
				token, jkt := "", ""
				if bound {
					o.token, token, jkt = testToken, testToken, k.jkt
				}
				proof := o.build(t)
				p, err := c.Check(proof, testMethod, testURL(t, testHTU), token, jkt)
				if err != nil {
					t.Fatalf("bound=%v: Check: %v", bound, err)
				}
				if p.JKT != k.jkt || p.HTM != testMethod || p.HTU != testHTU || p.IAT != testNow.Unix() || !strings.HasPrefix(p.JTI, "jti-") {
					t.Errorf("bound=%v: Proof = %+v, want JKT %s", bound, p, k.jkt)
				}
			}
		})
	}
}

// TestCheckAccepts covers accepted variations: URL normalisation, the edges
// of the iat window, header and claim forms.
func TestCheckAccepts(t *testing.T) {
	tests := []struct {
		name   string
		opts   proofOpts
		method string
		url    string
		clock  time.Duration // added to the clock before Check
		copts  DPoPOptions
	}{
		{name: "request query and fragment ignored", url: testHTU + "?a=1&b=2#frag"},
		{name: "default port in request", url: "https://api.example.com:443/resource"},
		{name: "default port in htu", opts: proofOpts{claims: set("htu", "https://api.example.com:443/resource")}},
		{name: "http default port", url: "http://api.example.com/resource", opts: proofOpts{claims: set("htu", "http://api.example.com:80/resource")}},
		{name: "explicit non-default port on both", url: "https://api.example.com:8443/resource", opts: proofOpts{claims: set("htu", "https://api.example.com:8443/resource")}},
		{name: "scheme and host case", opts: proofOpts{claims: set("htu", "HTTPS://API.Example.COM/resource")}},
		{name: "request host case", url: "https://API.EXAMPLE.com/resource"},
		{name: "empty path is slash", url: "https://api.example.com/", opts: proofOpts{claims: set("htu", "https://api.example.com")}},
		{name: "percent-encoded unreserved", url: "https://api.example.com/~user/a-b", opts: proofOpts{claims: set("htu", "https://api.example.com/%7Euser/a%2Db")}},
		{name: "percent-encoding hex case", url: "https://api.example.com/a%2fb", opts: proofOpts{claims: set("htu", "https://api.example.com/a%2Fb")}},
		{name: "dot segments", url: "https://api.example.com/x/../resource", opts: proofOpts{claims: set("htu", "https://api.example.com/./resource")}},
		{name: "IPv6 host with default port", url: "https://[::1]/r", opts: proofOpts{claims: set("htu", "https://[::1]:443/r")}},
		{name: "iat at the old edge", opts: proofOpts{now: testNow.Add(-65 * time.Second)}},
		{name: "iat at the future edge", opts: proofOpts{now: testNow.Add(5 * time.Second)}},
		{name: "custom window", opts: proofOpts{now: testNow.Add(-10 * time.Minute)}, copts: DPoPOptions{MaxAge: 10 * time.Minute, Leeway: -1}},
		{name: "fractional iat", opts: proofOpts{claims: set("iat", float64(testNow.Unix())+0.5)}},
		{name: "typ media type with application prefix", opts: proofOpts{header: hset("typ", "application/DPoP+JWT")}},
		{name: "kid and extra header members ignored", opts: proofOpts{header: hset("kid", "k1", "x5u", "https://evil.example/cert")}},
		{name: "jwk with matching alg and use", opts: proofOpts{header: jwkSet("alg", "ES256", "use", "sig", "kid", "client-key")}},
		{name: "unknown claims ignored", opts: proofOpts{extra: map[string]any{"x": map[string]any{"y": []any{1, 2}}}}},
		{name: "nonce ignored when not required", opts: proofOpts{extra: map[string]any{"nonce": "whatever"}}},
		{name: "POST", method: "POST", opts: proofOpts{claims: set("htm", "POST")}},
		{name: "algorithm subset", copts: DPoPOptions{Algorithms: []string{"ES256", "HS256", "bogus"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clk := newTestChecker(tt.copts)
			proof := tt.opts.build(t)
			clk.Step(tt.clock)
			method, u := testMethod, testHTU
			if tt.method != "" {
				method = tt.method
			}
			if tt.url != "" {
				u = tt.url
			}
			if _, err := c.Check(proof, method, testURL(t, u), "", ""); err != nil {
				t.Fatalf("Check: %v", err)
			}
		})
	}
}

// set returns a claims editor that sets name to v.
func set(name string, v any) func(map[string]any) {
	return func(m map[string]any) { m[name] = v }
}

// del returns an editor that deletes names.
func del(names ...string) func(map[string]any) {
	return func(m map[string]any) {
		for _, n := range names {
			delete(m, n)
		}
	}
}

// hset returns a header editor setting name/value pairs.
func hset(kv ...any) func(map[string]any) {
	return func(m map[string]any) {
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
	}
}

// jwkSet returns a header editor setting members of a copy of the jwk.
func jwkSet(kv ...any) func(map[string]any) {
	return func(m map[string]any) {
		j := map[string]any{}
		for k, v := range m["jwk"].(map[string]any) {
			j[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			j[kv[i].(string)] = kv[i+1]
		}
		m["jwk"] = j
	}
}

func TestCheckRejects(t *testing.T) {
	ks := keys(t)
	es := ks[jwks.AlgES256]
	ecJWK := es.jwk
	b64json := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	jwkJSON := string(mustJSON(t, ecJWK))
	validPayload := `{"jti":"j1","htm":"GET","htu":"` + testHTU + `","iat":` + itoa(testNow.Unix()) + `}`
	tokenHash := sha256.Sum256([]byte("another token"))

	tests := []struct {
		name   string
		opts   proofOpts
		proof  string // verbatim proof; overrides opts
		method string
		url    string
		token  string
		jkt    string
		copts  DPoPOptions
		want   string
	}{
		// Structure and encoding.
		{name: "empty", proof: "x", want: ReasonMalformed},
		{name: "two parts", proof: "eyJhIjoxfQ.eyJhIjoxfQ", want: ReasonMalformed},
		{name: "four parts", proof: "eyJhIjoxfQ.eyJhIjoxfQ.AAAA.AAAA", want: ReasonMalformed},
		{name: "empty signature", opts: proofOpts{edit: func(p []string) { p[2] = "" }}, want: ReasonMalformed},
		{name: "too large", opts: proofOpts{extra: map[string]any{"pad": strings.Repeat("a", MaxProofBytes)}}, want: ReasonMalformed},
		{name: "padding", opts: proofOpts{edit: func(p []string) { p[1] += "==" }}, want: ReasonMalformed},
		{name: "standard alphabet", opts: proofOpts{edit: func(p []string) { p[2] = strings.NewReplacer("-", "+", "_", "/").Replace(p[2]) + "+/" }}, want: ReasonMalformed},
		{name: "non-canonical trailing bits", opts: proofOpts{edit: func(p []string) { p[2] = flipLastBit(p[2]) }}, want: ReasonMalformed},
		{name: "whitespace", opts: proofOpts{edit: func(p []string) { p[1] = p[1][:4] + "\n" + p[1][4:] }}, want: ReasonMalformed},
		{name: "header not JSON", opts: proofOpts{edit: func(p []string) { p[0] = b64json("not json") }}, want: ReasonMalformed},
		{name: "header is an array", opts: proofOpts{rawHeader: `["typ","dpop+jwt"]`}, want: ReasonMalformed},
		{name: "payload is an array", opts: proofOpts{rawPayload: `[1]`}, want: ReasonMalformed},
		{name: "duplicate header member", opts: proofOpts{rawHeader: `{"typ":"dpop+jwt","alg":"ES256","alg":"ES256","jwk":` + jwkJSON + `}`}, want: ReasonMalformed},
		{name: "duplicate jwk member", opts: proofOpts{rawHeader: `{"typ":"dpop+jwt","alg":"ES256","jwk":` + strings.Replace(jwkJSON, `{`, `{"kty":"EC",`, 1) + `}`}, want: ReasonMalformed},
		{name: "case-folded duplicate header member", opts: proofOpts{rawHeader: `{"typ":"dpop+jwt","TYP":"JWT","alg":"ES256","jwk":` + jwkJSON + `}`}, want: ReasonMalformed},
		{name: "duplicate claim", opts: proofOpts{rawPayload: strings.Replace(validPayload, `{`, `{"htu":"https://evil.example/",`, 1)}, want: ReasonMalformed},
		{name: "crit header", opts: proofOpts{header: hset("crit", []string{"exp"})}, want: ReasonMalformed},
		{name: "b64 header", opts: proofOpts{header: hset("b64", false)}, want: ReasonMalformed},

		// typ.
		{name: "typ missing", opts: proofOpts{header: del("typ")}, want: ReasonTyp},
		{name: "typ JWT", opts: proofOpts{header: hset("typ", "JWT")}, want: ReasonTyp},
		{name: "typ at+jwt", opts: proofOpts{header: hset("typ", "at+jwt")}, want: ReasonTyp},
		{name: "typ not a string", opts: proofOpts{header: hset("typ", 1)}, want: ReasonTyp},
		{name: "typ upper-case member name", opts: proofOpts{rawHeader: `{"TYP":"dpop+jwt","alg":"ES256","jwk":` + jwkJSON + `}`}, want: ReasonTyp},

		// alg.
		{name: "alg none", opts: proofOpts{header: hset("alg", "none"), edit: func(p []string) { p[2] = "AA" }}, want: ReasonAlg},
		{name: "alg HS256", opts: proofOpts{header: hset("alg", "HS256")}, want: ReasonAlg},
		{name: "alg missing", opts: proofOpts{header: del("alg")}, want: ReasonAlg},
		{name: "alg ES512 unsupported", opts: proofOpts{header: hset("alg", "ES512")}, want: ReasonAlg},
		{name: "alg not allowed by options", opts: proofOpts{key: ks[jwks.AlgES384]}, copts: DPoPOptions{Algorithms: []string{"ES256"}}, want: ReasonAlg},
		{name: "alg null", opts: proofOpts{header: hset("alg", nil)}, want: ReasonAlg},

		// jwk.
		{name: "jwk missing", opts: proofOpts{header: del("jwk")}, want: ReasonJWK},
		{name: "jwk with private d", opts: proofOpts{header: jwkSet("d", b64u(make([]byte, 32)))}, want: ReasonJWK},
		{name: "jwk symmetric", opts: proofOpts{header: hset("jwk", map[string]any{"kty": "oct", "k": "c2VjcmV0"})}, want: ReasonJWK},
		{name: "jwk symmetric with HS256", opts: proofOpts{header: hset("alg", "HS256", "jwk", map[string]any{"kty": "oct", "k": "c2VjcmV0"})}, want: ReasonAlg},
		{name: "jwk kty does not match alg", opts: proofOpts{header: hset("jwk", ks[jwks.AlgRS256].jwk)}, want: ReasonJWK},
		{name: "jwk curve does not match alg", opts: proofOpts{header: hset("jwk", ks[jwks.AlgES384].jwk)}, want: ReasonJWK},
		{name: "jwk point not on curve", opts: proofOpts{header: jwkSet("y", ecJWK["x"])}, want: ReasonJWK},
		{name: "jwk non-canonical coordinate", opts: proofOpts{header: jwkSet("x", ecJWK["x"].(string)+"=")}, want: ReasonJWK},
		{name: "jwk short coordinate", opts: proofOpts{header: jwkSet("x", b64u(make([]byte, 31)))}, want: ReasonJWK},
		{name: "jwk alg mismatch", opts: proofOpts{header: jwkSet("alg", "ES384")}, want: ReasonJWK},
		{name: "jwk use enc", opts: proofOpts{header: jwkSet("use", "enc")}, want: ReasonJWK},
		{name: "jwk foreign parameter", opts: proofOpts{header: jwkSet("n", "AQAB")}, want: ReasonJWK},
		{name: "jwk not an object", opts: proofOpts{header: hset("jwk", "key")}, want: ReasonJWK},
		{name: "jwk RSA too small", opts: proofOpts{key: ks[jwks.AlgRS256], header: jwkSet("n", b64u(append([]byte{0xc1}, make([]byte, 127)...)))}, want: ReasonJWK},

		// signature.
		{name: "signed by another key", opts: proofOpts{signWith: otherKey}, want: ReasonSignature},
		{name: "EdDSA signed by another key", opts: proofOpts{key: ks[jwks.AlgEdDSA], edit: func(p []string) { p[2] = b64u(make([]byte, 64)) }}, want: ReasonSignature},
		{name: "RS256 header, PS256 signature", opts: proofOpts{key: ks[jwks.AlgRS256], signWith: ks[jwks.AlgPS256], header: hset("alg", "RS256"), edit: func(p []string) { p[2] = b64u(ks[jwks.AlgPS256].signRaw(t, "PS256", p[0]+"."+p[1])) }}, want: ReasonSignature},
		{name: "payload swapped", opts: proofOpts{edit: func(p []string) { p[1] = b64json(validPayload) }}, want: ReasonSignature},
		{name: "truncated signature", opts: proofOpts{edit: func(p []string) { p[2] = p[2][:40] }}, want: ReasonSignature},
		{name: "zero ECDSA signature", opts: proofOpts{edit: func(p []string) { p[2] = b64u(make([]byte, 64)) }}, want: ReasonSignature},

		// Claims.
		{name: "jti missing", opts: proofOpts{claims: del("jti")}, want: ReasonClaims},
		{name: "jti empty", opts: proofOpts{claims: set("jti", "")}, want: ReasonClaims},
		{name: "jti not a string", opts: proofOpts{claims: set("jti", 42)}, want: ReasonClaims},
		{name: "jti too long", opts: proofOpts{claims: set("jti", strings.Repeat("j", 257))}, want: ReasonClaims},
		{name: "htm missing", opts: proofOpts{claims: del("htm")}, want: ReasonClaims},
		{name: "htu missing", opts: proofOpts{claims: del("htu")}, want: ReasonClaims},
		{name: "iat missing", opts: proofOpts{claims: del("iat")}, want: ReasonClaims},
		{name: "iat string", opts: proofOpts{claims: set("iat", itoa(testNow.Unix()))}, want: ReasonClaims},
		{name: "iat null", opts: proofOpts{claims: set("iat", nil)}, want: ReasonClaims},
		{name: "iat huge", opts: proofOpts{rawPayload: `{"jti":"j","htm":"GET","htu":"` + testHTU + `","iat":1e300}`}, want: ReasonClaims},

		// htm.
		{name: "htm wrong", opts: proofOpts{claims: set("htm", "POST")}, want: ReasonHTM},
		{name: "htm case", opts: proofOpts{claims: set("htm", "get")}, want: ReasonHTM},

		// htu.
		{name: "htu wrong host", opts: proofOpts{claims: set("htu", "https://evil.example.com/resource")}, want: ReasonHTU},
		{name: "htu wrong path", opts: proofOpts{claims: set("htu", "https://api.example.com/other")}, want: ReasonHTU},
		{name: "htu path prefix", opts: proofOpts{claims: set("htu", "https://api.example.com/resource/")}, want: ReasonHTU},
		{name: "htu path case", opts: proofOpts{claims: set("htu", "https://api.example.com/RESOURCE")}, want: ReasonHTU},
		{name: "htu wrong scheme", opts: proofOpts{claims: set("htu", "http://api.example.com/resource")}, want: ReasonHTU},
		{name: "htu wrong port", opts: proofOpts{claims: set("htu", "https://api.example.com:8443/resource")}, want: ReasonHTU},
		{name: "htu port 80 with https", opts: proofOpts{claims: set("htu", "https://api.example.com:80/resource")}, want: ReasonHTU},
		{name: "htu with query", opts: proofOpts{claims: set("htu", testHTU+"?a=1")}, url: testHTU + "?a=1", want: ReasonHTU},
		{name: "htu with empty query", opts: proofOpts{claims: set("htu", testHTU+"?")}, want: ReasonHTU},
		{name: "htu with fragment", opts: proofOpts{claims: set("htu", testHTU+"#f")}, want: ReasonHTU},
		{name: "htu relative", opts: proofOpts{claims: set("htu", "/resource")}, want: ReasonHTU},
		{name: "htu with userinfo", opts: proofOpts{claims: set("htu", "https://user@api.example.com/resource")}, want: ReasonHTU},
		{name: "htu encoded slash", opts: proofOpts{claims: set("htu", "https://api.example.com/a%2Fb")}, url: "https://api.example.com/a/b", want: ReasonHTU},
		{name: "request URL not absolute", url: "/resource", want: ReasonHTU},

		// iat.
		{name: "iat too old", opts: proofOpts{now: testNow.Add(-66 * time.Second)}, want: ReasonIAT},
		{name: "iat in the future beyond leeway", opts: proofOpts{now: testNow.Add(6 * time.Second)}, want: ReasonIAT},
		{name: "iat far future", opts: proofOpts{now: testNow.Add(24 * time.Hour)}, want: ReasonIAT},
		{name: "iat future without leeway", opts: proofOpts{now: testNow.Add(time.Second)}, copts: DPoPOptions{Leeway: -1}, want: ReasonIAT},

		// ath.
		{name: "ath missing with access token", token: testToken, want: ReasonATH},
		{name: "ath wrong", opts: proofOpts{token: "another token"}, token: testToken, want: ReasonATH},
		{name: "ath padded", opts: proofOpts{claims: set("ath", base64.URLEncoding.EncodeToString(tokenHash[:]))}, token: "another token", want: ReasonATH},
		{name: "ath not a string", opts: proofOpts{claims: set("ath", 1)}, token: testToken, want: ReasonATH},

		// jkt.
		{name: "jkt mismatch", opts: proofOpts{token: testToken}, token: testToken, jkt: otherKey.jkt, want: ReasonJKT},
		{name: "jkt of the same key with another alg", opts: proofOpts{key: ks[jwks.AlgRS256]}, jkt: es.jkt, want: ReasonJKT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newTestChecker(tt.copts)
			proof := tt.proof
			if proof == "" {
				proof = tt.opts.build(t)
			}
			method, u := testMethod, testHTU
			if tt.method != "" {
				method = tt.method
			}
			if tt.url != "" {
				u = tt.url
			}
			p, err := c.Check(proof, method, testURL(t, u), tt.token, tt.jkt)
			if err == nil {
				t.Fatalf("Check accepted the proof: %+v", p)
			}
			e := reasonOf(t, err)
			t.Logf("%v", err)
			if e.Reason != tt.want {
				t.Fatalf("Reason = %q (%v), want %q", e.Reason, err, tt.want)
			}
			if e.UseNonce || e.Nonce != "" {
				t.Errorf("UseNonce/Nonce set for a %s error", e.Reason)
			}
			if strings.Contains(err.Error(), proof) || (tt.token != "" && strings.Contains(err.Error(), tt.token)) {
				t.Errorf("error message leaks the proof or the token: %v", err)
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// flipLastBit re-encodes s with a non-zero unused trailing bit, a
// non-canonical encoding of the same bytes (s must not be a multiple of 4
// characters long).
func flipLastBit(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[last|1])
}

func TestCheckReplay(t *testing.T) {
	c, clk := newTestChecker(DPoPOptions{})
	proof := proofOpts{}.build(t)
	u := testURL(t, testHTU)
	if _, err := c.Check(proof, testMethod, u, "", ""); err != nil {
		t.Fatalf("first use: %v", err)
	}
	clk.Step(30 * time.Second)
	_, err := c.Check(proof, testMethod, u, "", "")
	if err == nil || reasonOf(t, err).Reason != ReasonReplay {
		t.Fatalf("second use: err = %v, want reason replay", err)
	}
	// The same jti under another key is a different proof.
	other := proofOpts{key: otherKey, claims: set("jti", mustJTI(t, proof))}.build(t)
	if _, err := c.Check(other, testMethod, u, "", ""); err != nil {
		t.Fatalf("same jti, other key: %v", err)
	}
	// A rejected proof is not remembered: it can be fixed and resent.
	fresh := proofOpts{claims: set("jti", "retry")}.build(t)
	if _, err := c.Check(fresh, "POST", u, "", ""); err == nil {
		t.Fatal("wrong method accepted")
	}
	if _, err := c.Check(fresh, testMethod, u, "", ""); err != nil {
		t.Fatalf("resend after a rejection: %v", err)
	}
	// Once out of the window, the replay is refused as too old.
	clk.Step(time.Hour)
	_, err = c.Check(proof, testMethod, u, "", "")
	if err == nil || reasonOf(t, err).Reason != ReasonIAT {
		t.Fatalf("replay after the window: err = %v, want reason iat", err)
	}
}

func mustJTI(t *testing.T, proof string) string {
	t.Helper()
	parts := strings.Split(proof, ".")
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct{ JTI string }
	if err := jsonUnmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.JTI
}

func TestReplayCacheBounded(t *testing.T) {
	const size = 8
	c, clk := newTestChecker(DPoPOptions{ReplayCacheSize: size})
	u := testURL(t, testHTU)
	var proofs []string
	for i := 0; i < 3*size; i++ {
		p := proofOpts{now: testNow.Add(-time.Duration(3*size-i) * time.Second)}.build(t)
		proofs = append(proofs, p)
		if _, err := c.Check(p, testMethod, u, "", ""); err != nil {
			t.Fatalf("proof %d: %v", i, err)
		}
		if n := c.replay.len(); n > size {
			t.Fatalf("after %d proofs the cache holds %d entries, bound is %d", i+1, n, size)
		}
	}
	// An evicted proof is still inside the iat window; the watermark refuses
	// it instead of letting it be replayed.
	_, err := c.Check(proofs[0], testMethod, u, "", "")
	if err == nil || reasonOf(t, err).Reason != ReasonReplay {
		t.Fatalf("replay of an evicted proof: err = %v, want reason replay", err)
	}
	// Remembered proofs are refused as replays too.
	_, err = c.Check(proofs[len(proofs)-1], testMethod, u, "", "")
	if err == nil || reasonOf(t, err).Reason != ReasonReplay {
		t.Fatalf("replay of a remembered proof: err = %v, want reason replay", err)
	}
	// Proofs issued now are newer than anything evicted and still pass.
	if _, err := c.Check(proofOpts{}.build(t), testMethod, u, "", ""); err != nil {
		t.Fatalf("fresh proof after eviction: %v", err)
	}

	// Out of the window every entry has expired: evicted proofs fail the iat
	// check, and expired entries are dropped before live ones are evicted.
	clk.Step(2 * time.Minute)
	now := clk.Now()
	_, err = c.Check(proofs[0], testMethod, u, "", "")
	if err == nil || reasonOf(t, err).Reason != ReasonIAT {
		t.Fatalf("evicted proof after the window: err = %v, want reason iat", err)
	}
	for i := 0; i < size; i++ {
		if _, err := c.Check(proofOpts{now: now}.build(t), testMethod, u, "", ""); err != nil {
			t.Fatalf("proof %d after the window: %v", i, err)
		}
	}
	if n := c.replay.len(); n != size {
		t.Errorf("cache holds %d entries, want %d (expired ones purged)", n, size)
	}
	if wm := c.replay.watermark; wm >= now.UnixNano() {
		t.Errorf("watermark %d rose although only expired entries were dropped", wm)
	}
}

func TestReplayCacheUnit(t *testing.T) {
	c := newReplayCache(2)
	k := func(s string) replayKey { return newReplayKey("jkt", s) }
	if fresh, _ := c.check(k("a"), 100, 0); !fresh {
		t.Fatal("a not fresh")
	}
	if fresh, _ := c.check(k("a"), 100, 0); fresh {
		t.Fatal("a replay accepted")
	}
	if newReplayKey("jkt", "a") == newReplayKey("jk", "ta") {
		t.Fatal("key is ambiguous")
	}
	c.check(k("b"), 300, 0)
	c.check(k("c"), 200, 0) // evicts a (exp 100): watermark 100
	if n := c.len(); n != 2 {
		t.Fatalf("len = %d, want 2", n)
	}
	if fresh, overflow := c.check(k("d"), 100, 0); fresh || !overflow {
		t.Fatalf("proof at the watermark: fresh=%v overflow=%v", fresh, overflow)
	}
	// An entry older than everything in a full cache is evicted at once.
	if fresh, _ := c.check(k("e"), 150, 0); !fresh {
		t.Fatal("e not fresh")
	}
	if fresh, overflow := c.check(k("e"), 150, 0); fresh || !overflow {
		t.Fatalf("e replay: fresh=%v overflow=%v", fresh, overflow)
	}
	// At time 250 c (exp 200) has expired and is dropped, not evicted.
	if fresh, _ := c.check(k("f"), 400, 250); !fresh {
		t.Fatal("f not fresh")
	}
	if c.watermark != 150 {
		t.Errorf("watermark = %d, want 150", c.watermark)
	}
}

func TestCheckNonce(t *testing.T) {
	const lifetime = 5 * time.Minute
	c, clk := newTestChecker(DPoPOptions{RequireNonce: true, NonceLifetime: lifetime})
	u := testURL(t, testHTU)
	check := func(nonce any) error {
		o := proofOpts{now: clk.Now()}
		if nonce != nil {
			o.extra = map[string]any{"nonce": nonce}
		}
		_, err := c.Check(o.build(t), testMethod, u, "", "")
		return err
	}
	wantNonceError := func(name string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		e := reasonOf(t, err)
		if e.Reason != ReasonNonce || !e.UseNonce || e.Nonce == "" {
			t.Fatalf("%s: err = %+v, want reason nonce with UseNonce and a Nonce", name, e)
		}
		if e.Nonce != c.Nonce() {
			t.Fatalf("%s: Error.Nonce %q is not the current nonce %q", name, e.Nonce, c.Nonce())
		}
	}

	wantNonceError("missing", check(nil))
	wantNonceError("not a string", check(7))
	wantNonceError("invalid", check("made-up"))
	wantNonceError("too long", check(strings.Repeat("n", 1000)))

	n1 := c.Nonce()
	if len(n1) != 22 {
		t.Errorf("nonce %q has length %d, want 22", n1, len(n1))
	}
	if n1 != c.Nonce() {
		t.Error("nonce changed within its lifetime")
	}
	if err := check(n1); err != nil {
		t.Fatalf("current nonce: %v", err)
	}
	// Nonces of another checker (another key) are not accepted.
	other, _ := newTestChecker(DPoPOptions{RequireNonce: true, NonceLifetime: lifetime})
	wantNonceError("other checker's nonce", check(other.Nonce()))

	clk.Step(lifetime)
	n2 := c.Nonce()
	if n2 == n1 {
		t.Fatal("nonce did not rotate")
	}
	if err := check(n1); err != nil {
		t.Fatalf("previous nonce within one more lifetime: %v", err)
	}
	if err := check(n2); err != nil {
		t.Fatalf("current nonce after rotation: %v", err)
	}
	clk.Step(lifetime)
	wantNonceError("stale", check(n1))
	if err := check(n2); err != nil {
		t.Fatalf("previous nonce: %v", err)
	}
}

func TestNewDPoPCheckerDefaults(t *testing.T) {
	c, _ := newTestChecker(DPoPOptions{})
	if c.maxAge != DefaultMaxAge || c.leeway != DefaultLeeway || c.replay.max != DefaultReplayCacheSize || c.nonces.lifetime != DefaultNonceLifetime || c.require {
		t.Errorf("defaults not applied: %+v", c)
	}
	for _, a := range jwks.Algorithms() {
		if !c.algs[a] {
			t.Errorf("default algorithms lack %s", a)
		}
	}
	c2, _ := newTestChecker(DPoPOptions{Algorithms: []string{"HS256", "none"}})
	if len(c2.algs) != 0 {
		t.Errorf("unsupported algorithms enabled: %v", c2.algs)
	}
	defer func() {
		if recover() == nil {
			t.Error("NewDPoPChecker(nil clock) did not panic")
		}
	}()
	NewDPoPChecker(DPoPOptions{}, nil)
}

func TestErrorString(t *testing.T) {
	e := &Error{Reason: ReasonHTU, Detail: "htu does not match"}
	if got, want := e.Error(), "binding: htu: htu does not match"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := (&Error{Reason: ReasonIAT}).Error(), "binding: iat"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestHeaderCache checks that a cached header is reused and that rejected
// headers are never cached.
func TestHeaderCache(t *testing.T) {
	c, _ := newTestChecker(DPoPOptions{})
	u := testURL(t, testHTU)
	for i := 0; i < 3; i++ {
		if _, err := c.Check(proofOpts{}.build(t), testMethod, u, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.keys) != 1 {
		t.Errorf("key cache holds %d entries, want 1", len(c.keys))
	}
	bad := proofOpts{header: hset("typ", "JWT")}.build(t)
	for i := 0; i < 2; i++ {
		if _, err := c.Check(bad, testMethod, u, "", ""); err == nil || reasonOf(t, err).Reason != ReasonTyp {
			t.Fatalf("attempt %d: err = %v, want typ", i, err)
		}
	}
	if len(c.keys) != 1 {
		t.Errorf("key cache holds %d entries after rejections, want 1", len(c.keys))
	}
	// The cache is bounded.
	for i := 0; i < keyCacheSize+10; i++ {
		proof := proofOpts{header: hset("kid", itoa(int64(i)))}.build(t)
		if _, err := c.Check(proof, testMethod, u, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.keys) > keyCacheSize {
		t.Errorf("key cache holds %d entries, bound is %d", len(c.keys), keyCacheSize)
	}
}

// TestCheckConcurrent races one proof and many distinct ones across
// goroutines: the shared proof is accepted exactly once.
func TestCheckConcurrent(t *testing.T) {
	c, _ := newTestChecker(DPoPOptions{ReplayCacheSize: 64})
	u := testURL(t, testHTU)
	shared := proofOpts{}.build(t)
	const workers = 8
	distinct := make([]string, workers)
	for i := range distinct {
		distinct[i] = proofOpts{key: keys(t)[jwks.Algorithms()[i%5]]}.build(t)
	}
	var wg sync.WaitGroup
	var accepted atomic.Int32
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Check(shared, testMethod, u, "", ""); err == nil {
				accepted.Add(1)
			}
			if _, err := c.Check(distinct[i], testMethod, u, "", ""); err != nil {
				t.Errorf("distinct proof %d: %v", i, err)
			}
			_ = c.Nonce()
		}()
	}
	wg.Wait()
	if n := accepted.Load(); n != 1 {
		t.Errorf("shared proof accepted %d times, want 1", n)
	}
}
