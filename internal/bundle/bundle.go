// Package bundle is the verifier bundle: one document per TokenPolicy holding the policy,
// the public keys it trusts and the revocations in its scope, written by the operator into
// a ConfigMap and read by the verifier sidecar and the token service as one atomic unit.
//
// The wire format is documented in docs/bundle-format.md. In short:
//
//	{"format":"keyward.dev/bundle/v1","generation":7,"hash":"sha256:<hex>","content":{...}}
//
// where hash is the SHA-256 of the exact bytes of the "content" member value, so any
// reader can check integrity without canonicalising JSON. Decode fails closed: a
// document that is not exactly right is refused as a whole.
package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/keyward-dev/keyward/internal/jwks"
)

const (
	// Format identifies version 1 of the bundle document.
	Format = "keyward.dev/bundle/v1"
	// DataKey is the ConfigMap data key that holds the bundle document.
	DataKey = "bundle.json"
	// MaxBytes is the largest bundle the operator writes: the ConfigMap limit is 1 MiB
	// for the whole object, and this leaves room for metadata. Decode refuses more.
	MaxBytes = 900 << 10
)

// Bundle is a decoded bundle document.
type Bundle struct {
	// Generation increases by one each time the content of the policy's bundle changes.
	Generation int64
	// Hash is "sha256:<hex>" of the content bytes.
	Hash string
	// Content is the policy, keys and revocations.
	Content Content
	// Keys are the parsed public keys of Content.JWKS, in document order.
	Keys []jwk.Key
}

// Content is the hashed part of a bundle.
type Content struct {
	Policy      Policy          `json:"policy"`
	JWKS        json.RawMessage `json:"jwks"`
	Revocations Revocations     `json:"revocations"`
}

// Policy is the verifier's view of a TokenPolicy, with every default applied.
type Policy struct {
	Namespace             string        `json:"namespace"`
	Name                  string        `json:"name"`
	Issuer                string        `json:"issuer"`
	Audiences             []string      `json:"audiences"`
	Algorithms            []string      `json:"algorithms"`
	LeewaySeconds         int64         `json:"leewaySeconds"`
	AccessTokenType       string        `json:"accessTokenType"`
	AccessTokenTTLSeconds int64         `json:"accessTokenTTLSeconds"`
	SigningKeyID          string        `json:"signingKeyID,omitempty"`
	Binding               Binding       `json:"binding"`
	Routes                []Route       `json:"routes,omitempty"`
	ForwardClaims         []ClaimHeader `json:"forwardClaims,omitempty"`
	TokenSources          []TokenSource `json:"tokenSources"`
	ForwardToken          bool          `json:"forwardToken,omitempty"`
}

// Binding is the proof-of-possession requirement.
type Binding struct {
	Mode     string `json:"mode"` // None, DPoP, MTLS
	Required bool   `json:"required,omitempty"`
}

// Route maps a path and methods to required scopes.
type Route struct {
	Path      string   `json:"path"`
	Methods   []string `json:"methods,omitempty"`
	Scopes    []string `json:"scopes,omitempty"`
	Anonymous bool     `json:"anonymous,omitempty"`
}

// ClaimHeader forwards a claim as a header.
type ClaimHeader struct {
	Claim  string `json:"claim"`
	Header string `json:"header"`
}

// TokenSource is where a token may be presented.
type TokenSource struct {
	Type string `json:"type"` // AuthorizationHeader, Cookie
	Name string `json:"name,omitempty"`
}

// Revocations lists revoked token attributes by claim.
type Revocations struct {
	JTI      []Revoked `json:"jti,omitempty"`
	Subject  []Revoked `json:"sub,omitempty"`
	Session  []Revoked `json:"sid,omitempty"`
	KeyID    []Revoked `json:"kid,omitempty"`
	ClientID []Revoked `json:"client_id,omitempty"`
}

// Revoked is one revoked value.
type Revoked struct {
	// Value is the claim value (jti, sub, sid, kid or client_id).
	Value string `json:"v"`
	// IssuedBefore (unix seconds), for sub and client_id: tokens with iat before it are
	// revoked. 0 means every token with the value.
	IssuedBefore int64 `json:"b,omitempty"`
	// Expires (unix seconds) is when every token the entry can match has expired.
	Expires int64 `json:"x"`
}

// Len is the number of revoked values.
func (r *Revocations) Len() int {
	return len(r.JTI) + len(r.Subject) + len(r.Session) + len(r.KeyID) + len(r.ClientID)
}

// Normalize sorts every list and merges duplicate values (keeping the widest
// IssuedBefore and the latest Expires), so equal sets encode to equal bytes.
func (r *Revocations) Normalize() {
	for _, l := range []*[]Revoked{&r.JTI, &r.Subject, &r.Session, &r.KeyID, &r.ClientID} {
		*l = normalize(*l)
	}
}

func normalize(l []Revoked) []Revoked {
	if len(l) == 0 {
		return nil
	}
	slices.SortFunc(l, func(a, b Revoked) int { return strings.Compare(a.Value, b.Value) })
	out := l[:1]
	for _, e := range l[1:] {
		last := &out[len(out)-1]
		if e.Value != last.Value {
			out = append(out, e)
			continue
		}
		if last.IssuedBefore != 0 && (e.IssuedBefore == 0 || e.IssuedBefore > last.IssuedBefore) {
			last.IssuedBefore = e.IssuedBefore
		}
		last.Expires = max(last.Expires, e.Expires)
	}
	return out
}

type envelope struct {
	Format     string          `json:"format"`
	Generation int64           `json:"generation"`
	Hash       string          `json:"hash"`
	Content    json.RawMessage `json:"content"`
}

// EncodeContent renders the content and returns its bytes and hash. The JWKS member is
// kept byte for byte (it must already be compact, as jwks.PublicSetJSON renders it).
func EncodeContent(c Content) ([]byte, string, error) {
	c.Revocations.Normalize()
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, "", fmt.Errorf("encoding bundle content: %w", err)
	}
	sum := sha256.Sum256(raw)
	return raw, "sha256:" + hex.EncodeToString(sum[:]), nil
}

// Encode wraps rendered content (from EncodeContent) into a bundle document.
func Encode(generation int64, content []byte, hash string) ([]byte, error) {
	if generation < 1 {
		return nil, errors.New("bundle generation must be at least 1")
	}
	return json.Marshal(envelope{Format: Format, Generation: generation, Hash: hash, Content: content})
}

// Decode parses and checks a bundle document. It fails closed: wrong format, size,
// duplicate or unknown members, a hash mismatch, an invalid policy or key set, or a
// malformed revocation makes the whole bundle invalid.
func Decode(data []byte) (*Bundle, error) {
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("bundle is %d bytes, more than the %d allowed", len(data), MaxBytes)
	}
	if err := jwks.CheckNoDuplicateMembers(data); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	var env envelope
	if err := strictUnmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if env.Format != Format {
		return nil, fmt.Errorf("bundle format %q is not %q", env.Format, Format)
	}
	if env.Generation < 1 {
		return nil, fmt.Errorf("bundle generation %d is not positive", env.Generation)
	}
	if len(env.Content) == 0 {
		return nil, errors.New("bundle has no content")
	}
	sum := sha256.Sum256(env.Content)
	if want := "sha256:" + hex.EncodeToString(sum[:]); env.Hash != want {
		return nil, errors.New("bundle hash does not match its content")
	}
	b := &Bundle{Generation: env.Generation, Hash: env.Hash}
	if err := strictUnmarshal(env.Content, &b.Content); err != nil {
		return nil, fmt.Errorf("bundle content: %w", err)
	}
	if err := b.Content.Policy.validate(); err != nil {
		return nil, fmt.Errorf("bundle policy: %w", err)
	}
	keys, err := jwks.ParseSet(b.Content.JWKS, false)
	if err != nil {
		return nil, fmt.Errorf("bundle jwks: %w", err)
	}
	b.Keys = keys
	if err := b.Content.Revocations.validate(); err != nil {
		return nil, fmt.Errorf("bundle revocations: %w", err)
	}
	return b, nil
}

func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON document")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err == nil {
		return errors.New("trailing data after the JSON document")
	}
	return nil
}

var (
	validModes   = []string{"None", "DPoP", "MTLS"}
	validSources = []string{"AuthorizationHeader", "Cookie"}
	validTypes   = []string{"at+jwt", "JWT"}
)

func (p *Policy) validate() error {
	switch {
	case p.Issuer == "":
		return errors.New("issuer is empty")
	case len(p.Audiences) == 0 || slices.Contains(p.Audiences, ""):
		return errors.New("audiences are missing or empty")
	case len(p.Algorithms) == 0:
		return errors.New("no algorithm is allowed")
	case p.LeewaySeconds < 0 || p.LeewaySeconds > 300:
		return fmt.Errorf("leewaySeconds %d is outside 0..300", p.LeewaySeconds)
	case !slices.Contains(validTypes, p.AccessTokenType):
		return fmt.Errorf("accessTokenType %q is not one of %v", p.AccessTokenType, validTypes)
	case p.AccessTokenTTLSeconds <= 0:
		return errors.New("accessTokenTTLSeconds is not positive")
	case !slices.Contains(validModes, p.Binding.Mode):
		return fmt.Errorf("binding mode %q is not one of %v", p.Binding.Mode, validModes)
	case p.Binding.Required && p.Binding.Mode == "None":
		return errors.New("binding is required but mode is None")
	case len(p.TokenSources) == 0:
		return errors.New("no token source")
	}
	for _, a := range p.Algorithms {
		if !slices.Contains([]string{"ES256", "ES384", "EdDSA", "RS256", "PS256"}, a) {
			return fmt.Errorf("algorithm %q is not supported", a)
		}
	}
	for _, s := range p.TokenSources {
		if !slices.Contains(validSources, s.Type) || (s.Type == "Cookie" && s.Name == "") {
			return fmt.Errorf("token source %q/%q is invalid", s.Type, s.Name)
		}
	}
	for _, r := range p.Routes {
		if !strings.HasPrefix(r.Path, "/") {
			return fmt.Errorf("route path %q does not start with /", r.Path)
		}
		if r.Anonymous && len(r.Scopes) > 0 {
			return fmt.Errorf("anonymous route %q requires scopes", r.Path)
		}
	}
	for _, c := range p.ForwardClaims {
		if c.Claim == "" || c.Header == "" {
			return errors.New("forwarded claim with an empty claim or header")
		}
	}
	return nil
}

func (r *Revocations) validate() error {
	for name, l := range map[string][]Revoked{"jti": r.JTI, "sub": r.Subject, "sid": r.Session, "kid": r.KeyID, "client_id": r.ClientID} {
		for _, e := range l {
			if e.Value == "" {
				return fmt.Errorf("%s entry with an empty value", name)
			}
			if e.Expires <= 0 || e.IssuedBefore < 0 {
				return fmt.Errorf("%s entry with invalid times", name)
			}
			if e.IssuedBefore != 0 && name != "sub" && name != "client_id" {
				return fmt.Errorf("%s entry with issuedBefore: only sub and client_id take one", name)
			}
		}
	}
	return nil
}
