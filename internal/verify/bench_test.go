package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/keyward-dev/keyward/internal/jwks"
	"github.com/keyward-dev/keyward/internal/revocation"
)

// Benchmarks come in pairs: the raw crypto/* verification of the same signing input (the
// baseline) and the full Verify path (cache disabled), so the ratio is measured in one
// run. Run them all together:
//
//	go test -run=x -bench=. -count=5 -benchmem ./internal/verify/ ./internal/revocation/

// reportCPU adds the process CPU time per operation (cpu-ns/op) since start. It
// includes the garbage collector's work on other threads, as a server would pay it.
func reportCPU(b *testing.B, start time.Duration) {
	if start > 0 && b.N > 0 {
		b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
	}
}

// benchToken returns a realistic access token signed by alg's test key, its signing
// input and its signature.
func benchToken(b *testing.B, alg string) (s *signer, tok string, signingInput, sig []byte) {
	b.Helper()
	s = testSigners(b)[alg]
	tok = s.token(b, s.stdHeader(), claims(map[string]any{"jti": "0f8fad5b-d9cb-469f-a165-70867728950e"}))
	dot := strings.LastIndexByte(tok, '.')
	sig, err := enc.DecodeString(tok[dot+1:])
	if err != nil {
		b.Fatal(err)
	}
	return s, tok, []byte(tok[:dot]), sig
}

func benchVerify(b *testing.B, alg string, cacheSize int) {
	_, tok, _, _ := benchToken(b, alg)
	opts := testOptions()
	opts.CacheSize = cacheSize
	v := New(testKeySet(b), opts, testRevocations(), newFakeClock())
	if _, err := v.Verify(tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	defer reportCPU(b, cpu)
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawECDSAP256 is crypto/ecdsa.Verify on a precomputed SHA-256 digest.
func BenchmarkRawECDSAP256(b *testing.B) {
	s, _, in, sig := benchToken(b, jwks.AlgES256)
	pub := s.priv.Public().(*ecdsa.PublicKey)
	digest := sha256.Sum256(in)
	r, ss := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	defer reportCPU(b, cpu)
	for b.Loop() {
		if !ecdsa.Verify(pub, digest[:], r, ss) {
			b.Fatal("verify failed")
		}
	}
}

func BenchmarkVerifyES256(b *testing.B) { benchVerify(b, jwks.AlgES256, 0) }

// BenchmarkRawEd25519 is crypto/ed25519.Verify on the token's signing input.
func BenchmarkRawEd25519(b *testing.B) {
	s, _, in, sig := benchToken(b, jwks.AlgEdDSA)
	pub := s.priv.Public().(ed25519.PublicKey)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	defer reportCPU(b, cpu)
	for b.Loop() {
		if !ed25519.Verify(pub, in, sig) {
			b.Fatal("verify failed")
		}
	}
}

func BenchmarkVerifyEdDSA(b *testing.B) { benchVerify(b, jwks.AlgEdDSA, 0) }

// BenchmarkRawRSAPKCS1v15 is crypto/rsa.VerifyPKCS1v15 (2048 bits) on a precomputed
// SHA-256 digest.
func BenchmarkRawRSAPKCS1v15(b *testing.B) {
	s, _, in, sig := benchToken(b, jwks.AlgRS256)
	pub := s.priv.Public().(*rsa.PublicKey)
	digest := sha256.Sum256(in)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	defer reportCPU(b, cpu)
	for b.Loop() {
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyRS256(b *testing.B) { benchVerify(b, jwks.AlgRS256, 0) }

// BenchmarkVerifyCacheHit is a token already verified: SHA-256 of the token, a map
// lookup, the exp check and the revocation check.
func BenchmarkVerifyCacheHit(b *testing.B) { benchVerify(b, jwks.AlgES256, 1024) }

// BenchmarkOverheadES256 is what Verify does besides the ECDSA operation and the
// SHA-256 of the signing input: the JWS checks up to the signature (a token whose
// signature has the wrong length stops there), payload decoding, claims and revocation.
// A diagnostic for the ratio of BenchmarkVerifyES256 to BenchmarkRawECDSAP256.
func BenchmarkOverheadES256(b *testing.B) {
	_, tok, _, sig := benchToken(b, jwks.AlgES256)
	v := New(testKeySet(b), testOptions(), testRevocations(), newFakeClock())
	short := tok[:strings.LastIndexByte(tok, '.')+1] + enc.EncodeToString(sig[:63]) // a byte short
	payload := decodePayload(b, tok)                                                // checkJWS decodes it too
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	defer reportCPU(b, cpu)
	for b.Loop() {
		j, err := checkJWS(short, v.keys, v.opts.Algorithms, v.opts.MaxTokenBytes, v.typ, nil)
		if err == nil || err.Reason != "signature" || j.key != nil {
			b.Fatal(err)
		}
		c, cerr := parseClaims(payload)
		if cerr != nil {
			b.Fatal(cerr)
		}
		if err := v.checkClaims(c); err != nil {
			b.Fatal(err)
		}
		if v.revoked.Check(revocation.Token{JTI: c.JTI, Subject: c.Subject, SessionID: c.SessionID, ClientID: c.ClientID, IssuedAt: c.IssuedAt}) != "" {
			b.Fatal("revoked")
		}
	}
}

func decodePayload(b *testing.B, tok string) []byte {
	parts := strings.Split(tok, ".")
	p, err := b64.DecodeString(parts[1])
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkInterleavedES256 alternates the two operations of the ES256 pair in one loop
// (raw crypto/ecdsa.Verify, then Verify with the cache disabled) and reports each one's
// mean and their ratio. Interleaving cancels the drift of a shared machine's load, which
// separate benchmarks run one after the other do not.
func BenchmarkInterleavedES256(b *testing.B) {
	s, tok, in, sig := benchToken(b, jwks.AlgES256)
	pub := s.priv.Public().(*ecdsa.PublicKey)
	digest := sha256.Sum256(in)
	r, ss := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	v := New(testKeySet(b), testOptions(), testRevocations(), newFakeClock())
	var raw, full time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if !ecdsa.Verify(pub, digest[:], r, ss) {
			b.Fatal("verify failed")
		}
		t1 := time.Now()
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
		raw += t1.Sub(t0)
		full += time.Since(t1)
	}
	b.ReportMetric(float64(raw)/float64(b.N), "raw-ns/op")
	b.ReportMetric(float64(full)/float64(b.N), "verify-ns/op")
	b.ReportMetric(float64(full)/float64(raw), "ratio")
}
