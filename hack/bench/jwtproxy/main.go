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

// Command jwtproxy is the "minimal Go reverse proxy" baseline of the load benchmark
// (hack/bench/load.sh): it verifies the Bearer token of every request with
// github.com/golang-jwt/jwt/v5 (ES256 only, the key found by kid in a JWK Set file; exp
// required, iss, aud and typ at+jwt checked, 30 s leeway), then proxies to the upstream
// with httputil.ReverseProxy and the same upstream transport tuning as the Keyward
// sidecar. No cache, no revocation, no metrics, no audit. Benchmarking only.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

type jwkEC struct {
	Kty, Crv, X, Y, Kid, Alg string
}

func loadKeys(path string) (map[string]*ecdsa.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var set struct{ Keys []jwkEC }
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, err
	}
	keys := map[string]*ecdsa.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "EC" || k.Crv != "P-256" || k.Alg != "ES256" {
			continue
		}
		x, err1 := base64.RawURLEncoding.DecodeString(k.X)
		y, err2 := base64.RawURLEncoding.DecodeString(k.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return nil, errors.New("invalid EC key " + k.Kid)
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, err
		}
		keys[k.Kid] = pub
	}
	if len(keys) == 0 {
		return nil, errors.New("no ES256 key in " + path)
	}
	return keys, nil
}

func main() {
	listen := flag.String("listen", "", "listen address, 127.0.0.1:PORT (required)")
	upstream := flag.String("upstream", "", "upstream URL (required)")
	jwksFile := flag.String("jwks", "", "JWK Set file (required)")
	issuer := flag.String("issuer", "", "required iss")
	audience := flag.String("audience", "", "required aud")
	flag.Parse()
	if *listen == "" || *upstream == "" || *jwksFile == "" || *issuer == "" || *audience == "" {
		flag.Usage()
		os.Exit(2)
	}
	if host, _, err := net.SplitHostPort(*listen); err != nil || !strings.HasPrefix(host, "127.") {
		log.Fatalf("jwtproxy: -listen %q must be 127.x.x.x:PORT", *listen)
	}
	up, err := url.Parse(*upstream)
	if err != nil {
		log.Fatal(err)
	}
	keys, err := loadKeys(*jwksFile)
	if err != nil {
		log.Fatal(err)
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{"ES256"}),
		jwt.WithIssuer(*issuer),
		jwt.WithAudience(*audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(30*time.Second),
	)
	keyFunc := func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); !strings.EqualFold(typ, "at+jwt") {
			return nil, errors.New("typ is not at+jwt")
		}
		kid, _ := t.Header["kid"].(string)
		if k, ok := keys[kid]; ok {
			return k, nil
		}
		return nil, errors.New("unknown kid")
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = 1024
	transport.MaxIdleConnsPerHost = 1024
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			pr.Out.Header.Del("Authorization")
		},
		Transport: transport,
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || raw == "" {
			w.Header().Set("WWW-Authenticate", `Bearer`)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		claims := jwt.RegisteredClaims{}
		if _, err := parser.ParseWithClaims(raw, &claims, keyFunc); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		r.Header.Set("X-Subject", claims.Subject)
		proxy.ServeHTTP(w, r)
	})
	srv := &http.Server{Addr: *listen, Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
