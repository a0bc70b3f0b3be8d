package binding

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keyward-dev/keyward/internal/jwks"
)

// testNow is the fake clock's start for tests that do not use RFC vectors.
var testNow = time.Unix(1_800_000_000, 0)

const (
	testMethod = "GET"
	testHTU    = "https://api.example.com/resource"
	testToken  = "an.access.token"
)

func testURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", s, err)
	}
	return u
}

// testKey is a client's DPoP key pair.
type testKey struct {
	alg  string
	priv crypto.Signer
	jwk  map[string]any // public JWK members
	jkt  string
}

var (
	keysOnce sync.Once
	keysByAl map[string]*testKey
	otherKey *testKey // a second ES256 key
)

// keys returns one key per supported algorithm (RSA keys are shared between
// RS256 and PS256), generated once per test binary.
func keys(t testing.TB) map[string]*testKey {
	t.Helper()
	keysOnce.Do(func() {
		ec256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		_, ed, _ := ed25519.GenerateKey(rand.Reader)
		rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		keysByAl = map[string]*testKey{
			jwks.AlgES256: newTestKey(t, jwks.AlgES256, ec256),
			jwks.AlgES384: newTestKey(t, jwks.AlgES384, ec384),
			jwks.AlgEdDSA: newTestKey(t, jwks.AlgEdDSA, ed),
			jwks.AlgRS256: newTestKey(t, jwks.AlgRS256, rsaKey),
			jwks.AlgPS256: newTestKey(t, jwks.AlgPS256, rsaKey),
		}
		otherKey = newTestKey(t, jwks.AlgES256, other)
	})
	return keysByAl
}

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func newTestKey(t testing.TB, alg string, priv crypto.Signer) *testKey {
	t.Helper()
	m := map[string]any{}
	switch pub := priv.Public().(type) {
	case *ecdsa.PublicKey:
		raw, err := pub.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		n := (len(raw) - 1) / 2
		m["kty"], m["crv"], m["x"], m["y"] = "EC", pub.Curve.Params().Name, b64u(raw[1:1+n]), b64u(raw[1+n:])
	case ed25519.PublicKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b64u(pub)
	case *rsa.PublicKey:
		m["kty"], m["n"], m["e"] = "RSA", b64u(pub.N.Bytes()), b64u(big.NewInt(int64(pub.E)).Bytes())
	}
	// The expected thumbprint comes from jwx directly, independently of the
	// checker's own key parsing.
	k, err := jwk.Import(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	sum, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{alg: alg, priv: priv, jwk: m, jkt: b64u(sum)}
}

// signRaw signs header.payload (already base64url) with k under alg.
func (k *testKey) signRaw(t testing.TB, alg, input string) []byte {
	t.Helper()
	var sig []byte
	var err error
	switch alg {
	case jwks.AlgES256, jwks.AlgES384:
		var h []byte
		size := 32
		if alg == jwks.AlgES256 {
			s := sha256.Sum256([]byte(input))
			h = s[:]
		} else {
			s := sha512.Sum384([]byte(input))
			h, size = s[:], 48
		}
		r, s, e := ecdsa.Sign(rand.Reader, k.priv.(*ecdsa.PrivateKey), h)
		if e != nil {
			t.Fatal(e)
		}
		sig = make([]byte, 2*size)
		r.FillBytes(sig[:size])
		s.FillBytes(sig[size:])
	case jwks.AlgEdDSA:
		sig = ed25519.Sign(k.priv.(ed25519.PrivateKey), []byte(input))
	case jwks.AlgRS256:
		h := sha256.Sum256([]byte(input))
		sig, err = rsa.SignPKCS1v15(rand.Reader, k.priv.(*rsa.PrivateKey), crypto.SHA256, h[:])
	case jwks.AlgPS256:
		h := sha256.Sum256([]byte(input))
		sig, err = rsa.SignPSS(rand.Reader, k.priv.(*rsa.PrivateKey), crypto.SHA256, h[:],
			&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	default:
		sig = []byte("not-a-real-signature")
	}
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

var jtiCounter atomic.Int64

// proofOpts describes one proof. Zero fields take defaults: the key's alg,
// typ "dpop+jwt", the key's public JWK, a unique jti, htm GET, htu testHTU
// and iat now.
type proofOpts struct {
	key        *testKey
	signWith   *testKey               // sign with another key than the one in the header
	header     func(h map[string]any) // edit the header
	claims     func(c map[string]any) // edit the claims
	rawHeader  string                 // header JSON to use verbatim
	rawPayload string                 // payload JSON to use verbatim
	edit       func(parts []string)   // edit the base64url parts after signing
	now        time.Time              // iat; zero means testNow
	token      string                 // add ath for this token
	extra      map[string]any         // extra claims
}

func (o proofOpts) build(t testing.TB) string {
	t.Helper()
	k := o.key
	if k == nil {
		k = keys(t)[jwks.AlgES256]
	}
	now := o.now
	if now.IsZero() {
		now = testNow
	}
	h := map[string]any{"typ": "dpop+jwt", "alg": k.alg, "jwk": k.jwk}
	c := map[string]any{
		"jti": "jti-" + strconv.FormatInt(jtiCounter.Add(1), 10),
		"htm": testMethod,
		"htu": testHTU,
		"iat": now.Unix(),
	}
	if o.token != "" {
		sum := sha256.Sum256([]byte(o.token))
		c["ath"] = b64u(sum[:])
	}
	for name, v := range o.extra {
		c[name] = v
	}
	if o.header != nil {
		o.header(h)
	}
	if o.claims != nil {
		o.claims(c)
	}
	hj, pj := []byte(o.rawHeader), []byte(o.rawPayload)
	if o.rawHeader == "" {
		hj = mustJSON(t, h)
	}
	if o.rawPayload == "" {
		pj = mustJSON(t, c)
	}
	input := b64u(hj) + "." + b64u(pj)
	signer := k
	if o.signWith != nil {
		signer = o.signWith
	}
	alg, _ := h["alg"].(string)
	if !jwks.IsSupported(alg) {
		alg = k.alg
	}
	parts := []string{b64u(hj), b64u(pj), b64u(signer.signRaw(t, alg, input))}
	if o.edit != nil {
		o.edit(parts)
	}
	return parts[0] + "." + parts[1] + "." + parts[2]
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newTestChecker(opts DPoPOptions) (*DPoPChecker, *clocktesting.FakeClock) {
	clk := clocktesting.NewFakeClock(testNow)
	return NewDPoPChecker(opts, clk), clk
}

// reasonOf returns the Reason of a *binding.Error, or fails the test.
func reasonOf(t testing.TB, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *binding.Error", err, err)
	}
	return e
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
