// Package policy compiles the verifier's view of a TokenPolicy (bundle.Policy) into the
// decisions the sidecar takes per request: which route rule applies to a method and path,
// which scopes it requires, where a token may be presented, which headers the sidecar
// owns (sets and strips) and which claims it forwards. It is pure logic: no I/O, no clock.
package policy

import (
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"

	"github.com/keyward-dev/keyward/internal/bundle"
)

// Binding modes (bundle.Binding.Mode).
const (
	BindingNone = "None"
	BindingDPoP = "DPoP"
	BindingMTLS = "MTLS"
)

// Token source types (bundle.TokenSource.Type).
const (
	SourceAuthorizationHeader = "AuthorizationHeader"
	SourceCookie              = "Cookie"
)

// Identity headers the sidecar sets for the application. Every inbound header whose name
// starts with IdentityHeaderPrefix is stripped, whether or not the sidecar sets it.
const (
	IdentityHeaderPrefix = "X-Keyward-"
	HeaderSubject        = "X-Keyward-Subject"
	HeaderScopes         = "X-Keyward-Scopes"
	HeaderClientID       = "X-Keyward-Client-Id"
	HeaderSessionID      = "X-Keyward-Session-Id"
)

// Route is a compiled route rule.
type Route struct {
	// Pattern is the rule's path as written in the policy ("/v1/items/*" or "/healthz").
	Pattern string
	// Methods the rule applies to; empty means every method.
	Methods []string
	// Scopes the token must carry, all of them.
	Scopes []string
	// Anonymous routes are passed without authentication.
	Anonymous bool

	prefix string // "/v1/items/" for "/v1/items/*"; "" for an exact rule
}

// Matches reports whether the rule applies to method and cleanPath.
func (r *Route) Matches(method, cleanPath string) bool {
	if len(r.Methods) > 0 && !slices.Contains(r.Methods, method) {
		return false
	}
	if r.prefix != "" {
		return strings.HasPrefix(cleanPath, r.prefix)
	}
	return cleanPath == r.Pattern
}

// defaultRoute applies when no rule matches: a valid token is required, no scope is.
// Its Pattern is empty.
var defaultRoute = &Route{}

// ForwardedClaim forwards the claim Claim in the header Header (canonical form).
type ForwardedClaim struct {
	Claim, Header string
}

// Policy is a compiled bundle.Policy. It is immutable.
type Policy struct {
	// Issuer, Audiences, Algorithms, Leeway and Type feed verify.Options.
	Source bundle.Policy

	Routes []*Route

	// AuthorizationHeader is true when tokens may come in the Authorization header.
	AuthorizationHeader bool
	// Cookies are the names of cookies that may hold the token, in policy order.
	Cookies []string

	// Binding is the proof-of-possession mode (BindingNone, BindingDPoP, BindingMTLS)
	// and whether unbound tokens are refused.
	BindingMode     string
	BindingRequired bool

	ForwardClaims []ForwardedClaim
	// ForwardToken keeps Authorization, DPoP and the token cookies for the application.
	ForwardToken bool

	// owned are the canonical names of the non-X-Keyward headers the sidecar sets (the
	// forwarded-claim headers); inbound copies are stripped.
	owned map[string]struct{}
}

// reservedHeaders may not carry a forwarded claim: they are hop-by-hop, framing,
// routing, or credentials the sidecar itself reads or strips.
var reservedHeaders = []string{
	"Authorization", "Proxy-Authorization", "Dpop", "Cookie", "Set-Cookie", "Host",
	"Content-Length", "Content-Type", "Content-Encoding", "Transfer-Encoding", "Connection",
	"Keep-Alive", "Upgrade", "Te", "Trailer", "Proxy-Connection", "Forwarded",
	"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Expect",
}

// Compile checks p (beyond what bundle.Decode checks) and compiles it. An error means the
// bundle must be refused.
func Compile(p bundle.Policy) (*Policy, error) {
	out := &Policy{
		Source:          p,
		BindingMode:     p.Binding.Mode,
		BindingRequired: p.Binding.Required,
		ForwardToken:    p.ForwardToken,
		owned:           map[string]struct{}{},
	}
	switch p.Binding.Mode {
	case BindingNone, BindingDPoP, BindingMTLS:
	default:
		return nil, fmt.Errorf("binding mode %q is not supported", p.Binding.Mode)
	}
	for i, r := range p.Routes {
		cr, err := compileRoute(r)
		if err != nil {
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		out.Routes = append(out.Routes, cr)
	}
	for i, s := range p.TokenSources {
		switch s.Type {
		case SourceAuthorizationHeader:
			out.AuthorizationHeader = true
		case SourceCookie:
			if !validToken(s.Name) {
				return nil, fmt.Errorf("tokenSources[%d]: cookie name %q is not a valid cookie name", i, s.Name)
			}
			if !slices.Contains(out.Cookies, s.Name) {
				out.Cookies = append(out.Cookies, s.Name)
			}
		default:
			return nil, fmt.Errorf("tokenSources[%d]: type %q is not supported", i, s.Type)
		}
	}
	if !out.AuthorizationHeader && len(out.Cookies) == 0 {
		return nil, errors.New("no token source")
	}
	for i, c := range p.ForwardClaims {
		if c.Claim == "" {
			return nil, fmt.Errorf("forwardClaims[%d]: empty claim", i)
		}
		if !validToken(c.Header) {
			return nil, fmt.Errorf("forwardClaims[%d]: %q is not a valid header name", i, c.Header)
		}
		h := http.CanonicalHeaderKey(c.Header)
		if slices.Contains(reservedHeaders, h) {
			return nil, fmt.Errorf("forwardClaims[%d]: header %q is reserved", i, h)
		}
		if isIdentityHeader(h) {
			return nil, fmt.Errorf("forwardClaims[%d]: header %q is in the %s namespace the sidecar owns", i, h, IdentityHeaderPrefix)
		}
		if _, dup := out.owned[h]; dup {
			return nil, fmt.Errorf("forwardClaims[%d]: header %q is used twice", i, h)
		}
		out.owned[h] = struct{}{}
		out.ForwardClaims = append(out.ForwardClaims, ForwardedClaim{Claim: c.Claim, Header: h})
	}
	return out, nil
}

func compileRoute(r bundle.Route) (*Route, error) {
	if !strings.HasPrefix(r.Path, "/") {
		return nil, fmt.Errorf("path %q does not start with /", r.Path)
	}
	if r.Anonymous && len(r.Scopes) > 0 {
		return nil, fmt.Errorf("anonymous route %q requires scopes", r.Path)
	}
	cr := &Route{Pattern: r.Path, Anonymous: r.Anonymous}
	base := r.Path
	if strings.HasSuffix(r.Path, "/*") {
		base = strings.TrimSuffix(r.Path, "*")
		cr.prefix = base
	}
	if strings.Contains(base, "*") {
		return nil, fmt.Errorf("path %q: '*' is only allowed as a final /* segment", r.Path)
	}
	if Clean(base) != base {
		return nil, fmt.Errorf("path %q is not in canonical form", r.Path)
	}
	for _, m := range r.Methods {
		if !validToken(m) || strings.ToUpper(m) != m {
			return nil, fmt.Errorf("method %q is not an upper-case HTTP method", m)
		}
		cr.Methods = append(cr.Methods, m)
	}
	for _, s := range r.Scopes {
		if s == "" || strings.ContainsAny(s, " \"\\") || !printableASCII(s) {
			return nil, fmt.Errorf("scope %q is not a valid scope token", s)
		}
		cr.Scopes = append(cr.Scopes, s)
	}
	return cr, nil
}

// Match returns the first rule that applies to method and cleanPath (see Clean), or,
// when none does, the default rule (empty Pattern): a valid token, no scope.
func (p *Policy) Match(method, cleanPath string) *Route {
	for _, r := range p.Routes {
		if r.Matches(method, cleanPath) {
			return r
		}
	}
	return defaultRoute
}

// Owns reports whether the sidecar owns the header (canonical name): every X-Keyward-*
// header and every forwarded-claim header. Inbound copies of owned headers are stripped.
func (p *Policy) Owns(canonical string) bool {
	if isIdentityHeader(canonical) {
		return true
	}
	if p == nil {
		return false
	}
	_, ok := p.owned[canonical]
	return ok
}

// IsTokenCookie reports whether name is a cookie the policy reads tokens from.
func (p *Policy) IsTokenCookie(name string) bool {
	return slices.Contains(p.Cookies, name)
}

// MissingScopes returns the scopes of required that have does not contain, in the order
// of required; nil when every required scope is present.
func MissingScopes(required, have []string) []string {
	var missing []string
	for _, s := range required {
		if !slices.Contains(have, s) {
			missing = append(missing, s)
		}
	}
	return missing
}

// Clean returns the canonical form of an URL path: path.Clean, keeping a trailing slash.
// The sidecar matches routes against the canonical form and refuses requests whose path
// is not canonical, so that the rule it applies is the path the application sees.
func Clean(p string) string {
	if p == "" {
		return "/"
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// IsCanonical reports whether p is an absolute path already in canonical form (no empty,
// "." or ".." segments).
func IsCanonical(p string) bool {
	return strings.HasPrefix(p, "/") && Clean(p) == p
}

func isIdentityHeader(canonical string) bool {
	return len(canonical) >= len(IdentityHeaderPrefix) &&
		strings.EqualFold(canonical[:len(IdentityHeaderPrefix)], IdentityHeaderPrefix)
}

// validToken reports whether s is a non-empty RFC 9110 token (header names, cookie names,
// methods).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
