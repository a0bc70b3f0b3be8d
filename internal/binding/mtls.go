package binding

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
)

// CertThumbprint is the RFC 8705 x5t#S256 of a client certificate:
// base64url(SHA-256(DER)) without padding.
func CertThumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// CheckMTLS reports whether the presented certificate matches the token's cnf
// x5t#S256 (constant-time compare). It returns nil on a match and an *Error
// with Reason "mtls" otherwise (no certificate, empty or mismatching
// thumbprint).
func CheckMTLS(cert *x509.Certificate, x5tS256 string) error {
	if cert == nil || len(cert.Raw) == 0 {
		return &Error{Reason: ReasonMTLS, Detail: "no client certificate presented"}
	}
	if x5tS256 == "" {
		return &Error{Reason: ReasonMTLS, Detail: "token has no cnf x5t#S256"}
	}
	if subtle.ConstantTimeCompare([]byte(CertThumbprint(cert)), []byte(x5tS256)) != 1 {
		return &Error{Reason: ReasonMTLS, Detail: "client certificate does not match the token's cnf x5t#S256"}
	}
	return nil
}
