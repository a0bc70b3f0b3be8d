package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Shared fixtures of the bundle tests.

// testNow is the fixed "current time" of the fixtures (2026-05-28T20:26:40Z).
const testNow = 1780000000

// Kids of the fixed public keys in testdata/jwks.json (two ES256 keys and one EdDSA key,
// generated once with jwks.Generate and jwks.PublicSetJSON; never regenerate them, the
// golden file depends on them).
const (
	testKidES256a = "ZzAu6ylLj6t4vcKP36cnnkl-QCowIGK-ctN9abmGSOQ"
	testKidES256b = "Vi0IWKSTInJYnFmdsMRBxrmZCIDAp671ASDKd8gckUs"
	testKidEdDSA  = "uGEF44pSoUB_oDXAYrGBc-UXzHrcJEBqGGLxoHCMf70"
)

// fixedJWKS returns testdata/jwks.json without its trailing newline.
func fixedJWKS(tb testing.TB) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "jwks.json"))
	if err != nil {
		tb.Fatal(err)
	}
	return bytes.TrimRight(b, "\n")
}

// fullPolicy is a policy with every field set.
func fullPolicy() Policy {
	return Policy{
		Namespace:             "payments",
		Name:                  "payments-api",
		Issuer:                "https://auth.example.com",
		Audiences:             []string{"payments-api", "payments-admin"},
		Algorithms:            []string{"ES256", "EdDSA"},
		LeewaySeconds:         30,
		AccessTokenType:       "at+jwt",
		AccessTokenTTLSeconds: 600,
		SigningKeyID:          testKidES256a,
		Binding:               Binding{Mode: "DPoP", Required: true},
		Routes: []Route{
			{Path: "/healthz", Anonymous: true},
			{Path: "/v1/payments/*", Methods: []string{"GET", "HEAD"}, Scopes: []string{"payments:read"}},
			{Path: "/v1/payments", Methods: []string{"POST"}, Scopes: []string{"payments:read", "payments:write"}},
		},
		ForwardClaims: []ClaimHeader{{Claim: "sub", Header: "X-User"}, {Claim: "client_id", Header: "X-Client-Id"}},
		TokenSources:  []TokenSource{{Type: "AuthorizationHeader"}, {Type: "Cookie", Name: "session"}},
		ForwardToken:  true,
	}
}

// allKinds is one or two revocations of every kind, already in normal form.
func allKinds() Revocations {
	return Revocations{
		JTI: []Revoked{
			{Value: "0b6f8f7e-3c1a-4d8e-9a55-2f0c1e7d9b11", Expires: testNow + 630},
			{Value: "9d1c2b3a-4e5f-4a6b-8c7d-0e1f2a3b4c5d", Expires: testNow + 500},
		},
		Subject:  []Revoked{{Value: "alice", IssuedBefore: testNow - 60, Expires: testNow - 60 + 720*3600 + 30}},
		Session:  []Revoked{{Value: "s-7f3e", Expires: testNow + 720*3600 + 30}},
		KeyID:    []Revoked{{Value: "hC8BM3O5HWa5NQhyhGmbJNUr-NmsD6dJWodKR9mkPtw", Expires: testNow + 630}},
		ClientID: []Revoked{{Value: "billing-batch", IssuedBefore: testNow - 3600, Expires: testNow - 3600 + 720*3600 + 30}},
	}
}

// fixedContent is the content of the golden file.
func fixedContent(tb testing.TB) Content {
	return Content{Policy: fullPolicy(), JWKS: fixedJWKS(tb), Revocations: allKinds()}
}

// mustEncode renders c as a complete document.
func mustEncode(tb testing.TB, generation int64, c Content) []byte {
	tb.Helper()
	raw, hash, err := EncodeContent(c)
	if err != nil {
		tb.Fatal(err)
	}
	doc, err := Encode(generation, raw, hash)
	if err != nil {
		tb.Fatal(err)
	}
	return doc
}

// wrap builds an envelope around arbitrary content bytes with a correct hash, so that a
// test reaches the checks behind the hash check.
func wrap(generation int64, content string) []byte {
	sum := sha256.Sum256([]byte(content))
	return []byte(`{"format":"` + Format + `","generation":` + strconv.FormatInt(generation, 10) +
		`,"hash":"sha256:` + hex.EncodeToString(sum[:]) + `","content":` + content + `}`)
}

// uuids returns n distinct, realistic random (version 4) UUIDs, 36 characters each,
// from a fixed seed.
func uuids(n int) []string {
	r := rand.New(rand.NewPCG(1, 2))
	seen := make(map[string]bool, n)
	out := make([]string, 0, n)
	for len(out) < n {
		var b [16]byte
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		b[6] = b[6]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		s := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// jtiContent is the fixed content with n jti revocations of realistic UUIDs, each
// expiring an access-token lifetime (600 s + 30 s leeway) after a time near testNow.
func jtiContent(tb testing.TB, n int) Content {
	c := fixedContent(tb)
	c.Revocations = Revocations{JTI: make([]Revoked, 0, n)}
	for i, id := range uuids(n) {
		c.Revocations.JTI = append(c.Revocations.JTI, Revoked{Value: id, Expires: testNow + 630 + int64(i%600)})
	}
	return c
}
