// Package verify verifies JWT access tokens on the request path of the verifier
// sidecar. It is a strict layer over the standard library's crypto: compact JWS only,
// canonical base64url, duplicate-free JSON, a fixed algorithm per key, no embedded keys,
// no crit, required exp, exact issuer, audience and typ, then revocation. jwx is used
// only to turn bundle JWKs into crypto public keys (NewKeySet), never per request.
package verify

import (
	"crypto"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"k8s.io/utils/clock"

	"github.com/keyward-dev/keyward/internal/revocation"
)

// Key is one verification key: its kid fixes the algorithm.
type Key struct {
	KID, Alg string
	// Public is *ecdsa.PublicKey, ed25519.PublicKey or *rsa.PublicKey.
	Public crypto.PublicKey
}

// KeySet is an immutable kid → Key map.
type KeySet struct {
	keys map[string]*key
}

// NewKeySet converts bundle keys; keys whose "use" is not "sig" or whose key_ops lack
// "verify" are left out (honoured, not trusted). It fails, rather than leave a key out,
// on a symmetric key, a key without kid or alg, an algorithm other than ES256, ES384,
// EdDSA, RS256 and PS256, a key that does not fit its alg (curve, key type, invalid EC
// point), a weak RSA key (outside 2048..8192 bits, unsound exponent, ROCA) and duplicate
// kids. A private key contributes its public half.
func NewKeySet(keys []jwk.Key) (*KeySet, error) { return newKeySet(keys) }

// Len is the number of keys in the set.
func (s *KeySet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.keys)
}

// Options is what a token must satisfy beyond its signature. The zero value of Issuer,
// Audiences or Type accepts nothing (fail closed), never everything.
type Options struct {
	Issuer     string        // required exact iss
	Audiences  []string      // aud (string or array) must contain one
	Algorithms []string      // allowed algs (further limit; the key's alg always decides)
	Leeway     time.Duration // on exp, nbf, iat; whole seconds (fractions are dropped)
	// Type is the required typ: "at+jwt" (also accepts "application/at+jwt",
	// case-insensitively, per RFC 9068 and RFC 7515 §4.1.9) or "JWT" (then typ is
	// absent, "JWT" or "application/jwt", case-insensitively). Any other value refuses
	// every token with reason "typ".
	Type          string
	MaxTokenBytes int // default 8192; longer tokens are refused before any parsing
	CacheSize     int // verified-token cache entries; 0 disables
	// OnCacheHit, when set, is called for every token served from the cache (a metric).
	OnCacheHit func()
}

// DefaultMaxTokenBytes is used when Options.MaxTokenBytes is 0.
const DefaultMaxTokenBytes = 8192

// Header is the part of a JWS header a caller may need.
type Header struct{ Alg, KID, Typ string }

// Confirmation is the RFC 7800 cnf claim, as used by DPoP (jkt, RFC 9449) and mTLS
// (x5t#S256, RFC 8705).
type Confirmation struct {
	JKT     string `json:"jkt,omitempty"`
	X5TS256 string `json:"x5t#S256,omitempty"`
}

// Claims are the checked claims of an accepted token. Callers must not modify them:
// cache hits return the same *Claims.
type Claims struct {
	Issuer, Subject, JTI, SessionID, ClientID string
	Audience                                  []string
	Scopes                                    []string // from "scope" (space-separated string, RFC 9068/8693)
	// Unix seconds; 0 if absent (exp is never absent in accepted tokens).
	IssuedAt, NotBefore, Expiry int64
	Cnf                         *Confirmation
	KID                         string // kid of the key that verified it

	payload []byte // the checked JSON payload
}

// Raw returns the raw JSON of a top-level claim (for forwarding claims as headers), as
// it appears in the token (escapes and number formatting kept). The bytes are shared:
// callers must not modify them.
func (c *Claims) Raw(name string) (json.RawMessage, bool) {
	if c == nil || len(c.payload) == 0 {
		return nil, false
	}
	it := newMemberIter(c.payload)
	for {
		raw, escaped, start, end, ok := it.next()
		if !ok {
			return nil, false
		}
		if string(raw) == name || escaped && decodeString(raw, true) == name {
			return json.RawMessage(c.payload[start:end:end]), true
		}
	}
}

// Error is a rejection. Reason is a stable low-cardinality label for metrics and audit
// ("malformed", "too_large", "base64", "duplicate_member", "header", "alg_none",
// "alg_hmac", "alg_unsupported", "alg_mismatch", "unknown_kid", "embedded_key", "crit",
// "typ", "signature", "claims", "missing_exp", "expired", "not_yet_valid",
// "issued_in_future", "issuer", "audience", "revoked"); Detail is for logs (never
// contains the token or key material).
//
// Where a case could take two labels: a token that is not three dot-separated parts of
// base64url characters, or whose header or payload is not JSON, is "malformed"; padding,
// '+', '/', an impossible length or non-zero unused bits are "base64"; a header that is
// not an object, lacks alg or kid, has a parameter of the wrong type or has cty (nested
// JWT) is "header"; b64 counts as an extension ("crit"); a header alg not in
// Options.Algorithms is "alg_unsupported"; a payload that is not an object, or a
// registered claim of the wrong type or form, is "claims".
type Error struct{ Reason, Detail string }

func (e *Error) Error() string {
	if e.Detail == "" {
		return "token rejected: " + e.Reason
	}
	return "token rejected: " + e.Reason + ": " + e.Detail
}

// Verifier verifies tokens for one bundle. Build a new one per bundle: its cache dies
// with it. It is safe for concurrent use.
type Verifier struct {
	keys    *KeySet
	opts    Options
	revoked *revocation.Set
	clk     clock.PassiveClock
	cache   *cache
	typ     typRule
	leeway  int64 // seconds
	// sigChecks counts signature verifications (tests use it to prove cache hits).
	sigChecks atomic.Uint64
}

// New returns a Verifier. A nil revoked set revokes nothing; a nil key set verifies
// nothing. Options.MaxTokenBytes 0 means DefaultMaxTokenBytes.
func New(keys *KeySet, opts Options, revoked *revocation.Set, clk clock.PassiveClock) *Verifier {
	return newVerifier(keys, opts, revoked, clk)
}

// Verify runs the full path: JWS layer, claims, revocation. Cache hit: constant-time-ish
// lookup by SHA-256 of the token, exp re-checked against the clock, revocation re-checked;
// never re-verifies the signature. Every error is an *Error.
func (v *Verifier) Verify(token string) (*Claims, error) {
	c, err := v.verify(token)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// VerifyJWS checks the JWS layer alone (all header/signature rules, none of the claims)
// and returns the header and payload. It applies DefaultMaxTokenBytes. Every error is an
// *Error.
func VerifyJWS(token string, keys *KeySet, algorithms []string) (Header, []byte, error) {
	return verifyJWS(token, keys, algorithms, DefaultMaxTokenBytes, nil)
}
