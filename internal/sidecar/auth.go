package sidecar

import (
	"crypto/x509"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/keyward-dev/keyward/internal/binding"
	"github.com/keyward-dev/keyward/internal/policy"
	"github.com/keyward-dev/keyward/internal/verify"
)

// OAuth error codes used in WWW-Authenticate (RFC 6750 §3.1, RFC 9449 §7.1 and §8).
const (
	ErrInvalidRequest    = "invalid_request"
	ErrInvalidToken      = "invalid_token"
	ErrInsufficientScope = "insufficient_scope"
	ErrInvalidDPoPProof  = "invalid_dpop_proof"
	ErrUseDPoPNonce      = "use_dpop_nonce"
)

// Token presentation schemes of a Decision.
const (
	schemeBearer = "Bearer"
	schemeDPoP   = "DPoP"
	schemeCookie = "Cookie"
)

// Decision is the outcome of authenticating one request.
type Decision struct {
	// Status is 0 when the request may pass, else the HTTP status of the rejection.
	Status int
	// Reason is the stable metric label: why it was rejected, or "ok"/"anonymous".
	Reason string
	// Anonymous is true when an anonymous route let the request pass unauthenticated.
	Anonymous bool
	// Claims of the accepted token (nil for anonymous routes and most rejections).
	Claims *verify.Claims
	// Route is the rule that applied (nil when the path was refused first).
	Route *policy.Route
	// Detail explains a rejection for logs and the check command; it never holds the
	// token or key material, and is never sent to the client.
	Detail string

	token  string // for the audit fingerprint only
	scheme string // how the token was presented: schemeBearer, schemeDPoP, schemeCookie
	// errCode is the OAuth error code for WWW-Authenticate ("" for a bare challenge).
	errCode string
	// dpopChallenge puts the error in the DPoP challenge rather than in the Bearer one.
	dpopChallenge bool
	nonce         string // DPoP-Nonce to send with use_dpop_nonce
}

// DefaultDPoPAlgorithms are the DPoP proof algorithms accepted and advertised in the
// DPoP challenge's algs parameter.
var DefaultDPoPAlgorithms = []string{"ES256", "ES384", "EdDSA", "RS256", "PS256"}

// Authenticator takes the per-request decision against a State. It holds what outlives a
// bundle: the DPoP checker (its replay cache and nonces must survive bundle swaps).
type Authenticator struct {
	// DPoP checks proofs; required when a policy's binding mode is DPoP (without it, DPoP
	// requests are rejected with reason "dpop_unavailable").
	DPoP *binding.DPoPChecker
	// DPoPAlgorithms are advertised in the DPoP challenge; default DefaultDPoPAlgorithms.
	DPoPAlgorithms []string
	// PublicURL is the scheme, host and optional path prefix clients use to reach the
	// service; the DPoP htu is PublicURL + the request path. When nil, the htu is built
	// from the request: https when it came over TLS, else http, its Host and path.
	PublicURL *url.URL
	// SkipRoutes disables route rules (the offline check without a URL).
	SkipRoutes bool
}

func reject(status int, reason, errCode string) Decision {
	return Decision{Status: status, Reason: reason, errCode: errCode}
}

// Authenticate decides whether r may pass under st.
func (a *Authenticator) Authenticate(st *State, r *http.Request) Decision {
	pol := st.Policy
	route := pol.Match(r.Method, r.URL.Path)
	if !a.SkipRoutes {
		if !policy.IsCanonical(r.URL.Path) {
			// Dot segments and empty segments could make the rule matched here differ from
			// the resource the application serves.
			return reject(http.StatusBadRequest, "path", ErrInvalidRequest)
		}
		if route.Anonymous {
			return Decision{Reason: "anonymous", Anonymous: true, Route: route}
		}
	}
	d := a.authenticate(st, r, route)
	d.Route = route
	if d.Status != 0 && pol.BindingMode == policy.BindingDPoP &&
		(d.scheme == schemeDPoP || pol.BindingRequired) {
		d.dpopChallenge = true
	}
	return d
}

func (a *Authenticator) authenticate(st *State, r *http.Request, route *policy.Route) Decision {
	pol := st.Policy
	token, scheme, d := extractToken(pol, r)
	if d != nil {
		return *d
	}
	claims, err := st.Verifier.Verify(token)
	if err != nil {
		reason, detail := "invalid", ""
		var ve *verify.Error
		if errors.As(err, &ve) {
			reason, detail = ve.Reason, ve.Detail
		}
		return Decision{Status: http.StatusUnauthorized, Reason: reason, Detail: detail, errCode: ErrInvalidToken, token: token, scheme: scheme}
	}
	fail := func(status int, reason, code string) Decision {
		return Decision{Status: status, Reason: reason, errCode: code, Claims: claims, token: token, scheme: scheme}
	}
	var jkt, x5t string
	if claims.Cnf != nil {
		jkt, x5t = claims.Cnf.JKT, claims.Cnf.X5TS256
	}
	switch pol.BindingMode {
	case policy.BindingDPoP:
		if x5t != "" {
			return fail(http.StatusUnauthorized, "binding_unsupported", ErrInvalidToken)
		}
		if scheme != schemeDPoP {
			if jkt != "" {
				// RFC 9449 §7.2: a DPoP-bound token presented as a bearer token.
				return fail(http.StatusUnauthorized, "dpop_downgrade", ErrInvalidToken)
			}
			if pol.BindingRequired {
				return fail(http.StatusUnauthorized, "unbound", ErrInvalidToken)
			}
			break
		}
		if jkt == "" {
			return fail(http.StatusUnauthorized, "dpop_unbound", ErrInvalidToken)
		}
		proofs := r.Header.Values("DPoP")
		switch {
		case len(proofs) == 0:
			return fail(http.StatusUnauthorized, "dpop_missing", ErrInvalidDPoPProof)
		case len(proofs) > 1:
			return fail(http.StatusBadRequest, "dpop_multiple", ErrInvalidRequest)
		case a.DPoP == nil:
			return fail(http.StatusUnauthorized, "dpop_unavailable", ErrInvalidDPoPProof)
		}
		if _, err := a.DPoP.Check(proofs[0], r.Method, a.htu(r), token, jkt); err != nil {
			var be *binding.Error
			if !errors.As(err, &be) {
				return fail(http.StatusUnauthorized, "dpop_invalid", ErrInvalidDPoPProof)
			}
			if be.UseNonce {
				d := fail(http.StatusUnauthorized, "dpop_nonce", ErrUseDPoPNonce)
				d.nonce, d.Detail = be.Nonce, be.Detail
				return d
			}
			d := fail(http.StatusUnauthorized, "dpop_"+be.Reason, ErrInvalidDPoPProof)
			d.Detail = be.Detail
			return d
		}
	case policy.BindingMTLS:
		if jkt != "" {
			return fail(http.StatusUnauthorized, "binding_unsupported", ErrInvalidToken)
		}
		if x5t == "" {
			if pol.BindingRequired {
				return fail(http.StatusUnauthorized, "unbound", ErrInvalidToken)
			}
			break
		}
		var cert *x509.Certificate
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			cert = r.TLS.PeerCertificates[0]
		}
		if err := binding.CheckMTLS(cert, x5t); err != nil {
			d := fail(http.StatusUnauthorized, "mtls", ErrInvalidToken)
			d.Detail = err.Error()
			return d
		}
	default:
		// A sender-constrained token whose binding this policy cannot check is not
		// downgraded to a bearer token.
		if jkt != "" || x5t != "" {
			return fail(http.StatusUnauthorized, "binding_unsupported", ErrInvalidToken)
		}
	}
	if !a.SkipRoutes && len(policy.MissingScopes(route.Scopes, claims.Scopes)) > 0 {
		return fail(http.StatusForbidden, "insufficient_scope", ErrInsufficientScope)
	}
	return Decision{Reason: "ok", Claims: claims, token: token, scheme: scheme}
}

// extractToken finds the one token of the request in the policy's sources.
func extractToken(pol *policy.Policy, r *http.Request) (token, scheme string, d *Decision) {
	n := 0
	if pol.AuthorizationHeader {
		vals := r.Header.Values("Authorization")
		if len(vals) > 1 {
			return "", "", ptr(reject(http.StatusBadRequest, "multiple_authorization", ErrInvalidRequest))
		}
		if len(vals) == 1 {
			s, cred, _ := strings.Cut(vals[0], " ")
			switch {
			case strings.EqualFold(s, "Bearer"):
				scheme = schemeBearer
			case strings.EqualFold(s, "DPoP") && pol.BindingMode == policy.BindingDPoP:
				scheme = schemeDPoP
			}
			// Other schemes (Basic, ...) are not tokens of this policy.
			if scheme != "" {
				cred = strings.TrimLeft(cred, " ")
				if !isToken68(cred) {
					return "", "", ptr(reject(http.StatusBadRequest, "malformed_authorization", ErrInvalidRequest))
				}
				token = cred
				n++
			}
		}
	}
	for _, name := range pol.Cookies {
		for _, c := range r.CookiesNamed(name) {
			if c.Value == "" {
				continue
			}
			if n == 0 {
				token, scheme = c.Value, schemeCookie
			}
			n++
		}
	}
	switch {
	case n > 1:
		return "", "", ptr(reject(http.StatusBadRequest, "multiple_tokens", ErrInvalidRequest))
	case n == 0:
		return "", "", ptr(reject(http.StatusUnauthorized, "no_token", ""))
	}
	return token, scheme, nil
}

func ptr[T any](v T) *T { return &v }

// isToken68 reports whether s is an RFC 9110 token68 (the RFC 6750 b64token).
func isToken68(s string) bool {
	if s == "" {
		return false
	}
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/", c) >= 0 {
			continue
		}
		break
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// htu is the URL the DPoP proof's htu must name (RFC 9449 §4.3: without query and
// fragment).
func (a *Authenticator) htu(r *http.Request) *url.URL {
	if a.PublicURL != nil {
		u := *a.PublicURL
		base := strings.TrimSuffix(u.EscapedPath(), "/")
		u.Path = strings.TrimSuffix(u.Path, "/") + r.URL.Path
		u.RawPath = ""
		if r.URL.RawPath != "" {
			u.RawPath = base + r.URL.RawPath
		}
		u.RawQuery, u.Fragment, u.User = "", "", nil
		return &u
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return &url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath}
}

// challenges renders the WWW-Authenticate values of a rejection.
func (a *Authenticator) challenges(pol *policy.Policy, d *Decision) []string {
	var scope string
	if d.errCode == ErrInsufficientScope && d.Route != nil {
		scope = strings.Join(d.Route.Scopes, " ")
	}
	bearer := `Bearer realm="keyward"`
	if pol == nil || pol.BindingMode != policy.BindingDPoP {
		return []string{bearer + params(d.errCode, scope)}
	}
	algs := a.DPoPAlgorithms
	if len(algs) == 0 {
		algs = DefaultDPoPAlgorithms
	}
	dpop := `DPoP algs="` + strings.Join(algs, " ") + `"`
	if d.dpopChallenge {
		dpop += params(d.errCode, scope)
	} else {
		bearer += params(d.errCode, scope)
	}
	if pol.BindingRequired {
		return []string{dpop}
	}
	return []string{bearer, dpop}
}

func params(code, scope string) string {
	if code == "" {
		return ""
	}
	s := `, error="` + code + `"`
	if scope != "" {
		s += `, scope="` + scope + `"`
	}
	return s
}
