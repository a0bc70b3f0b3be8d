package verify

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
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keyward-dev/keyward/internal/jwks"
)

var enc = base64.RawURLEncoding

// testNow is the fake clock's time in every test.
var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const (
	testIssuer   = "https://issuer.keyward.test"
	testAudience = "api://orders"
)

// signer is a private key with its kid and algorithm.
type signer struct {
	kid, alg string
	priv     crypto.Signer
	pub      jwk.Key // public JWK, as a bundle carries it
}

// newSigner generates a key with jwks.Generate (kid = RFC 7638 thumbprint).
func newSigner(t testing.TB, alg string) *signer {
	t.Helper()
	k, err := jwks.Generate(alg, 0)
	if err != nil {
		t.Fatal(err)
	}
	var raw any
	if err := jwk.Export(k, &raw); err != nil {
		t.Fatal(err)
	}
	pub, err := jwk.PublicKeyOf(k)
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := k.KeyID()
	var priv crypto.Signer
	switch r := raw.(type) {
	case *ecdsa.PrivateKey:
		priv = r
	case ed25519.PrivateKey:
		priv = r
	case *rsa.PrivateKey:
		priv = r
	default:
		t.Fatalf("unexpected private key type %T", raw)
	}
	return &signer{kid: kid, alg: alg, priv: priv, pub: pub}
}

// signerFromPrivate wraps a fixed private key (fuzzing needs keys that outlive a run).
func signerFromPrivate(t testing.TB, alg, kid string, priv crypto.Signer) *signer {
	t.Helper()
	pub, err := jwk.Import(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Set(jwk.KeyIDKey, kid); err != nil {
		t.Fatal(err)
	}
	if err := pub.Set(jwk.AlgorithmKey, alg); err != nil {
		t.Fatal(err)
	}
	return &signer{kid: kid, alg: alg, priv: priv, pub: pub}
}

// Test keys are expensive (RSA) and shared by all tests.
var (
	keysOnce sync.Once
	keysByAl map[string]*signer
	revKey   *signer // in the key set, its kid revoked
	attacker *signer // not in the key set
)

func testSigners(t testing.TB) map[string]*signer {
	t.Helper()
	keysOnce.Do(func() {
		keysByAl = map[string]*signer{}
		for _, alg := range jwks.Algorithms() {
			keysByAl[alg] = newSigner(t, alg)
		}
		revKey = newSigner(t, jwks.AlgES256)
		attacker = newSigner(t, jwks.AlgES256)
	})
	return keysByAl
}

func testKeySet(t testing.TB) *KeySet {
	t.Helper()
	signers := testSigners(t)
	var keys []jwk.Key
	for _, alg := range jwks.Algorithms() {
		keys = append(keys, signers[alg].pub)
	}
	keys = append(keys, revKey.pub)
	ks, err := NewKeySet(keys)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// signRaw signs signingInput under alg with the JWS signature encoding.
func signRaw(t testing.TB, alg string, priv crypto.Signer, signingInput []byte) []byte {
	t.Helper()
	switch alg {
	case jwks.AlgES256, jwks.AlgES384:
		k := priv.(*ecdsa.PrivateKey)
		var digest []byte
		if alg == jwks.AlgES256 {
			d := sha256.Sum256(signingInput)
			digest = d[:]
		} else {
			d := sha512.Sum384(signingInput)
			digest = d[:]
		}
		r, s, err := ecdsa.Sign(rand.Reader, k, digest)
		if err != nil {
			t.Fatal(err)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		sig := make([]byte, 2*size)
		r.FillBytes(sig[:size])
		s.FillBytes(sig[size:])
		return sig
	case jwks.AlgEdDSA:
		return ed25519.Sign(priv.(ed25519.PrivateKey), signingInput)
	case jwks.AlgRS256:
		d := sha256.Sum256(signingInput)
		sig, err := rsa.SignPKCS1v15(rand.Reader, priv.(*rsa.PrivateKey), crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	case jwks.AlgPS256:
		d := sha256.Sum256(signingInput)
		sig, err := rsa.SignPSS(rand.Reader, priv.(*rsa.PrivateKey), crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: 32})
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	t.Fatalf("signRaw: unsupported alg %q", alg)
	return nil
}

// token assembles and signs header.payload with s (header and payload are raw JSON).
func (s *signer) token(t testing.TB, header, payload string) string {
	t.Helper()
	in := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	return in + "." + enc.EncodeToString(signRaw(t, s.alg, s.priv, []byte(in)))
}

// stdHeader is the usual header for s.
func (s *signer) stdHeader() string {
	return `{"alg":"` + s.alg + `","kid":"` + s.kid + `","typ":"at+jwt"}`
}

// claims renders a payload: the standard claims with the overrides applied (a nil value
// removes the claim).
func claims(overrides map[string]any) string {
	now := testNow.Unix()
	m := map[string]any{
		"iss":       testIssuer,
		"sub":       "user-1",
		"aud":       []string{testAudience, "api://other"},
		"exp":       now + 600,
		"iat":       now - 5,
		"nbf":       now - 5,
		"jti":       "jti-1",
		"client_id": "client-1",
		"sid":       "sid-1",
		"scope":     "orders:read orders:write",
		"cnf":       map[string]string{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
	}
	for k, v := range overrides {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func testOptions() Options {
	return Options{
		Issuer:     testIssuer,
		Audiences:  []string{testAudience},
		Algorithms: jwks.Algorithms(),
		Leeway:     30 * time.Second,
		Type:       "at+jwt",
	}
}

func newFakeClock() *clocktesting.FakeClock { return clocktesting.NewFakeClock(testNow) }

// signPSSRaw signs digest with RSASSA-PSS (SHA-256, MGF1-SHA-256) and an arbitrary salt
// length (RFC 8017 §9.1.1), which crypto/rsa cannot do for a salt of length 0.
func signPSSRaw(t testing.TB, priv *rsa.PrivateKey, digest []byte, saltLen int) []byte {
	t.Helper()
	emBits := priv.N.BitLen() - 1
	emLen := (emBits + 7) / 8
	hLen := sha256.Size
	if emLen < hLen+saltLen+2 {
		t.Fatalf("salt of %d bytes does not fit", saltLen)
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		t.Fatal(err)
	}
	mPrime := append(append(make([]byte, 8), digest...), salt...)
	h := sha256.Sum256(mPrime)
	db := make([]byte, emLen-hLen-1)
	db[len(db)-saltLen-1] = 0x01
	copy(db[len(db)-saltLen:], salt)
	mask := mgf1SHA256(h[:], len(db))
	for i := range db {
		db[i] ^= mask[i]
	}
	db[0] &= 0xff >> (8*emLen - emBits)
	em := append(append(db, h[:]...), 0xbc)
	m := new(big.Int).SetBytes(em)
	s := new(big.Int).Exp(m, priv.D, priv.N)
	return s.FillBytes(make([]byte, (priv.N.BitLen()+7)/8))
}

func mgf1SHA256(seed []byte, n int) []byte {
	var out []byte
	for c := uint32(0); len(out) < n; c++ {
		h := sha256.New()
		h.Write(seed)
		h.Write([]byte{byte(c >> 24), byte(c >> 16), byte(c >> 8), byte(c)})
		out = h.Sum(out)
	}
	return out[:n]
}

// p256N is the order of P-256.
var p256N = elliptic.P256().Params().N
