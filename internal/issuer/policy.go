/*
Copyright 2026 The Keyward Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package issuer

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/bundle"
	"github.com/keyward-dev/keyward/internal/jwks"
	"github.com/keyward-dev/keyward/internal/mint"
	"github.com/keyward-dev/keyward/internal/policy"
	"github.com/keyward-dev/keyward/internal/revocation"
	"github.com/keyward-dev/keyward/internal/sidecar"
)

// Endpoint paths, relative to the issuer's path.
const (
	pathToken      = "/token"
	pathLogout     = "/token/logout"
	pathRevoke     = "/revoke"
	pathIntrospect = "/introspect"
	pathMint       = "/mint"
	pathJWKS       = "/jwks"
	pathDiscovery  = "/.well-known/openid-configuration"
	// pathASMetadata is RFC 8414's well-known prefix; the issuer's path follows it.
	pathASMetadata = "/.well-known/oauth-authorization-server"
)

// DefaultCookieName is the refresh-token cookie of browser mode when the policy names none.
const DefaultCookieName = "keyward_refresh"

// verifierCacheSize is the verified-token cache of the verifier compiled from a bundle
// (introspection and revocation of access tokens).
const verifierCacheSize = 1024

// policyState is everything compiled for one TokenPolicy with spec.issuance: immutable,
// replaced as a whole when the policy, its keys or its bundle change.
type policyState struct {
	key       string // namespace/name
	namespace string
	name      string
	object    *v1alpha1.TokenPolicy // metadata for Events
	created   time.Time
	issuer    string
	base      *url.URL // the issuer URL; endpoint URLs are base + path
	prefix    string   // the issuer's path without a trailing slash ("" for the root)

	scopes      []string // grantable scopes
	mintClients map[string]bool
	exchange    *exchangeConfig
	cookie      *cookieConfig
	burstLimit  int
	autoRevoke  bool

	refreshTTL    time.Duration
	idleTimeout   time.Duration
	reuseInterval time.Duration

	// From the bundle: what every verifier enforces, so tokens are minted to match it.
	bundle          *sidecar.State
	bundleKIDs      map[string]bool
	audiences       []string
	tokenType       string
	accessTTL       time.Duration
	leeway          time.Duration // the verifiers' clock-skew allowance on exp
	bindingMode     string
	bindingRequired bool

	signer   *mint.Signer
	notReady string // why tokens cannot be issued now; "" when they can
	jwks     []byte // public keys of every trusted SigningKey
}

type exchangeConfig struct {
	namespaces map[string]bool // "ns/*"
	accounts   map[string]bool // "ns/name"
	audience   string          // TokenReview audience ("" = the server default)
	scopes     []string        // granted by default, and the most a request may ask for
}

type cookieConfig struct {
	name string
	path string
}

func (p *policyState) url(path string) string { return p.base.String() + path }

func (p *policyState) endpoint(path string) *url.URL {
	u := *p.base
	u.Path = p.prefix + path
	u.RawPath = ""
	return &u
}

// ready returns an error when the policy cannot issue tokens now.
func (p *policyState) ready() *oauthError {
	if p.bindingMode == policy.BindingMTLS && p.bindingRequired {
		return newError(http.StatusInternalServerError, ErrServerError, "mtls_unsupported",
			"this issuer requires mTLS-bound tokens, which the token service does not issue")
	}
	if p.notReady != "" {
		return unavailable("not_ready", "the token service cannot sign for this issuer yet")
	}
	return nil
}

// allows reports whether sa may exchange its token.
func (e *exchangeConfig) allows(sa ServiceAccount) bool {
	return e.accounts[sa.String()] || e.namespaces[sa.Namespace]
}

// policyInputs are the objects a policy state is compiled from, read from the cache.
type policyInputs struct {
	Policy     *v1alpha1.TokenPolicy
	KeysSecret *corev1.Secret               // <signingKeys[0]>-keys; nil when absent
	JWKS       map[string]*corev1.ConfigMap // by SigningKey name: <sk>-jwks
	Bundle     *corev1.ConfigMap            // <policy>-bundle; nil when absent
}

// compilePolicy builds the state of a policy. prev (may be nil) is the state in force:
// its bundle stays when the offered one is older (never go backwards, docs/bundle-format.md)
// and is reused when the content is the same. The error is for a policy that cannot be
// served at all (an invalid issuer URL); a policy without keys or bundle yet is served
// (discovery, JWKS) with notReady set.
func compilePolicy(in policyInputs, prev *policyState, clk clock.PassiveClock) (*policyState, []string, error) {
	tp := in.Policy
	if tp.Spec.Issuance == nil {
		return nil, nil, errors.New("the policy has no spec.issuance")
	}
	base, prefix, err := parseIssuer(tp.Spec.Issuer)
	if err != nil {
		return nil, nil, err
	}
	iss := tp.Spec.Issuance
	p := &policyState{
		key:       tp.Namespace + "/" + tp.Name,
		namespace: tp.Namespace,
		name:      tp.Name,
		object:    objectRef(tp),
		created:   tp.CreationTimestamp.Time,
		issuer:    tp.Spec.Issuer,
		base:      base,
		prefix:    prefix,
		scopes:    slices.Clone(iss.Scopes),
		mintClients: func() map[string]bool {
			m := map[string]bool{}
			for _, c := range iss.MintClients {
				m[c] = true
			}
			return m
		}(),
		burstLimit:    DefaultMaxRefreshesPerMinute,
		refreshTTL:    durationOr(tp.Spec.RefreshToken.TTL.Duration, 720*time.Hour),
		idleTimeout:   tp.Spec.RefreshToken.IdleTimeout.Duration,
		reuseInterval: tp.Spec.RefreshToken.ReuseInterval.Duration,
	}
	var warnings []string
	if a := iss.Anomaly; a != nil {
		if a.MaxRefreshesPerMinute > 0 {
			p.burstLimit = int(a.MaxRefreshesPerMinute)
		}
		p.autoRevoke = a.AutoRevoke
	}
	if x := iss.TokenExchange; x != nil {
		p.exchange = &exchangeConfig{namespaces: map[string]bool{}, accounts: map[string]bool{}, audience: x.Audience}
		for _, sa := range x.ServiceAccounts {
			if ns, ok := strings.CutSuffix(sa, "/*"); ok {
				p.exchange.namespaces[ns] = true
			} else {
				p.exchange.accounts[sa] = true
			}
		}
		for _, s := range x.Scopes {
			if slices.Contains(p.scopes, s) {
				p.exchange.scopes = append(p.exchange.scopes, s)
			} else {
				warnings = append(warnings, fmt.Sprintf("tokenExchange scope %q is not in issuance.scopes; it is never granted", s))
			}
		}
	}
	if c := iss.Cookie; c != nil {
		name := c.Name
		if name == "" {
			name = DefaultCookieName
		}
		path := prefix + pathToken
		if strings.HasPrefix(name, "__Host-") {
			path = "/" // RFC 6265bis: a __Host- cookie has Path=/ and no Domain
		}
		p.cookie = &cookieConfig{name: name, path: path}
	}

	p.compileBundle(in.Bundle, prev, clk)
	p.compileSigner(in.KeysSecret)
	var jwksWarnings []string
	p.jwks, jwksWarnings = renderJWKS(tp.Spec.SigningKeys, in.JWKS, p.bundle)
	warnings = append(warnings, jwksWarnings...)
	return p, warnings, nil
}

// parseIssuer checks an issuer URL (absolute http(s), no query, fragment or userinfo,
// a canonical path) and returns it and its path without the trailing slash.
func parseIssuer(issuer string) (*url.URL, string, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil, "", fmt.Errorf("spec.issuer is not a URL: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || u.ForceQuery {
		return nil, "", errors.New("spec.issuer must be an absolute http(s) URL without userinfo, query or fragment")
	}
	prefix := strings.TrimSuffix(u.EscapedPath(), "/")
	if prefix != "" && (!policy.IsCanonical(prefix) || strings.Contains(prefix, "%")) {
		return nil, "", errors.New("spec.issuer must have a canonical path (no dot segments, empty segments or escapes)")
	}
	base := &url.URL{Scheme: u.Scheme, Host: u.Host, Path: prefix}
	return base, prefix, nil
}

func durationOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func objectRef(tp *v1alpha1.TokenPolicy) *v1alpha1.TokenPolicy {
	ref := &v1alpha1.TokenPolicy{}
	ref.TypeMeta = tp.TypeMeta
	ref.APIVersion, ref.Kind = v1alpha1.GroupVersion.String(), "TokenPolicy"
	ref.Name, ref.Namespace, ref.UID, ref.ResourceVersion = tp.Name, tp.Namespace, tp.UID, tp.ResourceVersion
	return ref
}

// compileBundle decodes and compiles the bundle the way the verifier sidecar does
// (bundle.Decode, sidecar.Compile), never going backwards.
func (p *policyState) compileBundle(cm *corev1.ConfigMap, prev *policyState, clk clock.PassiveClock) {
	if prev != nil && prev.key == p.key {
		p.bundle, p.bundleKIDs = prev.bundle, prev.bundleKIDs
	}
	if cm != nil {
		if data, ok := cm.Data[bundle.DataKey]; ok {
			p.offerBundle([]byte(data), clk)
		}
	}
	if p.bundle == nil {
		p.notReady = "no valid verifier bundle yet"
		return
	}
	src := p.bundle.Policy.Source
	p.audiences = src.Audiences
	p.tokenType = src.AccessTokenType
	p.accessTTL = time.Duration(src.AccessTokenTTLSeconds) * time.Second
	p.leeway = time.Duration(src.LeewaySeconds) * time.Second
	p.bindingMode = src.Binding.Mode
	p.bindingRequired = src.Binding.Required
	if src.Issuer != p.issuer || src.Namespace != p.namespace || src.Name != p.name {
		p.notReady = "the verifier bundle is for another issuer (an update is propagating)"
	}
}

// offerBundle puts a bundle document in force unless it is invalid or older than the one
// in force (the reader rules of docs/bundle-format.md).
func (p *policyState) offerBundle(data []byte, clk clock.PassiveClock) {
	b, err := bundle.Decode(data)
	if err != nil {
		return
	}
	cur := p.bundle
	switch {
	case cur != nil && b.Hash == cur.Hash:
		return // the same content: keep the compiled state and its cache
	case cur != nil && b.Generation <= cur.Generation:
		return // an older or conflicting copy: keep the bundle in force
	}
	st, err := sidecar.Compile(b, verifierCacheSize, clk)
	if err != nil {
		return
	}
	kids := map[string]bool{}
	for _, k := range b.Keys {
		if kid, ok := k.KeyID(); ok {
			kids[kid] = true
		}
	}
	p.bundle, p.bundleKIDs = st, kids
}

// compileSigner takes the active key of the first SigningKey's Secret. The SigningKey
// controller marks a key Active only after it was published for prePublish, so a
// rotation takes effect here at activation, never before. The key must also be in the
// verifier bundle in force and not revoked, or nothing is signed.
func (p *policyState) compileSigner(secret *corev1.Secret) {
	if secret == nil {
		p.setNotReady("the signing key's Secret does not exist yet")
		return
	}
	s, err := mint.FromSecret(secret.Data)
	if err != nil {
		p.setNotReady("the signing key's Secret has no usable active key: " + err.Error())
		return
	}
	p.signer = s
	if p.bundle == nil {
		return
	}
	if !p.bundleKIDs[s.KID()] {
		p.setNotReady("the active key " + s.KID() + " is not in the verifier bundle yet")
		p.signer = nil
		return
	}
	if p.bundle.Revoked.Check(revocation.Token{KeyID: s.KID()}) == "kid" {
		p.setNotReady("the active key " + s.KID() + " is revoked")
		p.signer = nil
	}
}

func (p *policyState) setNotReady(why string) {
	if p.notReady == "" {
		p.notReady = why
	}
}

// renderJWKS merges the public keys of the policy's SigningKeys (their -jwks ConfigMaps,
// in spec order, without duplicates), leaving out keys the bundle revokes. A ConfigMap
// that does not parse contributes nothing (fail closed) and yields a warning.
func renderJWKS(signingKeys []string, cms map[string]*corev1.ConfigMap, st *sidecar.State) ([]byte, []string) {
	var keys []jwk.Key
	var warnings []string
	seen := map[string]bool{}
	for _, sk := range signingKeys {
		cm := cms[sk]
		if cm == nil {
			continue
		}
		set, err := jwks.ParseSet([]byte(cm.Data[jwksDataKey]), false)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("the JWKS of SigningKey %s is invalid: %v", sk, err))
			continue
		}
		for _, k := range set {
			kid, _ := k.KeyID()
			if seen[kid] || (st != nil && st.Revoked.Check(revocation.Token{KeyID: kid}) == "kid") {
				continue
			}
			seen[kid] = true
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return []byte(`{"keys":[]}`), warnings
	}
	out, err := jwks.PublicSetJSON(keys)
	if err != nil {
		return []byte(`{"keys":[]}`), append(warnings, "rendering the JWKS: "+err.Error())
	}
	return out, warnings
}

// jwksDataKey is the data key of a SigningKey's JWKS ConfigMap.
const jwksDataKey = "jwks.json"

// Registry holds the policies served, by key and by issuer path. Two policies that claim
// the same issuer path: the older one (creation time, then namespace/name) is served, the
// other one is not (an Event says why), so a new policy never takes over an issuer.
type Registry struct {
	mu       sync.Mutex
	all      map[string]*policyState
	byPrefix atomic.Pointer[map[string]*policyState]
	onChange func(served int)
}

// NewRegistry returns an empty registry; onChange (may be nil) sees the number served.
func NewRegistry(onChange func(served int)) *Registry {
	r := &Registry{all: map[string]*policyState{}, onChange: onChange}
	empty := map[string]*policyState{}
	r.byPrefix.Store(&empty)
	return r
}

// set stores a policy state and returns the key of the policy served at its path.
func (r *Registry) set(p *policyState) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all[p.key] = p
	m := r.rebuild()
	return m[p.prefix].key
}

// remove stops serving a policy.
func (r *Registry) remove(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.all[key]; !ok {
		return
	}
	delete(r.all, key)
	r.rebuild()
}

// get returns the state of a policy by key (served or not).
func (r *Registry) get(key string) *policyState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.all[key]
}

// lookup returns the policy served at an issuer path.
func (r *Registry) lookup(prefix string) *policyState { return (*r.byPrefix.Load())[prefix] }

func (r *Registry) rebuild() map[string]*policyState {
	states := make([]*policyState, 0, len(r.all))
	for _, p := range r.all {
		states = append(states, p)
	}
	sort.Slice(states, func(i, j int) bool {
		a, b := states[i], states[j]
		if !a.created.Equal(b.created) {
			return a.created.Before(b.created)
		}
		return a.key < b.key
	})
	m := make(map[string]*policyState, len(states))
	for _, p := range states {
		if _, taken := m[p.prefix]; !taken {
			m[p.prefix] = p
		}
	}
	r.byPrefix.Store(&m)
	if r.onChange != nil {
		r.onChange(len(m))
	}
	return m
}
