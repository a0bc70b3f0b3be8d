// Package binding verifies sender-constrained access tokens: DPoP proofs
// (RFC 9449) and mutual-TLS certificate binding (RFC 8705).
//
// It is pure logic: time comes from an injected k8s.io/utils/clock
// PassiveClock, and nothing here performs I/O. Errors never contain key
// material, tokens or proofs, so they are safe to log.
package binding

import (
	"time"
)

// Proof is a verified DPoP proof.
type Proof struct {
	JKT string // RFC 7638 SHA-256 thumbprint of the proof's public key (base64url, unpadded)
	JTI string // the proof's unique identifier
	IAT int64  // issued-at, seconds since the Unix epoch
	HTM string // HTTP method the proof is bound to
	HTU string // HTTP target URI the proof is bound to, as sent in the proof
}

// DPoPOptions configures a DPoPChecker. Zero values select the defaults.
type DPoPOptions struct {
	// Algorithms lists the accepted proof algorithms; default ES256, ES384,
	// EdDSA, RS256, PS256. Only those five are supported: "none", HS* and
	// anything else are always rejected, even when listed.
	Algorithms []string
	// MaxAge bounds the iat window: |now - iat| <= MaxAge + Leeway is
	// accepted (the future side allows only Leeway, see Check). Default 60s.
	MaxAge time.Duration
	// Leeway tolerates clock skew between client and server; default 5s.
	Leeway time.Duration
	// ReplayCacheSize bounds the jti replay cache (entries); default 100_000.
	ReplayCacheSize int
	// RequireNonce demands a server-provided nonce in every proof
	// (RFC 9449 section 8).
	RequireNonce bool
	// NonceLifetime is how long one server nonce is current; the previous
	// nonce stays accepted for one more lifetime. Default 5m.
	NonceLifetime time.Duration
}

// Defaults for DPoPOptions.
const (
	DefaultMaxAge          = 60 * time.Second
	DefaultLeeway          = 5 * time.Second
	DefaultReplayCacheSize = 100_000
	DefaultNonceLifetime   = 5 * time.Minute
	// MaxProofBytes is the largest DPoP header value Check accepts (8 KiB);
	// larger input is refused before any decoding.
	MaxProofBytes = 8 << 10
)

// Reasons reported in Error.Reason: stable labels for metrics.
const (
	ReasonMalformed = "malformed" // not a compact JWS, bad base64url, bad/duplicate JSON, too large
	ReasonTyp       = "typ"       // typ is not "dpop+jwt"
	ReasonAlg       = "alg"       // alg missing, symmetric, "none" or not allowed
	ReasonJWK       = "jwk"       // jwk missing, private, symmetric, invalid or not matching alg
	ReasonSignature = "signature" // signature does not verify with the embedded jwk
	ReasonHTM       = "htm"       // htm does not match the request method
	ReasonHTU       = "htu"       // htu does not match the request URI
	ReasonIAT       = "iat"       // iat outside the accepted window
	ReasonReplay    = "replay"    // jti already seen
	ReasonATH       = "ath"       // ath missing or not the hash of the access token
	ReasonJKT       = "jkt"       // proof key is not the key the access token is bound to
	ReasonNonce     = "nonce"     // server nonce missing, stale or wrong
	ReasonClaims    = "claims"    // required claim missing or of the wrong type
	ReasonMTLS      = "mtls"      // client certificate missing or not matching cnf x5t#S256
)

// Error is a rejected proof. Reason is a stable label for metrics ("malformed",
// "typ", "alg", "jwk", "signature", "htm", "htu", "iat", "replay", "ath",
// "jkt", "nonce", "claims", and "mtls" for CheckMTLS); Detail is a
// human-readable explanation that never contains key material or tokens.
// UseNonce means the caller should answer with error="use_dpop_nonce" and a
// DPoP-Nonce header carrying Nonce (RFC 9449 section 8).
type Error struct {
	Reason   string
	Detail   string
	UseNonce bool
	Nonce    string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Detail == "" {
		return "binding: " + e.Reason
	}
	return "binding: " + e.Reason + ": " + e.Detail
}
