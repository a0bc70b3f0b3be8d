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

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TokenPolicySpec says what a valid token is for the workloads that use this policy.
// +kubebuilder:validation:XValidation:rule="duration(self.leeway) <= duration('5m')",message="leeway must be at most 5m"
type TokenPolicySpec struct {
	// Issuer is the exact `iss` tokens must carry, and the issuer the token service signs as.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +required
	Issuer string `json:"issuer"`

	// Audiences: a token is accepted when its `aud` contains at least one of them.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=set
	// +required
	Audiences []string `json:"audiences"`

	// SigningKeys names the SigningKeys (in this namespace) whose keys are trusted. The
	// first one signs tokens for this issuer; the others are accepted for verification,
	// e.g. while migrating to a new key set.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=atomic
	// +required
	SigningKeys []string `json:"signingKeys"`

	// AllowedAlgorithms narrows the algorithms accepted. Empty: the algorithms of the
	// trusted keys. The key found by kid always fixes the algorithm; this is a further limit.
	// +kubebuilder:validation:MaxItems=5
	// +listType=set
	// +optional
	AllowedAlgorithms []Algorithm `json:"allowedAlgorithms,omitempty"`

	// Leeway is the clock skew tolerated on exp, nbf and iat.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +optional
	Leeway metav1.Duration `json:"leeway,omitzero"`

	// AccessToken sets the lifetime and type of access tokens.
	// +kubebuilder:default={ttl: "10m", type: "at+jwt"}
	// +optional
	AccessToken AccessTokenSpec `json:"accessToken,omitzero"`

	// RefreshToken sets lifetimes of refresh tokens issued by the token service.
	// +kubebuilder:default={ttl: "720h", idleTimeout: "24h", reuseInterval: "2s"}
	// +optional
	RefreshToken RefreshTokenSpec `json:"refreshToken,omitzero"`

	// Binding requires or allows proof-of-possession of the token.
	// +kubebuilder:default={mode: None}
	// +optional
	Binding BindingSpec `json:"binding,omitzero"`

	// Routes map requests to required scopes; the first match wins. A request that matches
	// no route needs a valid token and no particular scope.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	Routes []RouteRule `json:"routes,omitempty"`

	// ForwardClaims are claims passed to the application as request headers.
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +optional
	ForwardClaims []ClaimHeader `json:"forwardClaims,omitempty"`

	// TokenSources lists where the verifier looks for the token, in order. Default: the
	// Authorization header (Bearer, or DPoP when binding allows it).
	// +kubebuilder:validation:MaxItems=4
	// +listType=atomic
	// +optional
	TokenSources []TokenSource `json:"tokenSources,omitempty"`

	// ForwardToken passes the original Authorization header to the application. Off by
	// default: the application receives identity headers and never sees the token.
	// +optional
	ForwardToken bool `json:"forwardToken,omitempty"`

	// Issuance lets the token service (cmd/issuer) issue tokens for this policy. Absent:
	// the token service does not serve it (tokens come from elsewhere).
	// +optional
	Issuance *IssuanceSpec `json:"issuance,omitempty"`
}

// IssuanceSpec configures the token service for one TokenPolicy. The service answers at
// the path of spec.issuer (e.g. https://auth.example/shop → /shop/token, /shop/jwks,
// /shop/.well-known/openid-configuration).
type IssuanceSpec struct {
	// Scopes the token service may grant. A request for any other scope is refused.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^[\x21\x23-\x5B\x5D-\x7E]+$`
	// +listType=set
	// +optional
	Scopes []string `json:"scopes,omitempty"`

	// MintClients are the ServiceAccounts ("namespace/name") of login services allowed to
	// call the internal mint endpoint for this policy: after authenticating a user they
	// obtain the user's first access and refresh token.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=317
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$`
	// +listType=set
	// +optional
	MintClients []string `json:"mintClients,omitempty"`

	// TokenExchange allows RFC 8693 exchange of Kubernetes ServiceAccount tokens for
	// workload access tokens (checked with TokenReview). Absent: no exchange.
	// +optional
	TokenExchange *TokenExchangeSpec `json:"tokenExchange,omitempty"`

	// Cookie enables browser mode: the refresh token travels in an HttpOnly, Secure,
	// SameSite=Strict cookie limited to the refresh path instead of the response body.
	// +optional
	Cookie *CookieSpec `json:"cookie,omitempty"`

	// Anomaly sets refresh-burst detection. Absent: defaults (see AnomalySpec).
	// +optional
	Anomaly *AnomalySpec `json:"anomaly,omitempty"`
}

// TokenExchangeSpec allows ServiceAccount token exchange.
type TokenExchangeSpec struct {
	// ServiceAccounts allowed to exchange their token: "namespace/name", or "namespace/*".
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=317
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?/(\*|[a-z0-9]([-.a-z0-9]*[a-z0-9])?)$`
	// +listType=set
	// +required
	ServiceAccounts []string `json:"serviceAccounts"`

	// Audience the presented ServiceAccount token must be issued for (TokenReview
	// audiences). Default: the token service's own audience flag.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Audience string `json:"audience,omitempty"`

	// Scopes granted to exchanged tokens (a subset of Issuance.Scopes).
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	Scopes []string `json:"scopes,omitempty"`
}

// CookieSpec configures browser mode.
type CookieSpec struct {
	// Name of the refresh-token cookie. The __Host- prefix pins it to the host, Secure and
	// Path=/ per RFC 6265bis; without it the cookie's Path is the refresh endpoint.
	// +kubebuilder:default="keyward_refresh"
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-]+$`
	// +optional
	Name string `json:"name,omitempty"`
}

// AnomalySpec sets refresh-burst detection.
type AnomalySpec struct {
	// MaxRefreshesPerMinute per subject and per family above which a burst is reported
	// (metric, Event, audit record). 0: the default 30.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	// +optional
	MaxRefreshesPerMinute int32 `json:"maxRefreshesPerMinute,omitempty"`

	// AutoRevoke revokes the family (and emits a RevocationEntry for its session) when a
	// burst is detected. Reuse of a spent refresh token always revokes.
	// +optional
	AutoRevoke bool `json:"autoRevoke,omitempty"`
}

// AccessTokenSpec sets access-token properties.
// +kubebuilder:validation:XValidation:rule="duration(self.ttl) >= duration('30s') && duration(self.ttl) <= duration('24h')",message="accessToken.ttl must be between 30s and 24h"
type AccessTokenSpec struct {
	// TTL is the lifetime of access tokens the token service issues, and the longest
	// lifetime a revocation must outlive.
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +optional
	TTL metav1.Duration `json:"ttl,omitzero"`

	// Type is the required JOSE `typ` header: "at+jwt" (RFC 9068) or "JWT".
	// +kubebuilder:default="at+jwt"
	// +kubebuilder:validation:Enum=at+jwt;JWT
	// +optional
	Type string `json:"type,omitempty"`
}

// RefreshTokenSpec sets refresh-token properties.
// +kubebuilder:validation:XValidation:rule="duration(self.idleTimeout) <= duration(self.ttl)",message="refreshToken.idleTimeout must not exceed refreshToken.ttl"
// +kubebuilder:validation:XValidation:rule="duration(self.reuseInterval) <= duration('1m')",message="refreshToken.reuseInterval must be at most 1m"
type RefreshTokenSpec struct {
	// TTL is the absolute lifetime of a refresh-token family (a session).
	// +kubebuilder:default="720h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +optional
	TTL metav1.Duration `json:"ttl,omitzero"`

	// IdleTimeout ends a session unused for this long.
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +optional
	IdleTimeout metav1.Duration `json:"idleTimeout,omitzero"`

	// ReuseInterval is the replay window in which presenting a just-spent refresh token
	// returns the same new pair instead of revoking the family (benign client races).
	// +kubebuilder:default="2s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +optional
	ReuseInterval metav1.Duration `json:"reuseInterval,omitzero"`
}

// BindingMode is the proof-of-possession mechanism.
// +kubebuilder:validation:Enum=None;DPoP;MTLS
type BindingMode string

// The binding modes.
const (
	BindingNone BindingMode = "None"
	BindingDPoP BindingMode = "DPoP"
	BindingMTLS BindingMode = "MTLS"
)

// BindingSpec configures sender-constrained tokens.
// +kubebuilder:validation:XValidation:rule="self.mode != 'None' || !has(self.required) || !self.required",message="binding.required needs binding.mode DPoP or MTLS"
type BindingSpec struct {
	// Mode: None, DPoP (RFC 9449) or MTLS (RFC 8705).
	// +kubebuilder:default=None
	// +optional
	Mode BindingMode `json:"mode,omitempty"`

	// Required rejects unbound tokens; otherwise a bound token must present its proof and
	// an unbound token is accepted.
	// +optional
	Required bool `json:"required,omitempty"`
}

// RouteRule maps a path and methods to required scopes.
// +kubebuilder:validation:XValidation:rule="!has(self.anonymous) || !self.anonymous || !has(self.scopes) || size(self.scopes) == 0",message="an anonymous route cannot require scopes"
type RouteRule struct {
	// Path is matched exactly, or as a prefix when it ends with "/*".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^/`
	// +required
	Path string `json:"path"`

	// Methods the rule applies to; empty means all.
	// +kubebuilder:validation:MaxItems=9
	// +kubebuilder:validation:items:Enum=GET;HEAD;POST;PUT;PATCH;DELETE;OPTIONS;CONNECT;TRACE
	// +listType=set
	// +optional
	Methods []string `json:"methods,omitempty"`

	// Scopes the token must all carry (in its `scope` claim).
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	// +listType=set
	// +optional
	Scopes []string `json:"scopes,omitempty"`

	// Anonymous routes need no token (health checks, public assets).
	// +optional
	Anonymous bool `json:"anonymous,omitempty"`
}

// ClaimHeader forwards one claim as a request header.
type ClaimHeader struct {
	// Claim name in the token payload.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +required
	Claim string `json:"claim"`

	// Header to set; inbound copies of it are always stripped.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9-]+$`
	// +required
	Header string `json:"header"`
}

// TokenSourceType is where a token is read from.
// +kubebuilder:validation:Enum=AuthorizationHeader;Cookie
type TokenSourceType string

// The token sources.
const (
	TokenSourceAuthorizationHeader TokenSourceType = "AuthorizationHeader"
	TokenSourceCookie              TokenSourceType = "Cookie"
)

// TokenSource is one place a token may be presented.
// +kubebuilder:validation:XValidation:rule="self.type != 'Cookie' || has(self.name)",message="a Cookie token source needs a name"
type TokenSource struct {
	// Type of source.
	// +required
	Type TokenSourceType `json:"type"`

	// Name of the cookie, for type Cookie.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.-]+$`
	// +optional
	Name string `json:"name,omitempty"`
}

// TokenPolicyStatus is the observed state of a TokenPolicy.
type TokenPolicyStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, and RetainCoversTTL (False when a trusted key's retain is shorter
	// than the access-token TTL, which would reject valid tokens at rotation).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// BundleConfigMapName is the verifier bundle rendered for this policy.
	// +optional
	BundleConfigMapName string `json:"bundleConfigMapName,omitempty"`

	// BundleGeneration increases by one every time the bundle content changes.
	// +optional
	BundleGeneration int64 `json:"bundleGeneration,omitempty"`

	// BundleHash is the content hash of the bundle in force ("sha256:<hex>").
	// +optional
	BundleHash string `json:"bundleHash,omitempty"`

	// BundleBytes is the size of the rendered bundle.
	// +optional
	BundleBytes int64 `json:"bundleBytes,omitempty"`

	// Revocations is the number of revocations in the bundle.
	// +optional
	Revocations int32 `json:"revocations,omitempty"`

	// SigningKeyID is the active kid of the signing (first) SigningKey.
	// +optional
	SigningKeyID string `json:"signingKeyID,omitempty"`
}

// TokenPolicy declares a token issuer, its audiences and trusted keys, and the request rules
// a verifier sidecar enforces. It is rendered into one verifier bundle ConfigMap.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tp;tps,categories=keyward
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 246",message="a TokenPolicy name must be at most 246 characters, so that <name>-bundle is a valid name"
// +kubebuilder:printcolumn:name="Issuer",type=string,JSONPath=`.spec.issuer`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Bundle Gen",type=integer,JSONPath=`.status.bundleGeneration`
// +kubebuilder:printcolumn:name="Revocations",type=integer,JSONPath=`.status.revocations`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TokenPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec TokenPolicySpec `json:"spec"`
	// +optional
	Status TokenPolicyStatus `json:"status,omitempty"`
}

// TokenPolicyList is a list of TokenPolicies.
// +kubebuilder:object:root=true
type TokenPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TokenPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TokenPolicy{}, &TokenPolicyList{})
}
