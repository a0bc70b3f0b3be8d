package binding

import (
	"net/url"
	"testing"
)

func TestNormaliseHTU(t *testing.T) {
	tests := []struct {
		in, want string // want "" means an error
	}{
		{"https://server.example.com/token", "https://server.example.com/token"},
		{"HTTPS://Server.Example.COM/token", "https://server.example.com/token"},
		{"https://server.example.com:443/token", "https://server.example.com/token"},
		{"https://server.example.com:0443/token", "https://server.example.com/token"},
		{"https://server.example.com:/token", "https://server.example.com/token"},
		{"http://server.example.com:80/token", "http://server.example.com/token"},
		{"http://server.example.com:443/token", "http://server.example.com:443/token"},
		{"https://server.example.com:8443/token", "https://server.example.com:8443/token"},
		{"https://server.example.com", "https://server.example.com/"},
		{"https://server.example.com/a/./b/../c", "https://server.example.com/a/c"},
		{"https://server.example.com/../a", "https://server.example.com/a"},
		{"https://server.example.com/a/..", "https://server.example.com/"},
		{"https://server.example.com/%7e%41%2d", "https://server.example.com/~A-"},
		{"https://server.example.com/a%2fb%3a", "https://server.example.com/a%2Fb%3A"},
		{"https://server.example.com/%2e%2E/x", "https://server.example.com/x"},
		{"https://server.example.com/a//b", "https://server.example.com/a//b"},
		{"https://server.example.com/Token", "https://server.example.com/Token"},
		{"https://[2001:DB8::1]:443/x", "https://[2001:db8::1]/x"},
		{"https://server.example.com/token?", ""},
		{"https://server.example.com/token?a=b", ""},
		{"https://server.example.com/token#", ""},
		{"ftp://server.example.com/token", ""},
		{"server.example.com/token", ""},
		{"/token", ""},
		{"https:///token", ""},
		{"https://u:p@server.example.com/token", ""},
		{"https://server.example.com/%zz", ""},
		{"mailto:a@example.com", ""},
		{"https://server.example.com:port/x", ""},
	}
	for _, tt := range tests {
		got, err := normaliseHTU(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("normaliseHTU(%q) = %q, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("normaliseHTU(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestNormaliseRequestURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://api.example.com/x?q=1#f", "https://api.example.com/x"},
		{"https://api.example.com:443/x?", "https://api.example.com/x"},
		{"https://API.example.com/a%2fb", "https://api.example.com/a%2Fb"},
		{"/x", ""},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := normaliseRequestURL(u)
		if tt.want == "" {
			if err == nil {
				t.Errorf("normaliseRequestURL(%q) = %q, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("normaliseRequestURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := normaliseRequestURL(nil); err == nil {
		t.Error("nil URL accepted")
	}
	// A URL built by hand (as a server does from r.Host and r.URL.Path).
	u := &url.URL{Scheme: "https", Host: "api.example.com", Path: "/a b"}
	if got, err := normaliseRequestURL(u); err != nil || got != "https://api.example.com/a%20b" {
		t.Errorf("hand-built URL: %q, %v", got, err)
	}
}

func TestRemoveDotSegments(t *testing.T) {
	// RFC 3986 section 5.2.4 examples, and edge cases.
	tests := []struct{ in, want string }{
		{"/a/b/c/./../../g", "/a/g"},
		{"mid/content=5/../6", "mid/6"},
		{"/", "/"},
		{"/.", "/"},
		{"/..", "/"},
		{"/a/.", "/a/"},
		{"/a/b/..", "/a/"},
		{"/a/./b", "/a/b"},
		{"/a..b/.c", "/a..b/.c"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := removeDotSegments(tt.in); got != tt.want {
			t.Errorf("removeDotSegments(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
