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
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/lestrrat-go/jwx/v3/jwk"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward-dev/keyward/api/v1alpha1"
	"github.com/keyward-dev/keyward/internal/bundle"
	"github.com/keyward-dev/keyward/internal/issuer/store"
	"github.com/keyward-dev/keyward/internal/jwks"
	"github.com/keyward-dev/keyward/internal/mint"
	"github.com/keyward-dev/keyward/internal/rotation"
)

// BenchmarkRefreshGrant is the full HTTP round trip of a refresh grant through the token
// service (httptest, keep-alive): form parsing, store lookup, signing an ES256 access
// token, sealing the replay record, the atomic rotation and the JSON response. Every
// goroutine refreshes its own session in a chain (each response's refresh token is the
// next request's). It needs no API server: the policy is compiled from objects made
// here exactly as the controllers make them. Reports p50/p99 latency besides ns/op.
//
//	go test ./internal/issuer -run '^$' -bench RefreshGrant -benchtime 5s [-cpu 1,2,4]
//	KEYWARD_PG_DSN=$(hack/postgres.sh dsn) go test … (adds the PostgreSQL store)
func BenchmarkRefreshGrant(b *testing.B) {
	for _, kind := range storeKinds() {
		b.Run(kind, func(b *testing.B) { benchRefresh(b, kind) })
	}
}

func benchRefresh(b *testing.B, kind string) {
	st := newStore(b, kind)
	clk := clock.RealClock{}
	srv, p := offlineServer(b, st, clk)
	hs := httptest.NewServer(srv)
	b.Cleanup(hs.Close)
	tr := hs.Client().Transport.(*http.Transport)
	tr.MaxIdleConnsPerHost = 256
	endpoint := hs.URL + p.prefix + pathToken

	var mu sync.Mutex
	var latencies []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rt := newRefreshToken()
		now := clk.Now()
		fam := store.Family{ID: newFamilyID(), Policy: p.key, Subject: "bench", ClientID: "bench", Scope: "read",
			CreatedAt: now, ExpiresAt: now.Add(time.Hour), LastUsedAt: now}
		if err := st.CreateFamily(context.Background(), fam, store.HashToken(rt)); err != nil {
			b.Error(err)
			return
		}
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			start := clk.Now()
			res, err := hs.Client().Post(endpoint, "application/x-www-form-urlencoded",
				strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode()))
			if err != nil {
				b.Error(err)
				return
			}
			var tok tokenResponse
			err = json.NewDecoder(res.Body).Decode(&tok)
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if err != nil || res.StatusCode != http.StatusOK || tok.RefreshToken == "" {
				b.Errorf("refresh: %d %v", res.StatusCode, err)
				return
			}
			local = append(local, clk.Since(start))
			rt = tok.RefreshToken
		}
		mu.Lock()
		latencies = append(latencies, local...)
		mu.Unlock()
	})
	b.StopTimer()
	if len(latencies) > 0 {
		slices.Sort(latencies)
		b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds()), "p99-µs")
	}
}

// offlineServer is a Server serving one policy compiled from a SigningKey Secret, a JWKS
// ConfigMap and a bundle made here (no API server; nothing in it creates RevocationEntries).
func offlineServer(tb testing.TB, st store.Store, clk clock.PassiveClock) (*Server, *policyState) {
	tb.Helper()
	key, err := jwks.Generate(jwks.AlgES256, 0)
	if err != nil {
		tb.Fatal(err)
	}
	kid, _ := key.KeyID()
	priv, err := jwks.PrivateSetJSON([]jwk.Key{key})
	if err != nil {
		tb.Fatal(err)
	}
	state, _ := json.Marshal(map[string]any{"keys": []rotation.Key{{KID: kid, State: rotation.StateActive, PublishedAt: clk.Now()}}})
	pub, err := jwk.PublicKeyOf(key)
	if err != nil {
		tb.Fatal(err)
	}
	pubSet, err := jwks.PublicSetJSON([]jwk.Key{pub})
	if err != nil {
		tb.Fatal(err)
	}
	tp := &v1alpha1.TokenPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "bench"},
		Spec: v1alpha1.TokenPolicySpec{
			Issuer: "https://auth.example/bench", Audiences: []string{"api"}, SigningKeys: []string{"keys"},
			RefreshToken: v1alpha1.RefreshTokenSpec{TTL: metav1.Duration{Duration: 720 * time.Hour}, IdleTimeout: metav1.Duration{Duration: 24 * time.Hour},
				ReuseInterval: metav1.Duration{Duration: 2 * time.Second}},
			Issuance: &v1alpha1.IssuanceSpec{Scopes: []string{"read"}},
		},
	}
	content, hash, err := bundle.EncodeContent(bundle.Content{
		Policy: bundle.Policy{Namespace: "bench", Name: "api", Issuer: tp.Spec.Issuer, Audiences: []string{"api"}, Algorithms: []string{"ES256"},
			LeewaySeconds: 30, AccessTokenType: "at+jwt", AccessTokenTTLSeconds: 600, SigningKeyID: kid,
			Binding: bundle.Binding{Mode: "None"}, TokenSources: []bundle.TokenSource{{Type: "AuthorizationHeader"}}},
		JWKS: pubSet,
	})
	if err != nil {
		tb.Fatal(err)
	}
	doc, err := bundle.Encode(1, content, hash)
	if err != nil {
		tb.Fatal(err)
	}
	p, _, err := compilePolicy(policyInputs{
		Policy:     tp,
		KeysSecret: &corev1.Secret{Data: map[string][]byte{mint.SecretKeysKey: priv, mint.SecretStateKey: state}},
		JWKS:       map[string]*corev1.ConfigMap{"keys": {Data: map[string]string{jwksDataKey: string(pubSet)}}},
		Bundle:     &corev1.ConfigMap{Data: map[string]string{bundle.DataKey: string(doc)}},
	}, nil, clk)
	if err != nil || p.notReady != "" {
		tb.Fatalf("compiling the policy: %v %s", err, p.notReady)
	}
	// A client for an address where nothing listens: this server never needs the API.
	c, err := client.New(&rest.Config{Host: "https://127.0.0.1:1"}, client.Options{Scheme: scheme})
	if err != nil {
		tb.Fatal(err)
	}
	sealer, err := NewSealer([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := New(Config{Store: st, Sealer: sealer, Reviewer: &TokenReviewer{}, Client: c, Clock: clk,
		Audit: NewAuditor(io.Discard, nil), Log: logr.Discard()})
	if err != nil {
		tb.Fatal(err)
	}
	srv.registry.set(p)
	return srv, p
}
