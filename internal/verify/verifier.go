package verify

import (
	"crypto/sha256"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/keyward-dev/keyward/internal/revocation"
)

func newVerifier(keys *KeySet, opts Options, revoked *revocation.Set, clk clock.PassiveClock) *Verifier {
	if opts.MaxTokenBytes <= 0 {
		opts.MaxTokenBytes = DefaultMaxTokenBytes
	}
	opts.Audiences = append([]string(nil), opts.Audiences...)
	opts.Algorithms = append([]string(nil), opts.Algorithms...)
	v := &Verifier{
		keys:    keys,
		opts:    opts,
		revoked: revoked,
		clk:     clk,
		typ:     typRuleOf(opts.Type),
		leeway:  max(int64(opts.Leeway/time.Second), 0),
	}
	if opts.CacheSize > 0 {
		v.cache = &cache{size: opts.CacheSize, m: make(map[[sha256.Size]byte]*cacheEntry, min(opts.CacheSize, 1<<16))}
	}
	return v
}

func (v *Verifier) verify(token string) (*Claims, error) {
	if len(token) > v.opts.MaxTokenBytes {
		return nil, reject("too_large", "token exceeds the size limit")
	}
	var sum [sha256.Size]byte
	if v.cache != nil {
		sum = sha256.Sum256(stringBytes(token))
		if e := v.cache.get(sum); e != nil {
			if err := v.recheck(e); err != nil {
				v.cache.remove(sum)
				return nil, err
			}
			if v.opts.OnCacheHit != nil {
				v.opts.OnCacheHit()
			}
			return e.claims, nil
		}
	}
	j, jerr := checkJWS(token, v.keys, v.opts.Algorithms, v.opts.MaxTokenBytes, v.typ, &v.sigChecks)
	if jerr != nil {
		return nil, jerr
	}
	c, cerr := parseClaims(j.payload)
	if cerr != nil {
		return nil, cerr
	}
	c.KID = j.key.KID
	if err := v.checkClaims(c); err != nil {
		return nil, err
	}
	rt := revocation.Token{
		JTI: c.JTI, Subject: c.Subject, SessionID: c.SessionID, KeyID: c.KID,
		ClientID: c.ClientID, IssuedAt: c.IssuedAt,
	}
	if claim := v.revoked.Check(rt); claim != "" {
		return nil, reject("revoked", "revoked by "+claim)
	}
	if v.cache != nil {
		v.cache.put(sum, &cacheEntry{claims: c, rt: rt})
	}
	return c, nil
}

// checkClaims applies the time, issuer and audience rules.
func (v *Verifier) checkClaims(c *Claims) *Error {
	now := v.clk.Now().Unix()
	switch {
	case now >= c.Expiry+v.leeway:
		return reject("expired", "token has expired")
	case c.NotBefore != 0 && now+v.leeway < c.NotBefore:
		return reject("not_yet_valid", "token is not valid yet (nbf)")
	case c.IssuedAt != 0 && now+v.leeway < c.IssuedAt:
		return reject("issued_in_future", "token is issued in the future (iat)")
	case v.opts.Issuer == "" || c.Issuer != v.opts.Issuer:
		return reject("issuer", "iss is not the policy's issuer")
	}
	for _, a := range c.Audience {
		if a != "" && contains(v.opts.Audiences, a) {
			return nil
		}
	}
	return reject("audience", "aud does not name an accepted audience")
}

// recheck applies to a cached token what can change after it was verified: the clock
// (exp) and, for symmetry with the uncached path, the revocation set.
func (v *Verifier) recheck(e *cacheEntry) *Error {
	if v.clk.Now().Unix() >= e.claims.Expiry+v.leeway {
		return reject("expired", "token has expired")
	}
	if claim := v.revoked.Check(e.rt); claim != "" {
		return reject("revoked", "revoked by "+claim)
	}
	return nil
}

type cacheEntry struct {
	claims *Claims
	rt     revocation.Token
}

// cache maps the SHA-256 of a verified token to its claims. It holds at most size
// entries; when full, an arbitrary entry (Go's randomised map iteration order) makes
// room. Entries whose exp passed are removed when next looked up.
type cache struct {
	mu   sync.RWMutex
	m    map[[sha256.Size]byte]*cacheEntry
	size int
}

func (c *cache) get(k [sha256.Size]byte) *cacheEntry {
	c.mu.RLock()
	e := c.m[k]
	c.mu.RUnlock()
	return e
}

func (c *cache) put(k [sha256.Size]byte, e *cacheEntry) {
	c.mu.Lock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.size {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = e
	c.mu.Unlock()
}

func (c *cache) remove(k [sha256.Size]byte) {
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

// len is the number of cached tokens.
func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
