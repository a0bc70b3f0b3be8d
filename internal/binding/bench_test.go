package binding

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"strconv"
	"testing"

	"github.com/keyward-dev/keyward/internal/jwks"
)

// benchProofs signs n distinct ES256 proofs (one client key, as a real
// client reuses its key) for the benchmark request.
func benchProofs(b *testing.B, n int) []string {
	b.Helper()
	k := keys(b)[jwks.AlgES256]
	proofs := make([]string, n)
	for i := range proofs {
		proofs[i] = proofOpts{key: k, token: testToken, claims: set("jti", "bench-"+strconv.Itoa(i))}.build(b)
	}
	return proofs
}

func benchmarkCheck(b *testing.B, noCache bool) {
	proofs := benchProofs(b, b.N)
	c, _ := newTestChecker(DPoPOptions{ReplayCacheSize: b.N + 1})
	c.noCache = noCache
	u := testURL(b, testHTU)
	jkt := keys(b)[jwks.AlgES256].jkt
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Check(proofs[i], testMethod, u, testToken, jkt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDPoPCheckES256 is the verifier's hot path: an ES256 proof with
// ath and jkt from a client whose key (header) was seen before.
func BenchmarkDPoPCheckES256(b *testing.B) { benchmarkCheck(b, false) }

// BenchmarkDPoPCheckES256ColdKey parses and validates the header and its
// jwk (jwk.Import, jwks.Thumbprint) for every proof.
func BenchmarkDPoPCheckES256ColdKey(b *testing.B) { benchmarkCheck(b, true) }

// BenchmarkECDSAVerifyP256 is the raw crypto/ecdsa cost that bounds the
// two benchmarks above, measured in the same run.
func BenchmarkECDSAVerifyP256(b *testing.B) {
	k := keys(b)[jwks.AlgES256].priv.(*ecdsa.PrivateKey)
	h := sha256.Sum256([]byte("signing input"))
	sig, err := ecdsa.SignASN1(rand.Reader, k, h[:])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !ecdsa.VerifyASN1(&k.PublicKey, h[:], sig) {
			b.Fatal("verify failed")
		}
	}
}
