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

package client_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keyward-dev/keyward/internal/binding"
	"github.com/keyward-dev/keyward/pkg/client"
)

// The proofs are checked by Keyward's own DPoP checker (internal/binding), the one the
// verifier sidecar and the token service use.
func TestDPoPProofsPassKeywardsChecker(t *testing.T) {
	ec256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	clk := clocktesting.NewFakeClock(time.Unix(1_800_000_000, 0))
	for _, k := range []crypto.Signer{ec256, ec384, ed, rs} {
		key, err := client.NewDPoPKey(k)
		if err != nil {
			t.Fatal(err)
		}
		checker := binding.NewDPoPChecker(binding.DPoPOptions{RequireNonce: true}, clk)
		target, _ := url.Parse("https://API.example:443/orders?id=1#frag")
		proof, err := key.Proof("POST", target, checker.Nonce(), "the-access-token", clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		p, err := checker.Check(proof, "POST", mustURL(t, "https://api.example/orders"), "the-access-token", key.Thumbprint())
		if err != nil {
			t.Fatalf("%s: %v", key.Algorithm(), err)
		}
		if p.JKT != key.Thumbprint() || p.HTM != "POST" || p.IAT != clk.Now().Unix() {
			t.Fatalf("%s: proof %+v", key.Algorithm(), p)
		}
		if strings.Contains(p.HTU, "id=1") || strings.Contains(p.HTU, "frag") {
			t.Fatalf("htu %q keeps the query or fragment", p.HTU)
		}
		// A second proof has a new jti (the checker refuses replays).
		proof2, _ := key.Proof("POST", target, checker.Nonce(), "the-access-token", clk.Now())
		if _, err := checker.Check(proof2, "POST", mustURL(t, "https://api.example/orders"), "the-access-token", key.Thumbprint()); err != nil {
			t.Fatalf("%s: second proof: %v", key.Algorithm(), err)
		}
		// Without a token there is no ath; without a nonce the checker asks for one.
		proof3, _ := key.Proof("GET", target, "", "", clk.Now())
		var be *binding.Error
		if _, err := checker.Check(proof3, "GET", mustURL(t, "https://api.example/orders"), "", ""); !errors.As(err, &be) || be.Reason != binding.ReasonNonce {
			t.Fatalf("%s: no nonce: %v", key.Algorithm(), err)
		}
		if claims := proofClaims(t, proof3); claims["ath"] != nil || claims["nonce"] != nil {
			t.Fatalf("claims %v", claims)
		}
	}
}

func TestDPoPThumbprintRFC7638(t *testing.T) {
	// RFC 7638 §3.1's example key and thumbprint.
	n, _ := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}
	// The thumbprint depends on the public part only.
	key, err := client.NewDPoPKey(&rsa.PrivateKey{PublicKey: *pub})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := key.Thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Fatalf("thumbprint %s, want %s", got, want)
	}
}

func TestDPoPKeyRefusals(t *testing.T) {
	ec224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rs1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	for _, k := range []crypto.Signer{ec224, rs1024} {
		if _, err := client.NewDPoPKey(k); err == nil {
			t.Errorf("%T accepted", k)
		}
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func proofClaims(t *testing.T, proof string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(proof, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFileStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fs := &client.FileStore{Path: filepath.Join(dir, "token.json")}
	if _, err := fs.Load(ctx); !errors.Is(err, client.ErrNoToken) {
		t.Fatalf("empty: %v", err)
	}
	want := &client.Token{AccessToken: "at", TokenType: "DPoP", RefreshToken: "rt", Scope: "read",
		Expiry: time.Unix(1_800_000_600, 0).UTC(), RefreshAt: time.Unix(1_800_000_450, 0).UTC()}
	for i := 0; i < 3; i++ {
		if err := fs.Save(ctx, want); err != nil {
			t.Fatal(err)
		}
	}
	info, err := os.Stat(fs.Path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("mode %#o, want 0600", info.Mode().Perm())
	}
	got, err := fs.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *want {
		t.Fatalf("loaded %+v", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("%d files in the directory: temporary files left behind", len(entries))
	}
	// Readable by others: refused, with a message that says why and never the token.
	if err := os.Chmod(fs.Path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = fs.Load(ctx)
	if err == nil || !strings.Contains(err.Error(), "chmod 600") || strings.Contains(err.Error(), `"rt"`) {
		t.Fatalf("error %v", err)
	}
	// Not JSON: the error does not quote the file.
	if err := os.WriteFile(fs.Path, []byte("secret-token-text"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Load(ctx); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("error %v", err)
	}
}

func TestFileStoreReplacesAtomically(t *testing.T) {
	// Save goes through a rename: a reader holding the old file sees the old token in
	// full, and the path shows the new one in full.
	ctx := context.Background()
	fs := &client.FileStore{Path: filepath.Join(t.TempDir(), "token.json")}
	_ = fs.Save(ctx, &client.Token{AccessToken: "one", TokenType: "Bearer"})
	old, err := os.Open(fs.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	_ = fs.Save(ctx, &client.Token{AccessToken: "two", TokenType: "Bearer"})
	var tok client.Token
	if err := json.NewDecoder(old).Decode(&tok); err != nil || tok.AccessToken != "one" {
		t.Fatalf("old file: %v %q", err, tok.AccessToken)
	}
	if got, _ := fs.Load(ctx); got.AccessToken != "two" {
		t.Fatalf("new file: %q", got.AccessToken)
	}
}
