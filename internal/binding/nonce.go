package binding

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"sync/atomic"
	"time"
)

// nonceBytes is the length of a server nonce before base64url encoding.
const nonceBytes = 16

// maxNonceLen bounds the "nonce" claim the checker compares.
const maxNonceLen = 256

// nonces issues stateless server nonces (RFC 9449 section 8): the
// base64url HMAC-SHA256, truncated to 128 bits, of the counter
// floor(now / lifetime) under a random key. The nonce of the current and
// of the previous counter are accepted, so a nonce stays valid for at least
// one and at most two lifetimes. Nothing is stored per client.
type nonces struct {
	key      []byte
	lifetime time.Duration
	cached   atomic.Pointer[nonceSet]
}

type nonceSet struct {
	counter   int64
	cur, prev string
}

func (n *nonces) mac(counter int64) string {
	m := hmac.New(sha256.New, n.key)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(counter))
	m.Write(b[:])
	var sum [sha256.Size]byte
	return base64.RawURLEncoding.EncodeToString(m.Sum(sum[:0])[:nonceBytes])
}

// at returns the nonces valid at now.
func (n *nonces) at(now time.Time) *nonceSet {
	counter := now.UnixNano() / int64(n.lifetime)
	if s := n.cached.Load(); s != nil && s.counter == counter {
		return s
	}
	s := &nonceSet{counter: counter, cur: n.mac(counter), prev: n.mac(counter - 1)}
	n.cached.Store(s)
	return s
}

// valid reports whether nonce is the current or the previous server nonce
// at now, in constant time with respect to the nonce value.
func (n *nonces) valid(nonce string, now time.Time) bool {
	s := n.at(now)
	a := subtle.ConstantTimeCompare([]byte(nonce), []byte(s.cur))
	b := subtle.ConstantTimeCompare([]byte(nonce), []byte(s.prev))
	return a|b == 1
}
