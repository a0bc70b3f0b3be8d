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
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestParseForm(t *testing.T) {
	tests := []struct {
		body    string
		want    map[string]string
		wantErr string
	}{
		{"grant_type=refresh_token&refresh_token=x", map[string]string{"grant_type": "refresh_token", "refresh_token": "x"}, ""},
		{"", map[string]string{}, ""},
		{"scope=read+write", map[string]string{"scope": "read write"}, ""},
		{"a=1&a=2", nil, "repeated_parameter"},
		{"a=1&a=1", nil, "repeated_parameter"},
		{"a=%zz", nil, "malformed"},
		{"a=1;b=2", nil, "malformed"},
		{"a=%00", nil, "malformed"},
		{"a=x%0Ay", nil, "malformed"},
	}
	for _, tt := range tests {
		got, err := parseForm(tt.body)
		if tt.wantErr != "" {
			if err == nil || err.Reason != tt.wantErr || err.Code != ErrInvalidRequest {
				t.Errorf("parseForm(%q) = %v, want %s", tt.body, err, tt.wantErr)
			}
			continue
		}
		if err != nil || len(got) != len(tt.want) {
			t.Errorf("parseForm(%q) = %v, %v", tt.body, got, err)
			continue
		}
		for k, v := range tt.want {
			if got[k] != v {
				t.Errorf("parseForm(%q)[%s] = %q, want %q", tt.body, k, got[k], v)
			}
		}
	}
}

func TestCheckScope(t *testing.T) {
	grantable := []string{"read", "write", "a:b"}
	tests := []struct {
		req, want string
		ok        bool
	}{
		{"", "", true},
		{"read", "read", true},
		{"write read", "write read", true},
		{"read read", "read", true},
		{"a:b", "a:b", true},
		{"admin", "", false},
		{"read  write", "", false},
		{" read", "", false},
		{"read ", "", false},
		{"re\"ad", "", false},
		{"read\twrite", "", false},
	}
	for _, tt := range tests {
		got, err := checkScope(tt.req, grantable)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("checkScope(%q) = %q, %v", tt.req, got, err)
		}
		if err != nil && err.Code != ErrInvalidScope {
			t.Errorf("checkScope(%q) error code %s", tt.req, err.Code)
		}
	}
}

func TestParseMintRequest(t *testing.T) {
	jkt := base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	tests := []struct {
		body string
		ok   bool
	}{
		{`{"sub":"alice","client_id":"web"}`, true},
		{`{"sub":"alice","client_id":"web","scope":"read","dpop_jkt":"` + jkt + `"}`, true},
		{` {"sub":"alice","client_id":"web"} `, true},
		{`{"sub":"alice","client_id":"web","claims":{}}`, true},
		{`{"sub":"alice","client_id":"web","claims":{"x":1}}`, false},
		{`{"sub":"alice","client_id":"web","dpop_jkt":"short"}`, false},
		{`{"sub":"alice","client_id":"web","dpop_jkt":"` + jkt + `="}`, false},
		{`{"sub":"","client_id":"web"}`, false},
		{`{"sub":"` + strings.Repeat("a", 257) + `","client_id":"web"}`, false},
		{`{"sub":"alice","client_id":"web","Sub":"root"}`, false},
		{`{"sub":"alice","client_id":"web","x":null}`, false},
		{`{"sub":1,"client_id":"web"}`, false},
		{`{"sub":"alice","client_id":"web"}{}`, false},
		{`{"sub":"alice","client_id":"web"`, false},
		{"{\"sub\":\"al\xffice\",\"client_id\":\"web\"}", false},
		{``, false},
		{`null`, false},
	}
	for _, tt := range tests {
		_, err := parseMintRequest([]byte(tt.body))
		if (err == nil) != tt.ok {
			t.Errorf("parseMintRequest(%q) = %v, want ok=%v", tt.body, err, tt.ok)
		}
	}
}

func TestSealer(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	s, err := NewSealer(k1)
	if err != nil {
		t.Fatal(err)
	}
	aad := []byte("presented")
	sealed := s.Seal([]byte("pair"), aad)
	if bytes.Contains(sealed, []byte("pair")) {
		t.Fatal("the plaintext is visible")
	}
	if got, err := s.Open(sealed, aad); err != nil || string(got) != "pair" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := s.Open(sealed, []byte("other token")); err == nil {
		t.Fatal("a record opened for another token")
	}
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 1
		if _, err := s.Open(bad, aad); err == nil {
			t.Fatalf("a record tampered at byte %d opened", i)
		}
	}
	for _, short := range [][]byte{nil, {1}, sealed[:5], sealed[:20]} {
		if _, err := s.Open(short, aad); err == nil {
			t.Fatal("a truncated record opened")
		}
	}
	// Rotation: a new first key seals, the old one still opens.
	rotated, err := NewSealer(k2, k1)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rotated.Open(sealed, aad); err != nil || string(got) != "pair" {
		t.Fatalf("the old key does not open after rotation: %v", err)
	}
	if _, err := s.Open(rotated.Seal([]byte("x"), aad), aad); err == nil {
		t.Fatal("a record under an unknown key opened")
	}
	if _, err := NewSealer(k1, k1); err == nil {
		t.Fatal("a duplicate key was accepted")
	}
	if _, err := NewSealer(k1[:16]); err == nil {
		t.Fatal("a 16-byte key was accepted")
	}
	if _, err := NewSealer(); err == nil {
		t.Fatal("no key was accepted")
	}
}

func TestParseReplayKeys(t *testing.T) {
	k := bytes.Repeat([]byte{0xab}, 32)
	good := []string{
		hex.EncodeToString(k),
		strings.ToUpper(hex.EncodeToString(k)),
		base64.StdEncoding.EncodeToString(k),
		base64.RawURLEncoding.EncodeToString(k),
		"# comment\n\n  " + hex.EncodeToString(k) + "  \n",
		NewReplayKey() + "\n" + hex.EncodeToString(k),
	}
	for _, g := range good {
		if _, err := ParseReplayKeys([]byte(g)); err != nil {
			t.Errorf("ParseReplayKeys(%q): %v", g, err)
		}
	}
	bad := []string{"", "# only a comment\n", "secret", hex.EncodeToString(k[:16]), base64.StdEncoding.EncodeToString(k[:31]),
		hex.EncodeToString(k) + "\nnot-a-key", hex.EncodeToString(k) + "\n" + hex.EncodeToString(k)}
	for _, b := range bad {
		if _, err := ParseReplayKeys([]byte(b)); err == nil {
			t.Errorf("ParseReplayKeys(%q) accepted it", b)
		}
	}
	if a, b := NewReplayKey(), NewReplayKey(); a == b || len(a) != 64 {
		t.Fatalf("NewReplayKey: %q %q", a, b)
	}
}

func TestRefreshTokenShape(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		rt := newRefreshToken()
		if !isRefreshToken(rt) || seen[rt] {
			t.Fatalf("newRefreshToken() = %q", rt)
		}
		seen[rt] = true
	}
	rt := newRefreshToken()
	for _, bad := range []string{"", rt[1:], rt + "A", "kwrt-" + rt[5:], rt[:len(rt)-1] + "=", rt[:10] + "+" + rt[11:], rt[:10] + "/" + rt[11:], " " + rt[1:]} {
		if isRefreshToken(bad) {
			t.Errorf("isRefreshToken(%q) = true", bad)
		}
	}
}

func TestParseIssuer(t *testing.T) {
	tests := []struct {
		issuer, prefix string
		ok             bool
	}{
		{"https://auth.example/shop", "/shop", true},
		{"https://auth.example/shop/", "/shop", true},
		{"https://auth.example", "", true},
		{"https://auth.example/", "", true},
		{"http://localhost:8080/a/b", "/a/b", true},
		{"https://auth.example/a/../b", "", false},
		{"https://auth.example//a", "", false},
		{"https://auth.example/a%2Fb", "", false},
		{"https://auth.example/a?x=1", "", false},
		{"https://auth.example/a#f", "", false},
		{"https://user@auth.example/a", "", false},
		{"ftp://auth.example/a", "", false},
		{"/shop", "", false},
		{"auth.example", "", false},
	}
	for _, tt := range tests {
		_, prefix, err := parseIssuer(tt.issuer)
		if (err == nil) != tt.ok || prefix != tt.prefix {
			t.Errorf("parseIssuer(%q) = %q, %v", tt.issuer, prefix, err)
		}
	}
}

func TestDetector(t *testing.T) {
	d := newDetector()
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 30 {
		if _, crossed := d.hit("k", t0.Add(time.Duration(i)*time.Second), 30); crossed {
			t.Fatalf("crossed at hit %d of 30", i+1)
		}
	}
	if n, crossed := d.hit("k", t0.Add(30*time.Second), 30); !crossed || n != 31 {
		t.Fatalf("31st hit: %d %v", n, crossed)
	}
	if _, crossed := d.hit("k", t0.Add(31*time.Second), 30); crossed {
		t.Fatal("a burst was reported twice")
	}
	// Sliding: at t0+61s the hits of t0 and t0+1s have left the window.
	if n, _ := d.hit("k", t0.Add(61*time.Second), 30); n != 31 {
		t.Fatalf("count after sliding = %d, want 31", n)
	}
	// After a quiet minute the key starts over, and a new burst is reported again.
	for i := range 31 {
		n, crossed := d.hit("k", t0.Add(5*time.Minute), 30)
		if n != i+1 || crossed != (i == 30) {
			t.Fatalf("hit %d after a quiet minute: %d %v", i+1, n, crossed)
		}
	}
	// Keys idle for a minute are swept.
	d.hit("other", t0.Add(5*time.Minute), 30)
	d.hit("late", t0.Add(7*time.Minute), 30)
	if d.size() != 1 {
		t.Fatalf("%d keys tracked after the sweep, want 1", d.size())
	}
	// A clock stepping backwards counts into the current bucket.
	if n, _ := d.hit("late", t0.Add(6*time.Minute), 30); n != 2 {
		t.Fatalf("count after a backward step = %d", n)
	}
}

func TestDPoPNonces(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1_700_000_000, 0))
	d := newDPoPVerifier(clk, []byte("key"), true, time.Minute)
	other := newDPoPVerifier(clk, []byte("another replica's key"), true, time.Minute)
	same := newDPoPVerifier(clk, []byte("key"), true, time.Minute)
	n := d.nonce(clk.Now())
	if !d.valid(n, clk.Now()) || !same.valid(n, clk.Now()) || other.valid(n, clk.Now()) {
		t.Fatal("nonces are not shared exactly by replicas with the same key")
	}
	clk.Step(time.Minute)
	if !d.valid(n, clk.Now()) {
		t.Fatal("the previous nonce is refused")
	}
	clk.Step(time.Minute)
	if d.valid(n, clk.Now()) {
		t.Fatal("a nonce two lifetimes old is accepted")
	}
	for _, proof := range []string{"", "a.b", "a.b.c", "a." + b64u([]byte(`{"nonce":1}`)) + ".c", "a." + b64u([]byte(`{"Nonce":"x"}`)) + ".c"} {
		if _, ok := proofNonce(proof); ok {
			t.Errorf("proofNonce(%q) found a nonce", proof)
		}
	}
	if got, ok := proofNonce("a." + b64u([]byte(`{"nonce":"n1"}`)) + ".c"); !ok || got != "n1" {
		t.Fatalf("proofNonce = %q %v", got, ok)
	}
}

func TestRegistryPathConflict(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	state := func(key string, created time.Time) *policyState {
		return &policyState{key: key, prefix: "/shop", created: created}
	}
	var served int
	r := NewRegistry(func(n int) { served = n })
	if winner := r.set(state("b/new", t0.Add(time.Hour))); winner != "b/new" {
		t.Fatalf("winner %s", winner)
	}
	if winner := r.set(state("a/old", t0)); winner != "a/old" {
		t.Fatalf("the older policy does not win: %s", winner)
	}
	if winner := r.set(state("c/newest", t0.Add(2*time.Hour))); winner != "a/old" || served != 1 {
		t.Fatalf("a newer policy took over: %s", winner)
	}
	r.remove("a/old")
	if p := r.lookup("/shop"); p == nil || p.key != "b/new" {
		t.Fatalf("after removal %v", p)
	}
	if r.lookup("/other") != nil {
		t.Fatal("an unknown path is served")
	}
}
