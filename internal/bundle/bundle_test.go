package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/keyward-dev/keyward/internal/jwks"
)

var update = flag.Bool("update", false, "rewrite testdata/bundle.golden.json from the fixed content")

// generatedJWKS renders two new ES256 keys and one new EdDSA key as a public JWK Set.
func generatedJWKS(t *testing.T) ([]byte, []string) {
	t.Helper()
	var keys []jwk.Key
	var kids []string
	for _, alg := range []string{jwks.AlgES256, jwks.AlgES256, jwks.AlgEdDSA} {
		k, err := jwks.Generate(alg, 0)
		if err != nil {
			t.Fatal(err)
		}
		kid, _ := k.KeyID()
		keys, kids = append(keys, k), append(kids, kid)
	}
	doc, err := jwks.PublicSetJSON(keys)
	if err != nil {
		t.Fatal(err)
	}
	return doc, kids
}

// cloneRevocations deep-copies r, so a test can keep an untouched original.
func cloneRevocations(r Revocations) Revocations {
	return Revocations{
		JTI: slices.Clone(r.JTI), Subject: slices.Clone(r.Subject), Session: slices.Clone(r.Session),
		KeyID: slices.Clone(r.KeyID), ClientID: slices.Clone(r.ClientID),
	}
}

func TestRoundTrip(t *testing.T) {
	set, kids := generatedJWKS(t)
	policy := fullPolicy()
	policy.SigningKeyID = kids[0]
	in := Content{Policy: policy, JWKS: set, Revocations: allKinds()}
	// Every Policy field is set, so a field added later without a test value fails here.
	v := reflect.ValueOf(in.Policy)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("fullPolicy leaves %s unset", v.Type().Field(i).Name)
		}
	}
	for _, tc := range []struct {
		name string
		gen  int64
	}{{"first generation", 1}, {"later generation", 42}, {"huge generation", 1<<53 + 1}} {
		t.Run(tc.name, func(t *testing.T) {
			raw, hash, err := EncodeContent(in)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(raw)
			if want := "sha256:" + hex.EncodeToString(sum[:]); hash != want {
				t.Fatalf("EncodeContent hash %s, want %s", hash, want)
			}
			doc, err := Encode(tc.gen, raw, hash)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(doc, raw) {
				t.Fatal("the document does not hold the content bytes verbatim")
			}
			b, err := Decode(doc)
			if err != nil {
				t.Fatalf("Decode: %v\n%s", err, doc)
			}
			if b.Generation != tc.gen || b.Hash != hash {
				t.Errorf("generation %d hash %s, want %d %s", b.Generation, b.Hash, tc.gen, hash)
			}
			if !reflect.DeepEqual(b.Content, in) {
				t.Errorf("content changed in the round trip:\n got %+v\nwant %+v", b.Content, in)
			}
			if !bytes.Equal(b.Content.JWKS, set) {
				t.Errorf("JWKS bytes changed:\n got %s\nwant %s", b.Content.JWKS, set)
			}
			if len(b.Keys) != len(kids) {
				t.Fatalf("%d keys parsed, want %d", len(b.Keys), len(kids))
			}
			for i, k := range b.Keys {
				kid, _ := k.KeyID()
				alg, _ := k.Algorithm()
				if kid != kids[i] || alg.String() != []string{"ES256", "ES256", "EdDSA"}[i] {
					t.Errorf("key %d is %s/%s, want %s", i, kid, alg, kids[i])
				}
				if _, err := jwk.PublicKeyOf(k); err != nil {
					t.Errorf("key %d: %v", i, err)
				}
			}
		})
	}
}

func TestEncodeContentDoesNotModifyItsInput(t *testing.T) {
	c := fixedContent(t)
	c.Revocations.JTI = []Revoked{{Value: "b", Expires: 2}, {Value: "a", Expires: 1}, {Value: "b", Expires: 3}}
	before := cloneRevocations(c.Revocations)
	if _, _, err := EncodeContent(c); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Revocations, before) {
		t.Fatalf("EncodeContent changed the caller's revocations: %+v, was %+v", c.Revocations, before)
	}
}

func TestDeterministic(t *testing.T) {
	base := fixedContent(t)
	want, wantHash, err := EncodeContent(base)
	if err != nil {
		t.Fatal(err)
	}
	reversed := func(l []Revoked) []Revoked { l = slices.Clone(l); slices.Reverse(l); return l }
	r := allKinds()
	for _, tc := range []struct {
		name string
		revs Revocations
	}{
		{"same order", allKinds()},
		{"reversed", Revocations{JTI: reversed(r.JTI), Subject: reversed(r.Subject), Session: reversed(r.Session), KeyID: reversed(r.KeyID), ClientID: reversed(r.ClientID)}},
		{"duplicated", Revocations{
			JTI:      append(append(slices.Clone(r.JTI), r.JTI...), r.JTI[1]),
			Subject:  append(slices.Clone(r.Subject), r.Subject...),
			Session:  append(slices.Clone(r.Session), r.Session...),
			KeyID:    append(slices.Clone(r.KeyID), r.KeyID...),
			ClientID: append(slices.Clone(r.ClientID), r.ClientID...),
		}},
		// Duplicates that the merge rules absorb: a narrower IssuedBefore, an earlier expiry.
		{"duplicated with weaker copies", Revocations{
			JTI:      append(reversed(r.JTI), Revoked{Value: r.JTI[0].Value, Expires: r.JTI[0].Expires - 100}),
			Subject:  append(slices.Clone(r.Subject), Revoked{Value: "alice", IssuedBefore: r.Subject[0].IssuedBefore - 1, Expires: 1}),
			Session:  append(slices.Clone(r.Session), Revoked{Value: r.Session[0].Value, Expires: 1}),
			KeyID:    append([]Revoked{{Value: r.KeyID[0].Value, Expires: 1}}, r.KeyID...),
			ClientID: append(slices.Clone(r.ClientID), r.ClientID...),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			c.Revocations = tc.revs
			got, hash, err := EncodeContent(c)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) || hash != wantHash {
				t.Fatalf("encoding differs:\n got %s\nwant %s", got, want)
			}
			// And twice in a row (EncodeContent must not depend on earlier calls).
			again, _, _ := EncodeContent(c)
			if !bytes.Equal(again, want) {
				t.Fatal("second encoding differs")
			}
		})
	}
}

func TestNormalizeMerge(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []Revoked
		want []Revoked
	}{
		{"empty", []Revoked{}, nil},
		{"nil", nil, nil},
		{"sorted by value", []Revoked{{Value: "c", Expires: 1}, {Value: "a", Expires: 2}, {Value: "b", Expires: 3}},
			[]Revoked{{Value: "a", Expires: 2}, {Value: "b", Expires: 3}, {Value: "c", Expires: 1}}},
		{"byte order, not locale order", []Revoked{{Value: "b", Expires: 1}, {Value: "B", Expires: 1}, {Value: "é", Expires: 1}, {Value: "a", Expires: 1}},
			[]Revoked{{Value: "B", Expires: 1}, {Value: "a", Expires: 1}, {Value: "b", Expires: 1}, {Value: "é", Expires: 1}}},
		{"latest expiry wins", []Revoked{{Value: "a", Expires: 5}, {Value: "a", Expires: 9}, {Value: "a", Expires: 7}},
			[]Revoked{{Value: "a", Expires: 9}}},
		{"widest issuedBefore wins", []Revoked{{Value: "a", IssuedBefore: 100, Expires: 5}, {Value: "a", IssuedBefore: 300, Expires: 5}, {Value: "a", IssuedBefore: 200, Expires: 5}},
			[]Revoked{{Value: "a", IssuedBefore: 300, Expires: 5}}},
		{"issuedBefore and expiry merge independently", []Revoked{{Value: "a", IssuedBefore: 300, Expires: 10}, {Value: "a", IssuedBefore: 100, Expires: 20}},
			[]Revoked{{Value: "a", IssuedBefore: 300, Expires: 20}}},
		{"issuedBefore 0 (all tokens) wins when first", []Revoked{{Value: "a", Expires: 5}, {Value: "a", IssuedBefore: 300, Expires: 6}},
			[]Revoked{{Value: "a", Expires: 6}}},
		{"issuedBefore 0 (all tokens) wins when last", []Revoked{{Value: "a", IssuedBefore: 300, Expires: 6}, {Value: "a", IssuedBefore: 400, Expires: 5}, {Value: "a", Expires: 5}},
			[]Revoked{{Value: "a", Expires: 6}}},
		{"issuedBefore 0 wins in the middle", []Revoked{{Value: "a", IssuedBefore: 300, Expires: 6}, {Value: "a", Expires: 5}, {Value: "a", IssuedBefore: 400, Expires: 7}},
			[]Revoked{{Value: "a", Expires: 7}}},
		{"values kept apart", []Revoked{{Value: "b", IssuedBefore: 1, Expires: 1}, {Value: "a", IssuedBefore: 2, Expires: 2}, {Value: "b", IssuedBefore: 3, Expires: 3}},
			[]Revoked{{Value: "a", IssuedBefore: 2, Expires: 2}, {Value: "b", IssuedBefore: 3, Expires: 3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The same list in every kind, and in every rotation of its order.
			for rot := range max(len(tc.in), 1) {
				in := slices.Clone(tc.in)
				if len(in) > 0 {
					in = append(in[rot:], in[:rot]...)
				}
				r := Revocations{JTI: slices.Clone(in), Subject: slices.Clone(in), Session: slices.Clone(in), KeyID: slices.Clone(in), ClientID: slices.Clone(in)}
				r.Normalize()
				for _, got := range [][]Revoked{r.JTI, r.Subject, r.Session, r.KeyID, r.ClientID} {
					if !reflect.DeepEqual(got, tc.want) {
						t.Fatalf("rotation %d: got %+v, want %+v", rot, got, tc.want)
					}
				}
				if r.Len() != 5*len(tc.want) {
					t.Fatalf("Len %d, want %d", r.Len(), 5*len(tc.want))
				}
			}
		})
	}
}

func TestGolden(t *testing.T) {
	golden := filepath.Join("testdata", "bundle.golden.json")
	doc := mustEncode(t, 7, fixedContent(t))
	if *update {
		if err := os.WriteFile(golden, append(slices.Clone(doc), '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update ./internal/bundle/ to create it)", err)
	}
	want = bytes.TrimSuffix(want, []byte("\n"))
	if !bytes.Equal(doc, want) {
		t.Fatalf("the encoding changed (a wire-format change needs a new Format; if intended, run with -update and update docs/bundle-format.md):\n got %s\nwant %s", doc, want)
	}
	b, err := Decode(want)
	if err != nil {
		t.Fatal(err)
	}
	if b.Generation != 7 || len(b.Keys) != 3 || b.Content.Revocations.Len() != 6 {
		t.Fatalf("golden decodes to generation %d, %d keys, %d revocations", b.Generation, len(b.Keys), b.Content.Revocations.Len())
	}
	for i, kid := range []string{testKidES256a, testKidES256b, testKidEdDSA} {
		if got, _ := b.Keys[i].KeyID(); got != kid {
			t.Errorf("key %d is %s, want %s", i, got, kid)
		}
	}

	// The reference documentation quotes the golden document as its example.
	ref, err := os.ReadFile(filepath.Join("..", "..", "docs", "bundle-format.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(ref, want) {
		t.Error("docs/bundle-format.md does not quote testdata/bundle.golden.json verbatim; update its example")
	}
}

// TestDecodeRejects checks that Decode refuses each malformed document with a specific error.
func TestDecodeRejects(t *testing.T) {
	good := string(mustEncode(t, 3, fixedContent(t)))
	if _, err := Decode([]byte(good)); err != nil {
		t.Fatalf("the base document does not decode: %v", err)
	}
	// content is the content member of good, hash is its hash.
	content := good[strings.Index(good, `"content":`)+len(`"content":`) : len(good)-1]
	hash := good[strings.Index(good, `"sha256:`)+1 : strings.Index(good, `","content"`)]
	replaceOnce := func(t *testing.T, s, old, new string) string {
		t.Helper()
		if strings.Count(s, old) != 1 {
			t.Fatalf("%q occurs %d times", old, strings.Count(s, old))
		}
		return strings.Replace(s, old, new, 1)
	}
	// withContent re-wraps edited content bytes with a correct hash.
	withContent := func(old, new string) func(*testing.T) []byte {
		return func(t *testing.T) []byte { return wrap(3, replaceOnce(t, content, old, new)) }
	}
	// withDoc edits the document itself.
	withDoc := func(old, new string) func(*testing.T) []byte {
		return func(t *testing.T) []byte { return []byte(replaceOnce(t, good, old, new)) }
	}
	// withPolicy encodes a changed policy properly (valid hash and JSON).
	withPolicy := func(edit func(*Policy)) func(*testing.T) []byte {
		return func(t *testing.T) []byte {
			c := fixedContent(t)
			edit(&c.Policy)
			return mustEncode(t, 3, c)
		}
	}
	withJWKS := func(set func(*testing.T) []byte) func(*testing.T) []byte {
		return func(t *testing.T) []byte {
			c := fixedContent(t)
			c.JWKS = set(t)
			return mustEncode(t, 3, c)
		}
	}
	withRevocations := func(r Revocations) func(*testing.T) []byte {
		return func(t *testing.T) []byte {
			c := fixedContent(t)
			c.Revocations = r
			return mustEncode(t, 3, c)
		}
	}
	constant := func(s string) func(*testing.T) []byte { return func(*testing.T) []byte { return []byte(s) } }
	privateSet := func(t *testing.T) []byte {
		k, err := jwks.Generate(jwks.AlgES256, 0)
		if err != nil {
			t.Fatal(err)
		}
		set, err := jwks.PrivateSetJSON([]jwk.Key{k})
		if err != nil {
			t.Fatal(err)
		}
		return set
	}

	for _, tc := range []struct {
		name string
		doc  func(*testing.T) []byte
		want string
	}{
		// Size and syntax.
		{"over MaxBytes", func(*testing.T) []byte { return []byte(good + strings.Repeat(" ", MaxBytes+1-len(good))) },
			"bundle is 921601 bytes, more than the 921600 allowed"},
		{"empty", constant(""), "invalid JSON: empty document"},
		{"invalid JSON", constant(good[:len(good)/2]), "invalid JSON: unexpected end of document"},
		{"syntax error", withDoc(`"generation":3`, `"generation":3,,`), "invalid JSON: syntax error at byte offset"},
		{"invalid UTF-8", withDoc(`"payments-admin"`, "\"payments-\xff\""), "invalid JSON: not valid UTF-8"},
		{"trailing data", constant(good + `{}`), "invalid JSON: trailing data after the top-level value"},
		{"trailing bracket", constant(good + `]`), "invalid JSON"},
		{"two documents", constant(good + "\n" + good), "invalid JSON: trailing data"},
		{"not an object", constant(`[` + good + `]`), "$ must be an object"},

		// Member names.
		{"duplicate member at top level", withDoc(`"generation":3,`, `"generation":3,"generation":3,`), `$ has duplicate member "generation"`},
		{"duplicate member in content", withContent(`"revocations":{`, `"revocations":{},"revocations":{`), `$.content has duplicate member "revocations"`},
		{"duplicate member in a revocation", withContent(`"v":"alice"`, `"v":"alice","v":"bob"`), `$.content.revocations.sub[0] has duplicate member "v"`},
		{"case-variant duplicate format/FORMAT", withDoc(`"generation":3,`, `"generation":3,"FORMAT":"x",`), `$ has member "FORMAT", not "format": member names are case-sensitive`},
		{"case-variant duplicate in content", withContent(`"revocations":{`, `"REVOCATIONS":{},"revocations":{`), `$.content has member "REVOCATIONS", not "revocations"`},
		{"case variant alone at top level", withDoc(`"format"`, `"Format"`), `$ has member "Format", not "format"`},
		{"case variant alone in policy", withContent(`"issuer"`, `"Issuer"`), `$.content.policy has member "Issuer", not "issuer"`},
		{"unicode case variant (long s)", withContent(`"sub":[`, `"ſub":[`), `$.content.revocations has member "ſub", not "sub"`},
		{"unknown member at top level", withDoc(`"generation":3,`, `"generation":3,"signature":"x",`), `$ has unknown member "signature"`},
		{"unknown member in policy", withContent(`"issuer":`, `"issuerURL":"x","issuer":`), `$.content.policy has unknown member "issuerURL"`},
		{"unknown member in binding", withContent(`"mode":"DPoP"`, `"mode":"DPoP","nonce":true`), `$.content.policy.binding has unknown member "nonce"`},
		{"unknown member in a route", withContent(`"path":"/healthz"`, `"path":"/healthz","prefix":true`), `$.content.policy.routes[0] has unknown member "prefix"`},
		{"unknown revocation kind", withContent(`"revocations":{`, `"revocations":{"iss":[],`), `$.content.revocations has unknown member "iss"`},
		{"escaped member name is the name", withDoc(`"format"`, `"\u0066ormat"`), ""},

		// Envelope.
		{"wrong format", withDoc(`"format":"keyward.dev/bundle/v1"`, `"format":"keyward.dev/bundle/v2"`), `bundle format "keyward.dev/bundle/v2" is not "keyward.dev/bundle/v1"`},
		{"format not a string", withDoc(`"format":"keyward.dev/bundle/v1"`, `"format":1`), `bundle: member "format": json: cannot unmarshal number`},
		{"missing format", withDoc(`"format":"keyward.dev/bundle/v1",`, ``), `$ lacks required member "format"`},
		{"generation 0", withDoc(`"generation":3`, `"generation":0`), "bundle generation 0 is not positive"},
		{"generation negative", withDoc(`"generation":3`, `"generation":-1`), "bundle generation -1 is not positive"},
		{"generation fractional", withDoc(`"generation":3`, `"generation":3.5`), `bundle: member "generation": json: cannot unmarshal number 3.5`},
		{"generation a string", withDoc(`"generation":3`, `"generation":"3"`), `bundle: member "generation": json: cannot unmarshal string`},
		{"generation null", withDoc(`"generation":3`, `"generation":null`), "$.generation is null"},
		{"missing generation", withDoc(`"generation":3,`, ``), `$ lacks required member "generation"`},
		{"missing content", withDoc(`,"content":`+content, ``), `$ lacks required member "content"`},
		{"content null", withDoc(`"content":`+content, `"content":null`), "$.content is null"},
		{"content not an object", withDoc(`"content":`+content, `"content":"x"`), "$.content must be an object"},
		{"missing hash", withDoc(`"hash":"`+hash+`",`, ``), `$ lacks required member "hash"`},
		{"hash mismatch (one content byte flipped)", withDoc(`"issuer":"https://auth.example.com"`, `"issuer":"https://auth.example.org"`), "bundle hash does not match its content"},
		{"hash mismatch (whitespace added to content)", withDoc(`"content":{`, `"content":{ `), "bundle hash does not match its content"},
		{"hash in upper case", withDoc(hash, strings.ToUpper(hash[:7])+strings.ToUpper(hash[7:])), "bundle hash does not match its content"},
		{"hash hex in upper case", withDoc(hash, hash[:7]+strings.ToUpper(hash[7:])), "bundle hash does not match its content"},
		{"hash without prefix", withDoc(hash, hash[7:]), "bundle hash does not match its content"},
		{"hash of another algorithm", withDoc(hash, "sha512:"+hash[7:]), "bundle hash does not match its content"},
		{"hash base64", withDoc(hash, "sha256:47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"), "bundle hash does not match its content"},
		{"empty hash", withDoc(hash, ""), "bundle hash does not match its content"},

		// Content structure.
		{"missing policy", withContent(`"policy":{`, `"x":{`), `$.content has unknown member "x"`},
		{"missing revocations", func(t *testing.T) []byte {
			i := strings.Index(content, `,"revocations":`)
			return wrap(3, content[:i]+"}")
		}, `$.content lacks required member "revocations"`},
		{"missing jwks", func(t *testing.T) []byte {
			i, j := strings.Index(content, `"jwks":`), strings.Index(content, `,"revocations":`)
			return wrap(3, content[:i-1]+content[j:])
		}, `$.content lacks required member "jwks"`},
		{"missing required policy member", withContent(`"leewaySeconds":30,`, ``), `$.content.policy lacks required member "leewaySeconds"`},
		{"null policy member", withContent(`"leewaySeconds":30`, `"leewaySeconds":null`), "$.content.policy.leewaySeconds is null"},
		{"null in a list", withContent(`"methods":["GET"`, `"methods":[null,"GET"`), "$.content.policy.routes[1].methods[0] is null"},
		{"object for a string", withContent(`"issuer":"https://auth.example.com"`, `"issuer":{"a":1}`), "$.content.policy.issuer must be a string, number or boolean"},
		{"string for a list", withContent(`"audiences":["payments-api","payments-admin"]`, `"audiences":"payments-api"`), "$.content.policy.audiences must be an array"},
		{"number for a string", withContent(`"accessTokenType":"at+jwt"`, `"accessTokenType":1`), "bundle content: json: cannot unmarshal number"},
		{"string for a number", withContent(`"leewaySeconds":30`, `"leewaySeconds":"30"`), "bundle content: json: cannot unmarshal string"},
		{"string for a boolean", withContent(`"forwardToken":true`, `"forwardToken":"true"`), "bundle content: json: cannot unmarshal string"},

		// Policy.
		{"empty issuer", withPolicy(func(p *Policy) { p.Issuer = "" }), "bundle policy: issuer is empty"},
		{"no audiences", withPolicy(func(p *Policy) { p.Audiences = []string{} }), "bundle policy: audiences are missing or empty"},
		{"empty audience", withPolicy(func(p *Policy) { p.Audiences = []string{"a", ""} }), "bundle policy: audiences are missing or empty"},
		{"no algorithms", withPolicy(func(p *Policy) { p.Algorithms = []string{} }), "bundle policy: no algorithm is allowed"},
		{"algorithm HS256", withPolicy(func(p *Policy) { p.Algorithms = []string{"ES256", "HS256"} }), `bundle policy: algorithm "HS256" is not supported`},
		{"algorithm none", withPolicy(func(p *Policy) { p.Algorithms = []string{"none"} }), `bundle policy: algorithm "none" is not supported`},
		{"algorithm in lower case", withPolicy(func(p *Policy) { p.Algorithms = []string{"es256"} }), `bundle policy: algorithm "es256" is not supported`},
		{"leeway over 300", withPolicy(func(p *Policy) { p.LeewaySeconds = 301 }), "bundle policy: leewaySeconds 301 is outside 0..300"},
		{"leeway negative", withPolicy(func(p *Policy) { p.LeewaySeconds = -1 }), "bundle policy: leewaySeconds -1 is outside 0..300"},
		{"bad accessTokenType", withPolicy(func(p *Policy) { p.AccessTokenType = "at+JWT" }), `bundle policy: accessTokenType "at+JWT" is not one of`},
		{"empty accessTokenType", withPolicy(func(p *Policy) { p.AccessTokenType = "" }), `bundle policy: accessTokenType "" is not one of`},
		{"ttl 0", withPolicy(func(p *Policy) { p.AccessTokenTTLSeconds = 0 }), "bundle policy: accessTokenTTLSeconds is not positive"},
		{"ttl negative", withPolicy(func(p *Policy) { p.AccessTokenTTLSeconds = -600 }), "bundle policy: accessTokenTTLSeconds is not positive"},
		{"bad binding mode", withPolicy(func(p *Policy) { p.Binding.Mode = "dpop" }), `bundle policy: binding mode "dpop" is not one of`},
		{"empty binding mode", withPolicy(func(p *Policy) { p.Binding = Binding{} }), `bundle policy: binding mode "" is not one of`},
		{"required binding with mode None", withPolicy(func(p *Policy) { p.Binding = Binding{Mode: "None", Required: true} }), "bundle policy: binding is required but mode is None"},
		{"no token sources", withPolicy(func(p *Policy) { p.TokenSources = []TokenSource{} }), "bundle policy: no token source"},
		{"unknown token source", withPolicy(func(p *Policy) { p.TokenSources = []TokenSource{{Type: "Query", Name: "access_token"}} }), `bundle policy: token source "Query"/"access_token" is invalid`},
		{"Cookie source without name", withPolicy(func(p *Policy) { p.TokenSources = []TokenSource{{Type: "Cookie"}} }), `bundle policy: token source "Cookie"/"" is invalid`},
		{"route path without leading slash", withPolicy(func(p *Policy) { p.Routes[1].Path = "v1/payments/*" }), `bundle policy: route path "v1/payments/*" does not start with /`},
		{"empty route path", withPolicy(func(p *Policy) { p.Routes[0].Path = "" }), `bundle policy: route path "" does not start with /`},
		{"anonymous route with scopes", withPolicy(func(p *Policy) { p.Routes[0].Scopes = []string{"health:read"} }), `bundle policy: anonymous route "/healthz" requires scopes`},
		{"forwarded claim with empty header", withPolicy(func(p *Policy) { p.ForwardClaims[0].Header = "" }), "bundle policy: forwarded claim with an empty claim or header"},
		{"forwarded claim with empty claim", withPolicy(func(p *Policy) { p.ForwardClaims[1].Claim = "" }), "bundle policy: forwarded claim with an empty claim or header"},

		// JWKS.
		{"jwks empty set", withJWKS(func(*testing.T) []byte { return []byte(`{"keys":[]}`) }), `bundle jwks: jwks: invalid JWK set: "keys" is empty`},
		{"jwks not a set", withContent(`"jwks":{"keys":`, `"jwks":{"key":`), `bundle jwks: jwks: invalid JWK set: missing "keys" member`},
		{"jwks private key", withJWKS(privateSet), "a public JWK set must not contain private keys"},
		{"jwks kid not thumbprint", withContent(testKidES256b, "Vi0IWKSTInJYnFmdsMRBxrmZCIDAp671ASDKd8gckUt"), "bundle jwks: jwks: invalid JWK set: keys[1]: kid is not the RFC 7638 SHA-256 thumbprint of the key"},
		{"jwks duplicate member", withContent(`"kid":"`+testKidEdDSA+`"`, `"kid":"`+testKidEdDSA+`","kid":"`+testKidEdDSA+`"`), `bundle jwks: jwks: invalid JWK set: invalid JSON: duplicate member name "kid" at $.keys[2]`},
		{"jwks symmetric key", withJWKS(func(*testing.T) []byte {
			return []byte(`{"keys":[{"alg":"HS256","k":"c2VjcmV0","kid":"x","kty":"oct"}]}`)
		}), `symmetric (kty "oct") keys are not allowed`},
		{"jwks encryption key", withContent(`"kid":"`+testKidEdDSA+`","kty":"OKP","use":"sig"`, `"kid":"`+testKidEdDSA+`","kty":"OKP","use":"enc"`), `keys[2]: "use" is "enc"; only "sig" is allowed`},

		// Revocations.
		{"empty jti value", withRevocations(Revocations{JTI: []Revoked{{Value: "", Expires: testNow}}}), "bundle revocations: jti entry with an empty value"},
		{"empty sub value", withRevocations(Revocations{Subject: []Revoked{{Value: "", IssuedBefore: 1, Expires: testNow}}}), "bundle revocations: sub entry with an empty value"},
		{"expires 0", withRevocations(Revocations{Session: []Revoked{{Value: "s", Expires: 0}}}), "bundle revocations: sid entry with invalid times"},
		{"expires negative", withRevocations(Revocations{ClientID: []Revoked{{Value: "c", Expires: -5}}}), "bundle revocations: client_id entry with invalid times"},
		{"missing expires", withContent(`{"v":"billing-batch","b":1779996400,"x":1782588430}`, `{"v":"billing-batch","b":1779996400}`), `$.content.revocations.client_id[0] lacks required member "x"`},
		{"missing value", withContent(`"v":"s-7f3e",`, ``), `$.content.revocations.sid[0] lacks required member "v"`},
		{"issuedBefore negative", withRevocations(Revocations{Subject: []Revoked{{Value: "u", IssuedBefore: -1, Expires: testNow}}}), "bundle revocations: sub entry with invalid times"},
		{"issuedBefore on jti", withRevocations(Revocations{JTI: []Revoked{{Value: "j", IssuedBefore: testNow, Expires: testNow}}}), "bundle revocations: jti entry with issuedBefore: only sub and client_id take one"},
		{"issuedBefore on sid", withRevocations(Revocations{Session: []Revoked{{Value: "s", IssuedBefore: testNow, Expires: testNow}}}), "bundle revocations: sid entry with issuedBefore: only sub and client_id take one"},
		{"issuedBefore on kid", withRevocations(Revocations{KeyID: []Revoked{{Value: "k", IssuedBefore: testNow, Expires: testNow}}}), "bundle revocations: kid entry with issuedBefore: only sub and client_id take one"},
		{"revocation list not a list", withContent(`"sid":[{"v":"s-7f3e","x":1782592030}]`, `"sid":{"v":"s-7f3e","x":1782592030}`), "$.content.revocations.sid must be an array"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := tc.doc(t)
			b, err := Decode(doc)
			if tc.want == "" { // a row that documents an accepted variant
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Decode accepted the document:\n%s", doc)
			}
			if b != nil {
				t.Error("Decode returned a bundle with its error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			if strings.HasPrefix(tc.want, "invalid JSON") && !errors.Is(err, jwks.ErrInvalidJSON) {
				t.Errorf("error %v does not wrap jwks.ErrInvalidJSON", err)
			}
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	raw, hash, err := EncodeContent(fixedContent(t))
	if err != nil {
		t.Fatal(err)
	}
	spaced := append(append([]byte(" "), raw...), ' ')
	for _, tc := range []struct {
		name    string
		gen     int64
		content []byte
		hash    string
		want    string
	}{
		{"generation 0", 0, raw, hash, "generation must be at least 1"},
		{"generation negative", -3, raw, hash, "generation must be at least 1"},
		{"wrong hash", 1, raw, "sha256:" + strings.Repeat("0", 64), "hash does not match its content"},
		{"empty content", 1, nil, hash, "must be a JSON object"},
		{"content not an object", 1, []byte(`[1]`), hash, "must be a JSON object"},
		{"content with surrounding space", 1, spaced, contentHash(spaced), "must be a JSON object without surrounding whitespace"},
		{"invalid content", 1, []byte(`{"a":}`), contentHash([]byte(`{"a":}`)), "must be a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := Encode(tc.gen, tc.content, tc.hash)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Encode = %q, %v; want error containing %q", doc, err, tc.want)
			}
		})
	}
	// Content that is valid but not compact is embedded as is, so its hash still holds.
	pretty := []byte("{\n  \"policy\": " + string(raw[len(`{"policy":`):]))
	doc, err := Encode(2, pretty, contentHash(pretty))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Decode(doc)
	if err != nil {
		t.Fatalf("non-compact content: %v", err)
	}
	if b.Hash != contentHash(pretty) {
		t.Fatal("hash changed")
	}
}

// TestCapacity measures how many jti revocations with realistic 36-character UUIDs fit
// under MaxBytes next to the three fixed keys and the full test policy. The encoded size is
// exactly linear in the count (every entry {"v":"<uuid>","x":<10 digits>} plus its comma
// is 60 bytes), and docs/bundle-format.md quotes the number this test logs.
func TestCapacity(t *testing.T) {
	size := func(n int) int { return len(mustEncode(t, 1, jtiContent(t, n))) }
	base := size(0)
	perEntry := size(1001) - size(1)
	if perEntry%1000 != 0 {
		t.Fatalf("1000 entries take %d bytes: not a whole number per entry", perEntry)
	}
	perEntry /= 1000
	first := size(1) - base // the first entry opens "jti":[...] too
	for _, n := range []int{1, 2, 10, 100, 1000, 5000, 10000} {
		if got, want := size(n), base+first+(n-1)*perEntry; got != want {
			t.Errorf("%d entries: %d bytes, want %d (linear)", n, got, want)
		}
	}
	n := maxFitJTIs(t)
	fits, over := mustEncode(t, 1, jtiContent(t, n)), mustEncode(t, 1, jtiContent(t, n+1))
	if len(fits) > MaxBytes || len(over) <= MaxBytes {
		t.Fatalf("%d entries: %d bytes; %d entries: %d bytes; limit %d", n, len(fits), n+1, len(over), MaxBytes)
	}
	if _, err := Decode(fits); err != nil {
		t.Fatalf("the largest bundle that fits does not decode: %v", err)
	}
	if _, err := Decode(over); err == nil || !strings.Contains(err.Error(), "more than the") {
		t.Fatalf("one entry more: %v", err)
	}
	t.Logf("empty bundle %d bytes, %d bytes per jti entry; %d jti revocations fit under MaxBytes (%d bytes: %d)",
		base, perEntry, n, MaxBytes, len(fits))
	if n <= 15000 {
		t.Errorf("only %d jti revocations fit; docs/bundle-format.md promises more than 15000", n)
	}
}

// maxFitJTIs is the largest number of realistic jti revocations (see jtiContent) whose
// bundle fits under MaxBytes, found by bisection.
func maxFitJTIs(tb testing.TB) int {
	lo, hi := 0, MaxBytes/50 // hi entries never fit: each takes more than 50 bytes
	for lo+1 < hi {
		mid := (lo + hi) / 2
		if len(mustEncode(tb, 1, jtiContent(tb, mid))) <= MaxBytes {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}
