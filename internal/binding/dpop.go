package binding

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"math"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/keyward-dev/keyward/internal/jwks"
)

// maxJTILen bounds the "jti" claim (RFC 9449 section 11.1 asks servers to
// refuse unnecessarily large values).
const maxJTILen = 256

// keyCacheSize bounds the cache of validated JOSE headers. A client reuses
// one key, and so one header, for all of its proofs; the cache lets Check
// skip header parsing, key validation and the thumbprint for it.
const keyCacheSize = 1024

// DPoPChecker verifies DPoP proofs (RFC 9449). It is safe for concurrent
// use; one checker should serve every request of a resource server, since
// its replay cache only sees the proofs it checked.
type DPoPChecker struct {
	clk     clock.PassiveClock
	algs    map[string]bool
	maxAge  time.Duration
	leeway  time.Duration
	require bool
	replay  *replayCache
	nonces  *nonces

	keysMu  sync.RWMutex
	keys    map[[sha256.Size]byte]*proofKey
	noCache bool // benchmarks of the cold path
}

// NewDPoPChecker returns a checker with opts (zero fields take their
// defaults; a negative Leeway means none) reading time from clk. The
// server-nonce key is drawn from crypto/rand here. It panics if clk is nil.
func NewDPoPChecker(opts DPoPOptions, clk clock.PassiveClock) *DPoPChecker {
	if clk == nil {
		panic("binding: NewDPoPChecker needs a clock")
	}
	algs := opts.Algorithms
	if len(algs) == 0 {
		algs = jwks.Algorithms()
	}
	c := &DPoPChecker{
		clk:     clk,
		algs:    map[string]bool{},
		maxAge:  opts.MaxAge,
		leeway:  opts.Leeway,
		require: opts.RequireNonce,
		keys:    map[[sha256.Size]byte]*proofKey{},
	}
	for _, a := range algs {
		if jwks.IsSupported(a) {
			c.algs[a] = true
		}
	}
	if c.maxAge <= 0 {
		c.maxAge = DefaultMaxAge
	}
	switch {
	case c.leeway == 0:
		c.leeway = DefaultLeeway
	case c.leeway < 0:
		c.leeway = 0
	}
	size := opts.ReplayCacheSize
	if size <= 0 {
		size = DefaultReplayCacheSize
	}
	c.replay = newReplayCache(size)
	lifetime := opts.NonceLifetime
	if lifetime <= 0 {
		lifetime = DefaultNonceLifetime
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key) // never fails (crypto/rand.Read crashes the program instead)
	c.nonces = &nonces{key: key, lifetime: lifetime}
	return c
}

// Check validates one DPoP proof header value for a request per RFC 9449
// section 4.3. The caller passes the single DPoP header value (it must
// itself reject requests with zero or several DPoP headers, step 1), the
// request method, the request URL as the client addressed it (absolute:
// Scheme and Host set; its query and fragment are ignored), the access token
// when the proof accompanies one (else "") and the token's cnf.jkt when it
// is bound (else "").
//
// Check requires, in this order (the Error Reason in brackets):
//   - at most MaxProofBytes, three non-empty parts of canonical unpadded
//     base64url, JSON objects without duplicate members
//     (jwks.CheckNoDuplicateMembers) [malformed];
//   - typ "dpop+jwt" (case-insensitive, optionally "application/dpop+jwt")
//     [typ];
//   - an allowed asymmetric alg, never "none" or HS* [alg]; no "crit" or
//     "b64" header [malformed];
//   - a "jwk" header holding a public key only, of the type alg needs, with
//     canonical parameters [jwk]; other key references (kid, x5c, jku, x5u)
//     are ignored and never fetched;
//   - a valid signature with that key [signature];
//   - string "jti" (at most 256 bytes), "htm", "htu" and a numeric "iat",
//     and a string "ath" when accessToken != "" [claims, ath];
//   - htm == method, exactly [htm];
//   - htu equal to the request URL after RFC 3986 section 6 normalisation
//     (scheme and host lowercased, default port removed, percent-encoding
//     and dot segments normalised, empty path as "/"); an htu with a query
//     or fragment is refused, see normaliseHTU [htu];
//   - with RequireNonce, "nonce" equal to a current server nonce [nonce,
//     with UseNonce set and a fresh Nonce];
//   - now - MaxAge - Leeway <= iat <= now + Leeway [iat];
//   - ath == base64url(SHA-256(accessToken)) when accessToken != "" [ath];
//   - the proof key's thumbprint == jkt when jkt != "" [jkt];
//   - jti not seen before with the same key within the window [replay].
//     Only proofs that passed every other check are remembered.
//
// Errors are *Error values and never contain the proof, the token or key
// material.
func (c *DPoPChecker) Check(proof, method string, u *url.URL, accessToken, jkt string) (*Proof, error) {
	if len(proof) > MaxProofBytes {
		return nil, &Error{Reason: ReasonMalformed, Detail: "proof is larger than " + strconv.Itoa(MaxProofBytes) + " bytes"}
	}
	hSeg, rest, ok1 := strings.Cut(proof, ".")
	pSeg, sSeg, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || hSeg == "" || pSeg == "" || sSeg == "" || strings.Contains(sSeg, ".") {
		return nil, &Error{Reason: ReasonMalformed, Detail: "not a compact JWS with three non-empty parts"}
	}
	payload, ok := b64(pSeg)
	if !ok {
		return nil, &Error{Reason: ReasonMalformed, Detail: "payload is not canonical unpadded base64url"}
	}
	sig, ok := b64(sSeg)
	if !ok {
		return nil, &Error{Reason: ReasonMalformed, Detail: "signature is not canonical unpadded base64url"}
	}

	key, kerr := c.header(hSeg)
	if kerr != nil {
		return nil, kerr
	}
	if !key.verify([]byte(proof[:len(hSeg)+1+len(pSeg)]), sig) {
		return nil, &Error{Reason: ReasonSignature, Detail: "signature does not verify with the proof's jwk"}
	}

	claims, err := object(payload)
	if err != nil {
		return nil, &Error{Reason: ReasonMalformed, Detail: "payload: " + err.Error()}
	}
	p := &Proof{JKT: key.jkt}
	if p.JTI, err = requiredString(claims, "jti"); err != nil {
		return nil, err
	}
	if len(p.JTI) > maxJTILen {
		return nil, &Error{Reason: ReasonClaims, Detail: `"jti" is longer than ` + strconv.Itoa(maxJTILen) + " bytes"}
	}
	if p.HTM, err = requiredString(claims, "htm"); err != nil {
		return nil, err
	}
	if p.HTU, err = requiredString(claims, "htu"); err != nil {
		return nil, err
	}
	if p.IAT, err = numericDate(claims, "iat"); err != nil {
		return nil, err
	}
	var ath string
	if accessToken != "" {
		var present bool
		if ath, present, err = str(claims, "ath"); err != nil {
			return nil, &Error{Reason: ReasonATH, Detail: err.Error()}
		} else if !present {
			return nil, &Error{Reason: ReasonATH, Detail: `missing "ath" claim for a proof presented with an access token`}
		}
	}

	if p.HTM != method {
		return nil, &Error{Reason: ReasonHTM, Detail: "htm does not match the request method"}
	}
	want, err := normaliseRequestURL(u)
	if err != nil {
		return nil, &Error{Reason: ReasonHTU, Detail: "request " + err.Error()}
	}
	got, err := normaliseHTU(p.HTU)
	if err != nil {
		return nil, &Error{Reason: ReasonHTU, Detail: err.Error()}
	}
	if got != want {
		return nil, &Error{Reason: ReasonHTU, Detail: "htu does not match the request URL"}
	}

	now := c.clk.Now()
	if c.require {
		nonce, present, err := str(claims, "nonce")
		switch {
		case err != nil || !present:
			return nil, c.nonceError(`missing "nonce" claim; a server nonce is required`, now)
		case len(nonce) > maxNonceLen || !c.nonces.valid(nonce, now):
			return nil, c.nonceError("nonce is not a current server nonce", now)
		}
	}

	iat := time.Unix(p.IAT, 0)
	if iat.Before(now.Add(-(c.maxAge + c.leeway))) {
		return nil, &Error{Reason: ReasonIAT, Detail: "proof is too old (iat before the accepted window)"}
	}
	if iat.After(now.Add(c.leeway)) {
		return nil, &Error{Reason: ReasonIAT, Detail: "proof is issued in the future (iat beyond the allowed clock skew)"}
	}

	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		var buf [43]byte
		base64.RawURLEncoding.Encode(buf[:], sum[:])
		if subtle.ConstantTimeCompare([]byte(ath), buf[:]) != 1 {
			return nil, &Error{Reason: ReasonATH, Detail: "ath does not match the access token"}
		}
	}
	if jkt != "" && subtle.ConstantTimeCompare([]byte(jkt), []byte(key.jkt)) != 1 {
		return nil, &Error{Reason: ReasonJKT, Detail: "proof key does not match the key the access token is bound to (cnf.jkt)"}
	}

	exp := iat.Add(c.maxAge + c.leeway).UnixNano()
	fresh, overflow := c.replay.check(newReplayKey(key.jkt, p.JTI), exp, now.UnixNano())
	if !fresh {
		if overflow {
			return nil, &Error{Reason: ReasonReplay, Detail: "replay cache is full; the proof is too old to be checked for replay"}
		}
		return nil, &Error{Reason: ReasonReplay, Detail: "jti has already been used"}
	}
	return p, nil
}

// Nonce returns the current server nonce to send in a DPoP-Nonce header. It
// rotates every NonceLifetime; the previous one stays valid for one more
// lifetime. Nonces are an HMAC of a time counter under a random per-checker
// key, so no state is kept per client, and nonces of one checker are not
// accepted by another.
func (c *DPoPChecker) Nonce() string {
	return c.nonces.at(c.clk.Now()).cur
}

func (c *DPoPChecker) nonceError(detail string, now time.Time) *Error {
	return &Error{Reason: ReasonNonce, Detail: detail, UseNonce: true, Nonce: c.nonces.at(now).cur}
}

// header returns the validated key of a JOSE header segment, from the
// cache when this header was validated before.
func (c *DPoPChecker) header(seg string) (*proofKey, *Error) {
	id := sha256.Sum256([]byte(seg))
	if !c.noCache {
		c.keysMu.RLock()
		k := c.keys[id]
		c.keysMu.RUnlock()
		if k != nil {
			return k, nil
		}
	}
	data, ok := b64(seg)
	if !ok {
		return nil, &Error{Reason: ReasonMalformed, Detail: "JOSE header is not canonical unpadded base64url"}
	}
	k, err := parseHeader(data, func(alg string) bool { return c.algs[alg] })
	if err != nil {
		return nil, err
	}
	if !c.noCache {
		c.keysMu.Lock()
		if len(c.keys) >= keyCacheSize {
			for old := range c.keys { // evict an arbitrary entry
				delete(c.keys, old)
				break
			}
		}
		c.keys[id] = k
		c.keysMu.Unlock()
	}
	return k, nil
}

// requiredString returns a required, non-empty string claim.
func requiredString(claims map[string]json.RawMessage, name string) (string, error) {
	s, ok, err := str(claims, name)
	switch {
	case err != nil:
		return "", &Error{Reason: ReasonClaims, Detail: err.Error()}
	case !ok:
		return "", &Error{Reason: ReasonClaims, Detail: "missing " + strconv.Quote(name) + " claim"}
	case s == "":
		return "", &Error{Reason: ReasonClaims, Detail: "empty " + strconv.Quote(name) + " claim"}
	}
	return s, nil
}

// numericDate returns a required NumericDate claim (RFC 7519 section 2),
// in whole seconds (fractions are truncated toward the past).
func numericDate(claims map[string]json.RawMessage, name string) (int64, error) {
	raw, ok := claims[name]
	if !ok {
		return 0, &Error{Reason: ReasonClaims, Detail: "missing " + strconv.Quote(name) + " claim"}
	}
	bad := &Error{Reason: ReasonClaims, Detail: strconv.Quote(name) + " must be a number of seconds since the epoch"}
	var n json.Number
	if k := kind(raw); !(k == '-' || k >= '0' && k <= '9') || json.Unmarshal(raw, &n) != nil {
		return 0, bad
	}
	if v, err := n.Int64(); err == nil {
		return v, nil
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < -(1<<53) || f > 1<<53 {
		return 0, bad
	}
	return int64(math.Floor(f)), nil
}
