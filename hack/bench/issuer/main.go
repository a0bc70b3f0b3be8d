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

// Command issuer is the local OIDC issuer stub of the load benchmark (hack/bench/load.sh).
// Benchmarking only. At start it generates one ES256 key (internal/jwks.Generate) and
// writes into -out:
//
//	tokens.txt       -n valid ES256 access tokens, one a line
//	bad-tokens.txt   tokens every verifier must refuse (wrong key, bad signature, expired,
//	                 wrong audience, wrong issuer)
//	jwks.json        the public JWK Set
//	bundle/          a Keyward verifier bundle in the kubelet's ConfigMap volume layout:
//	                 bundle/bundle.json -> ..data/bundle.json, ..data -> ..<timestamp>/
//	issuer.txt       the issuer URL
//
// then serves /.well-known/openid-configuration and /jwks on -addr (loopback only) for
// oauth2-proxy.
package main

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/keyward-dev/keyward/internal/bundle"
	"github.com/keyward-dev/keyward/internal/jwks"
)

func main() {
	addr := flag.String("addr", "", "listen address, 127.0.0.1:PORT (required; the issuer URL is http://ADDR)")
	out := flag.String("out", "", "output directory (required)")
	n := flag.Int("n", 1000, "number of valid tokens to write")
	audience := flag.String("audience", "keyward-bench", "aud of the tokens and the bundle policy")
	flag.Parse()
	if *addr == "" || *out == "" || *n < 1 {
		flag.Usage()
		os.Exit(2)
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil || !strings.HasPrefix(host, "127.") {
		log.Fatalf("issuer: -addr %q must be 127.x.x.x:PORT", *addr)
	}
	issuer := "http://" + *addr

	key, err := jwks.Generate(jwks.AlgES256, 0)
	must(err)
	kid, _ := key.KeyID()
	priv := ecPrivate(key)
	set, err := jwks.PublicSetJSON([]jwk.Key{key})
	must(err)

	now := time.Now().Unix()
	far := now + 10*365*24*3600 // "far in the future"
	tok := func(k *ecdsa.PrivateKey, kid, iss, aud string, i int, exp int64) string {
		return sign(k, kid, map[string]any{
			"iss": iss, "aud": aud, "sub": "user-" + strconv.Itoa(i),
			"email": "user-" + strconv.Itoa(i) + "@example.com", "email_verified": true,
			"client_id": "bench-client", "scope": "read write",
			"iat": now, "exp": exp, "jti": randomID(),
		})
	}
	must(os.MkdirAll(*out, 0o755))
	var sb strings.Builder
	for i := range *n {
		sb.WriteString(tok(priv, kid, issuer, *audience, i, far))
		sb.WriteByte('\n')
	}
	must(os.WriteFile(filepath.Join(*out, "tokens.txt"), []byte(sb.String()), 0o644))

	// Tokens every target must refuse, one a line: "<label> <token>".
	other, err := jwks.Generate(jwks.AlgES256, 0)
	must(err)
	otherPriv := ecPrivate(other)
	good := tok(priv, kid, issuer, *audience, 0, far)
	tampered := good[:len(good)-4] + flip(good[len(good)-4:])
	bad := []string{
		"wrong-key " + tok(otherPriv, kid, issuer, *audience, 0, far),
		"bad-signature " + tampered,
		"expired " + tok(priv, kid, issuer, *audience, 0, now-3600),
		"wrong-audience " + tok(priv, kid, issuer, "someone-else", 0, far),
		"wrong-issuer " + tok(priv, kid, "http://127.0.0.1:1", *audience, 0, far),
	}
	must(os.WriteFile(filepath.Join(*out, "bad-tokens.txt"), []byte(strings.Join(bad, "\n")+"\n"), 0o644))
	must(os.WriteFile(filepath.Join(*out, "jwks.json"), set, 0o644))
	must(os.WriteFile(filepath.Join(*out, "issuer.txt"), []byte(issuer+"\n"), 0o644))
	must(writeBundle(filepath.Join(*out, "bundle"), issuer, *audience, set))

	discovery, err := json.Marshal(map[string]any{
		"issuer":                                issuer,
		"jwks_uri":                              issuer + "/jwks",
		"authorization_endpoint":                issuer + "/authorize",
		"token_endpoint":                        issuer + "/token",
		"userinfo_endpoint":                     issuer + "/userinfo",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
		"scopes_supported":                      []string{"openid", "email", "profile"},
		"claims_supported":                      []string{"sub", "iss", "aud", "exp", "iat", "email", "email_verified"},
	})
	must(err)
	mux := http.NewServeMux()
	serveJSON := func(b []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(b)
		}
	}
	mux.Handle("GET /.well-known/openid-configuration", serveJSON(discovery))
	mux.Handle("GET /jwks", serveJSON(set))
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("issuer %s: kid %s, %d tokens in %s", issuer, kid, *n, *out)
	log.Fatal(srv.ListenAndServe())
}

// writeBundle writes the bundle document in the kubelet's atomic ConfigMap layout, as
// `verifier serve --bundle-dir DIR` reads it.
func writeBundle(dir, issuer, audience string, set []byte) error {
	content, hash, err := bundle.EncodeContent(bundle.Content{
		Policy: bundle.Policy{
			Namespace:             "bench",
			Name:                  "api",
			Issuer:                issuer,
			Audiences:             []string{audience},
			Algorithms:            []string{jwks.AlgES256},
			LeewaySeconds:         30,
			AccessTokenType:       "at+jwt",
			AccessTokenTTLSeconds: 600,
			Binding:               bundle.Binding{Mode: "None"},
			TokenSources:          []bundle.TokenSource{{Type: "AuthorizationHeader"}},
		},
		JWKS: set,
	})
	if err != nil {
		return err
	}
	doc, err := bundle.Encode(1, content, hash)
	if err != nil {
		return err
	}
	if _, err := bundle.Decode(doc); err != nil {
		return fmt.Errorf("the bench bundle does not decode: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	ts := "..2026_01_01_00_00_00.000000001"
	if err := os.MkdirAll(filepath.Join(dir, ts), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ts, bundle.DataKey), doc, 0o644); err != nil {
		return err
	}
	if err := os.Symlink(ts, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	return os.Symlink(filepath.Join("..data", bundle.DataKey), filepath.Join(dir, bundle.DataKey))
}

func ecPrivate(k jwk.Key) *ecdsa.PrivateKey {
	var raw any
	must(jwk.Export(k, &raw))
	priv, ok := raw.(*ecdsa.PrivateKey)
	if !ok {
		log.Fatalf("issuer: generated key is %T, not *ecdsa.PrivateKey", raw)
	}
	return priv
}

var b64 = base64.RawURLEncoding

// sign returns a compact ES256 JWS (header alg, kid, typ at+jwt) of claims.
func sign(k *ecdsa.PrivateKey, kid string, claims map[string]any) string {
	hdr, err := json.Marshal(map[string]string{"alg": "ES256", "kid": kid, "typ": "at+jwt"})
	must(err)
	payload, err := json.Marshal(claims)
	must(err)
	input := b64.EncodeToString(hdr) + "." + b64.EncodeToString(payload)
	digest := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
	must(err)
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64.EncodeToString(sig)
}

// flip changes the base64url characters of a signature tail so the signature is wrong
// but still canonical base64url of the right length.
func flip(tail string) string {
	b := []byte(tail)
	for i := range len(b) - 1 { // keep the last character: its low bits must stay zero
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
	}
	return string(b)
}

func randomID() string {
	v, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 96))
	must(err)
	return v.Text(36)
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
