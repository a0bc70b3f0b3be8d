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

package mint

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/keyward-dev/keyward/internal/jwks"
	"github.com/keyward-dev/keyward/internal/rotation"
	"github.com/keyward-dev/keyward/internal/verify"
)

func secretData(t *testing.T, keys []jwk.Key, states ...rotation.State) map[string][]byte {
	t.Helper()
	priv, err := jwks.PrivateSetJSON(keys)
	if err != nil {
		t.Fatal(err)
	}
	var recs []rotation.Key
	for i, k := range keys {
		kid, _ := k.KeyID()
		recs = append(recs, rotation.Key{KID: kid, State: states[i]})
	}
	state, err := json.Marshal(map[string]any{"keys": recs})
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{SecretKeysKey: priv, SecretStateKey: state}
}

func TestSignEveryAlgorithm(t *testing.T) {
	for _, alg := range jwks.Algorithms() {
		t.Run(alg, func(t *testing.T) {
			bits := 0
			if alg == jwks.AlgRS256 || alg == jwks.AlgPS256 {
				bits = 2048
			}
			retired, err := jwks.Generate(alg, bits)
			if err != nil {
				t.Fatal(err)
			}
			active, err := jwks.Generate(alg, bits)
			if err != nil {
				t.Fatal(err)
			}
			s, err := FromSecret(secretData(t, []jwk.Key{retired, active}, rotation.StateRetired, rotation.StateActive))
			if err != nil {
				t.Fatal(err)
			}
			if kid, _ := active.KeyID(); s.KID() != kid || s.Algorithm() != alg {
				t.Fatalf("signer %s/%s, want the active key %s/%s", s.KID(), s.Algorithm(), kid, alg)
			}
			tok, err := s.Sign(map[string]any{"sub": "alice"}, "at+jwt")
			if err != nil {
				t.Fatal(err)
			}
			pub, err := jwk.PublicKeyOf(active)
			if err != nil {
				t.Fatal(err)
			}
			ks, err := verify.NewKeySet([]jwk.Key{pub})
			if err != nil {
				t.Fatal(err)
			}
			hdr, payload, err := verify.VerifyJWS(tok, ks, []string{alg})
			if err != nil {
				t.Fatalf("the verifier refused the minted token: %v", err)
			}
			if hdr.Typ != "at+jwt" || string(payload) != `{"sub":"alice"}` {
				t.Fatalf("header %+v payload %s", hdr, payload)
			}
			// The other key's verifier set must not accept it.
			otherPub, _ := jwk.PublicKeyOf(retired)
			other, _ := verify.NewKeySet([]jwk.Key{otherPub})
			if _, _, err := verify.VerifyJWS(tok, other, []string{alg}); err == nil {
				t.Fatal("a token verified under another key")
			}
		})
	}
}

func TestFromSecretErrors(t *testing.T) {
	k, err := jwks.Generate(jwks.AlgES256, 0)
	if err != nil {
		t.Fatal(err)
	}
	pending := secretData(t, []jwk.Key{k}, rotation.StatePending)
	missing := secretData(t, []jwk.Key{k}, rotation.StateActive)
	missing[SecretStateKey] = []byte(`{"keys":[{"kid":"not-there","state":"Active"}]}`)
	pub, _ := jwk.PublicKeyOf(k)
	publicOnly := secretData(t, []jwk.Key{k}, rotation.StateActive)
	publicOnly[SecretKeysKey], _ = jwks.PublicSetJSON([]jwk.Key{pub})
	tests := []struct {
		name    string
		data    map[string][]byte
		wantErr string
	}{
		{"empty", map[string][]byte{}, "state.json"},
		{"garbage state", map[string][]byte{SecretStateKey: []byte("{")}, "state.json"},
		{"no active key", pending, "no active key"},
		{"active key missing", missing, "not in jwks.json"},
		{"public keys only", publicOnly, "jwks.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromSecret(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}
