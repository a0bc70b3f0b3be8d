package verify

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keyward-dev/keyward/internal/bundle"
	"github.com/keyward-dev/keyward/internal/jwks"
	"github.com/keyward-dev/keyward/internal/revocation"
)

func newCachingVerifier(t *testing.T, size int) (*Verifier, interface{ Step(time.Duration) }) {
	t.Helper()
	clk := newFakeClock()
	opts := testOptions()
	opts.CacheSize = size
	return New(testKeySet(t), opts, testRevocations(), clk), clk
}

func TestCacheHitSkipsSignature(t *testing.T) {
	es := testSigners(t)[jwks.AlgES256]
	v, _ := newCachingVerifier(t, 10)
	tok := es.token(t, es.stdHeader(), claims(nil))
	c1, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c2, err := v.Verify(tok)
		if err != nil {
			t.Fatal(err)
		}
		if c2 != c1 {
			t.Fatal("cache hit returned different claims")
		}
	}
	if n := v.sigChecks.Load(); n != 1 {
		t.Fatalf("signature checked %d times, want 1", n)
	}
}

func TestCacheDisabled(t *testing.T) {
	es := testSigners(t)[jwks.AlgES256]
	v, _ := newCachingVerifier(t, 0)
	tok := es.token(t, es.stdHeader(), claims(nil))
	for range 2 {
		if _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.sigChecks.Load(); n != 2 || v.cache != nil {
		t.Fatalf("signature checked %d times with the cache disabled, want 2", n)
	}
}

func TestCacheExpiryOnHit(t *testing.T) {
	es := testSigners(t)[jwks.AlgES256]
	v, clk := newCachingVerifier(t, 10)
	tok := es.token(t, es.stdHeader(), claims(map[string]any{"exp": testNow.Unix() + 60}))
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	clk.Step(89 * time.Second) // exp + leeway (30 s) not reached
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("cached token before exp+leeway: %v", err)
	}
	clk.Step(time.Second) // now == exp + leeway
	_, err := v.Verify(tok)
	if e, ok := errors.AsType[*Error](err); !ok || e.Reason != "expired" {
		t.Fatalf("cached token after exp: %v, want expired", err)
	}
	if n := v.sigChecks.Load(); n != 1 {
		t.Fatalf("signature checked %d times, want 1 (expiry is decided on the hit)", n)
	}
	if n := v.cache.len(); n != 0 {
		t.Fatalf("expired token still cached (%d entries)", n)
	}
	// And it stays rejected on the full path.
	if _, err := v.Verify(tok); err == nil || !isReason(err, "expired") {
		t.Fatalf("expired token: %v", err)
	}
}

func TestCacheRevocationOnHit(t *testing.T) {
	es := testSigners(t)[jwks.AlgES256]
	v, _ := newCachingVerifier(t, 10)
	tok := es.token(t, es.stdHeader(), claims(map[string]any{"jti": "later-revoked"}))
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	// A Verifier's set is fixed; swap it here to show that a hit consults it.
	v.revoked = revocation.New(bundle.Revocations{JTI: []bundle.Revoked{{Value: "later-revoked", Expires: testNow.Unix() + 600}}})
	_, err := v.Verify(tok)
	if e, ok := errors.AsType[*Error](err); !ok || e.Reason != "revoked" || e.Detail != "revoked by jti" {
		t.Fatalf("revoked cached token: %v", err)
	}
	if n := v.sigChecks.Load(); n != 1 {
		t.Fatalf("signature checked %d times, want 1", n)
	}
}

func TestCacheKeepsRejectionsOut(t *testing.T) {
	es := testSigners(t)[jwks.AlgES256]
	v, _ := newCachingVerifier(t, 10)
	revoked := es.token(t, es.stdHeader(), claims(map[string]any{"jti": "revoked-jti"}))
	wrongAud := es.token(t, es.stdHeader(), claims(map[string]any{"aud": "api://x"}))
	for range 2 {
		for _, tok := range []string{revoked, wrongAud} {
			if _, err := v.Verify(tok); err == nil {
				t.Fatal("rejected token accepted")
			}
		}
	}
	if n := v.sigChecks.Load(); n != 4 {
		t.Fatalf("signature checked %d times, want 4 (rejections are not cached)", n)
	}
	if n := v.cache.len(); n != 0 {
		t.Fatalf("%d rejected tokens cached", n)
	}
}

func TestCacheBounded(t *testing.T) {
	es := testSigners(t)[jwks.AlgEdDSA]
	const size = 4
	v, _ := newCachingVerifier(t, size)
	toks := make([]string, 20)
	for i := range toks {
		toks[i] = es.token(t, es.stdHeader(), claims(map[string]any{"jti": fmt.Sprint("jti-", i)}))
		if _, err := v.Verify(toks[i]); err != nil {
			t.Fatal(err)
		}
		if n := v.cache.len(); n > size {
			t.Fatalf("cache holds %d entries, more than %d", n, size)
		}
	}
	if n := v.cache.len(); n != size {
		t.Fatalf("cache holds %d entries, want %d", n, size)
	}
	// Evicted tokens are verified again, and still accepted.
	before := v.sigChecks.Load()
	for _, tok := range toks {
		if _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if after := v.sigChecks.Load(); after-before < uint64(len(toks)-size) {
		t.Fatalf("only %d of %d tokens re-verified", after-before, len(toks))
	}
}

func TestCacheConcurrent(t *testing.T) {
	es := testSigners(t)[jwks.AlgEdDSA]
	v, _ := newCachingVerifier(t, 8)
	toks := make([]string, 16)
	for i := range toks {
		toks[i] = es.token(t, es.stdHeader(), claims(map[string]any{"jti": fmt.Sprint("c-", i)}))
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				if _, err := v.Verify(toks[(g+i)%len(toks)]); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := v.cache.len(); n > 8 {
		t.Fatalf("cache holds %d entries", n)
	}
}

func isReason(err error, reason string) bool {
	e, ok := errors.AsType[*Error](err)
	return ok && e.Reason == reason
}
