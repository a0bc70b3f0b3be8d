package policy

import (
	"slices"
	"strings"
	"testing"

	"github.com/keyward-dev/keyward/internal/bundle"
)

func basePolicy() bundle.Policy {
	return bundle.Policy{
		Issuer:          "https://auth.example.com",
		Audiences:       []string{"api"},
		Algorithms:      []string{"ES256"},
		AccessTokenType: "at+jwt",
		Binding:         bundle.Binding{Mode: "None"},
		TokenSources:    []bundle.TokenSource{{Type: "AuthorizationHeader"}},
	}
}

func mustCompile(t *testing.T, p bundle.Policy) *Policy {
	t.Helper()
	c, err := Compile(p)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return c
}

func TestMatch(t *testing.T) {
	p := basePolicy()
	p.Routes = []bundle.Route{
		{Path: "/healthz", Anonymous: true},
		{Path: "/public/*", Methods: []string{"GET", "HEAD"}, Anonymous: true},
		{Path: "/v1/items/*", Methods: []string{"GET"}, Scopes: []string{"items:read"}},
		{Path: "/v1/items", Methods: []string{"POST"}, Scopes: []string{"items:read", "items:write"}},
		{Path: "/v1/items/special", Scopes: []string{"never"}}, // shadowed for GET by the rule above
		{Path: "/admin/*", Scopes: []string{"admin"}},
		{Path: "/*", Methods: []string{"DELETE"}, Scopes: []string{"delete"}},
	}
	c := mustCompile(t, p)
	tests := []struct {
		method, path string
		wantPattern  string // "" = default rule
		wantAnon     bool
		wantScopes   []string
	}{
		{"GET", "/healthz", "/healthz", true, nil},
		{"POST", "/healthz", "/healthz", true, nil}, // no methods: every method
		{"GET", "/healthz/", "", false, nil},        // exact means exact
		{"GET", "/healthzz", "", false, nil},
		{"GET", "/public/a.css", "/public/*", true, nil},
		{"HEAD", "/public/x/y/z", "/public/*", true, nil},
		{"GET", "/public/", "/public/*", true, nil},
		{"GET", "/public", "", false, nil}, // the prefix rule needs the slash
		{"GET", "/publicity", "", false, nil},
		{"POST", "/public/a.css", "", false, nil}, // method not listed
		{"GET", "/v1/items/42", "/v1/items/*", false, []string{"items:read"}},
		{"GET", "/v1/items/special", "/v1/items/*", false, []string{"items:read"}}, // first match wins
		{"PUT", "/v1/items/special", "/v1/items/special", false, []string{"never"}},
		{"POST", "/v1/items", "/v1/items", false, []string{"items:read", "items:write"}},
		{"GET", "/v1/items", "", false, nil},
		{"GET", "/admin/users", "/admin/*", false, []string{"admin"}},
		{"DELETE", "/anything", "/*", false, []string{"delete"}},
		{"DELETE", "/healthz", "/healthz", true, nil}, // earlier rule wins
		{"get", "/v1/items/1", "", false, nil},        // methods are case-sensitive
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := c.Match(tt.method, tt.path)
			if r.Pattern != tt.wantPattern || r.Anonymous != tt.wantAnon || !slices.Equal(r.Scopes, tt.wantScopes) {
				t.Errorf("Match(%s, %s) = {%q anon=%v scopes=%v}, want {%q anon=%v scopes=%v}",
					tt.method, tt.path, r.Pattern, r.Anonymous, r.Scopes, tt.wantPattern, tt.wantAnon, tt.wantScopes)
			}
		})
	}
}

func TestMatchNoRoutes(t *testing.T) {
	c := mustCompile(t, basePolicy())
	r := c.Match("GET", "/x")
	if r.Pattern != "" || r.Anonymous || len(r.Scopes) != 0 {
		t.Fatalf("default rule = %+v, want token required and no scopes", r)
	}
}

func TestMissingScopes(t *testing.T) {
	tests := []struct {
		name           string
		required, have []string
		want           []string
	}{
		{"none required", nil, []string{"a"}, nil},
		{"none required, none held", nil, nil, nil},
		{"all present", []string{"a", "b"}, []string{"b", "c", "a"}, nil},
		{"one missing", []string{"a", "b"}, []string{"a"}, []string{"b"}},
		{"all missing", []string{"a", "b"}, nil, []string{"a", "b"}},
		{"case-sensitive", []string{"Admin"}, []string{"admin"}, []string{"Admin"}},
		{"no prefix match", []string{"items:read"}, []string{"items"}, []string{"items:read"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MissingScopes(tt.required, tt.have); !slices.Equal(got, tt.want) {
				t.Errorf("MissingScopes(%v, %v) = %v, want %v", tt.required, tt.have, got, tt.want)
			}
		})
	}
}

func TestCanonicalPath(t *testing.T) {
	tests := []struct {
		path string
		want bool
	}{
		{"/", true},
		{"/a/b", true},
		{"/a/b/", true},
		{"/a//b", false},
		{"/a/./b", false},
		{"/a/../b", false},
		{"/public/../admin", false},
		{"/..", false},
		{"/a/..", false},
		{"", false},
		{"a/b", false},
		{"/a/b/.", false},
	}
	for _, tt := range tests {
		if got := IsCanonical(tt.path); got != tt.want {
			t.Errorf("IsCanonical(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

func TestCompileRefuses(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*bundle.Policy)
		want   string
	}{
		{"unknown binding", func(p *bundle.Policy) { p.Binding.Mode = "Magic" }, "binding mode"},
		{"relative route", func(p *bundle.Policy) { p.Routes = []bundle.Route{{Path: "x"}} }, "does not start with /"},
		{"inner wildcard", func(p *bundle.Policy) { p.Routes = []bundle.Route{{Path: "/a/*/b"}} }, "only allowed"},
		{"suffix wildcard without slash", func(p *bundle.Policy) { p.Routes = []bundle.Route{{Path: "/a*"}} }, "only allowed"},
		{"dot segment", func(p *bundle.Policy) { p.Routes = []bundle.Route{{Path: "/a/../b"}} }, "canonical"},
		{"lower-case method", func(p *bundle.Policy) { p.Routes = []bundle.Route{{Path: "/a", Methods: []string{"get"}}} }, "upper-case"},
		{"anonymous with scopes", func(p *bundle.Policy) {
			p.Routes = []bundle.Route{{Path: "/a", Anonymous: true, Scopes: []string{"s"}}}
		}, "requires scopes"},
		{"scope with space", func(p *bundle.Policy) { p.Routes = []bundle.Route{{Path: "/a", Scopes: []string{"a b"}}} }, "scope"},
		{"scope with quote", func(p *bundle.Policy) { p.Routes = []bundle.Route{{Path: "/a", Scopes: []string{`a"`}}} }, "scope"},
		{"bad cookie name", func(p *bundle.Policy) { p.TokenSources = []bundle.TokenSource{{Type: "Cookie", Name: "a;b"}} }, "cookie name"},
		{"unknown source", func(p *bundle.Policy) { p.TokenSources = []bundle.TokenSource{{Type: "Query"}} }, "not supported"},
		{"no source", func(p *bundle.Policy) { p.TokenSources = nil }, "no token source"},
		{"header with CRLF", func(p *bundle.Policy) {
			p.ForwardClaims = []bundle.ClaimHeader{{Claim: "sub", Header: "X-A\r\nX-B"}}
		}, "valid header name"},
		{"reserved header", func(p *bundle.Policy) {
			p.ForwardClaims = []bundle.ClaimHeader{{Claim: "sub", Header: "authorization"}}
		}, "reserved"},
		{"identity namespace", func(p *bundle.Policy) {
			p.ForwardClaims = []bundle.ClaimHeader{{Claim: "sub", Header: "x-keyward-subject"}}
		}, "namespace"},
		{"duplicate header", func(p *bundle.Policy) {
			p.ForwardClaims = []bundle.ClaimHeader{{Claim: "sub", Header: "X-User"}, {Claim: "email", Header: "x-user"}}
		}, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := basePolicy()
			tt.mutate(&p)
			_, err := Compile(p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Compile error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestCompileSourcesAndOwnedHeaders(t *testing.T) {
	p := basePolicy()
	p.TokenSources = []bundle.TokenSource{{Type: "Cookie", Name: "at"}, {Type: "AuthorizationHeader"}, {Type: "Cookie", Name: "at"}}
	p.ForwardClaims = []bundle.ClaimHeader{{Claim: "email", Header: "x-user-email"}, {Claim: "tenant", Header: "X-Tenant"}}
	p.Binding = bundle.Binding{Mode: "DPoP", Required: true}
	c := mustCompile(t, p)
	if !c.AuthorizationHeader || !slices.Equal(c.Cookies, []string{"at"}) {
		t.Errorf("sources: header=%v cookies=%v", c.AuthorizationHeader, c.Cookies)
	}
	if c.BindingMode != BindingDPoP || !c.BindingRequired {
		t.Errorf("binding = %s/%v", c.BindingMode, c.BindingRequired)
	}
	want := []ForwardedClaim{{"email", "X-User-Email"}, {"tenant", "X-Tenant"}}
	if !slices.Equal(c.ForwardClaims, want) {
		t.Errorf("ForwardClaims = %v, want %v", c.ForwardClaims, want)
	}
	owned := []struct {
		h    string
		want bool
	}{
		{"X-Keyward-Subject", true},
		{"X-Keyward-Anything-Else", true},
		{"X-User-Email", true},
		{"X-Tenant", true},
		{"X-User", false},
		{"Authorization", false},
		{"X-Keyward", false},
	}
	for _, o := range owned {
		if got := c.Owns(o.h); got != o.want {
			t.Errorf("Owns(%q) = %v, want %v", o.h, got, o.want)
		}
	}
	if !c.IsTokenCookie("at") || c.IsTokenCookie("other") {
		t.Error("IsTokenCookie")
	}
}
