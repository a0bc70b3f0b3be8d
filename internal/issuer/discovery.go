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
	"encoding/json"
	"net/http"

	"github.com/keyward-dev/keyward/internal/policy"
)

// metadata is the authorization server metadata (RFC 8414), served at both
// <issuer>/.well-known/openid-configuration and /.well-known/oauth-authorization-server<path>.
type metadata struct {
	Issuer                            string   `json:"issuer"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint"`
	MintEndpoint                      string   `json:"keyward_mint_endpoint"`
	ScopesSupported                   []string `json:"scopes_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthMethods          []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethods     []string `json:"revocation_endpoint_auth_methods_supported"`
	DPoPSigningAlgValuesSupported     []string `json:"dpop_signing_alg_values_supported,omitempty"`
	AccessTokenSigningAlgValues       []string `json:"keyward_access_token_signing_alg_values,omitempty"`
	BrowserModeCookiePath             string   `json:"keyward_refresh_cookie_path,omitempty"`
	BrowserModeCSRFHeader             string   `json:"keyward_csrf_header,omitempty"`
	LogoutEndpoint                    string   `json:"keyward_logout_endpoint,omitempty"`
	TLSClientCertificateBoundAccessTk bool     `json:"tls_client_certificate_bound_access_tokens,omitempty"`
}

func (s *Server) handleDiscovery(w http.ResponseWriter, _ *http.Request, p *policyState) *oauthError {
	m := metadata{
		Issuer:                        p.issuer,
		TokenEndpoint:                 p.url(pathToken),
		JWKSURI:                       p.url(pathJWKS),
		RevocationEndpoint:            p.url(pathRevoke),
		IntrospectionEndpoint:         p.url(pathIntrospect),
		MintEndpoint:                  p.url(pathMint),
		ScopesSupported:               append([]string{}, p.scopes...),
		ResponseTypesSupported:        []string{},
		GrantTypesSupported:           []string{GrantRefreshToken},
		TokenEndpointAuthMethods:      []string{"none"},
		RevocationEndpointAuthMethods: []string{"none"},
	}
	if p.exchange != nil {
		m.GrantTypesSupported = append(m.GrantTypesSupported, GrantTokenExchange)
	}
	if p.bindingMode == policy.BindingDPoP {
		m.DPoPSigningAlgValuesSupported = []string{"ES256", "ES384", "EdDSA", "RS256", "PS256"}
	}
	if p.bundle != nil {
		m.AccessTokenSigningAlgValues = p.bundle.Policy.Source.Algorithms
	}
	if p.cookie != nil {
		m.BrowserModeCookiePath, m.BrowserModeCSRFHeader, m.LogoutEndpoint = p.cookie.path, CSRFHeader, p.url(pathLogout)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return serverError("render")
	}
	writePublic(w, "application/json", b)
	return nil
}

func (s *Server) handleJWKS(w http.ResponseWriter, _ *http.Request, p *policyState) *oauthError {
	writePublic(w, "application/jwk-set+json", p.jwks)
	return nil
}

// writePublic writes a public document that caches may keep for a minute (the SigningKey
// prePublish period is far longer, so a cached JWKS always holds the signing key).
func writePublic(w http.ResponseWriter, contentType string, b []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "public, max-age=60")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}
