package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keyward-dev/keyward/internal/bundle"
	"github.com/keyward-dev/keyward/internal/jwks"
)

var testNow = time.Unix(1780000000, 0)

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func sign(t *testing.T, priv *ecdsa.PrivateKey, header, claims map[string]any) string {
	t.Helper()
	hb, _ := json.Marshal(header)
	cb, _ := json.Marshal(claims)
	input := b64u(hb) + "." + b64u(cb)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, priv, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64u(sig)
}

type fixture struct {
	dir      string
	jwksFile string
	bundle   string // directory holding bundle.json
	key      jwk.Key
	kid      string
	priv     *ecdsa.PrivateKey
}

func newFixture(t *testing.T, binding bundle.Binding) *fixture {
	t.Helper()
	k, err := jwks.Generate(jwks.AlgES256, 0)
	if err != nil {
		t.Fatal(err)
	}
	var raw any
	if err := jwk.Export(k, &raw); err != nil {
		t.Fatal(err)
	}
	kid, _ := k.KeyID()
	set, err := jwks.PublicSetJSON([]jwk.Key{k})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: t.TempDir(), key: k, kid: kid, priv: raw.(*ecdsa.PrivateKey)}
	f.jwksFile = filepath.Join(f.dir, "jwks.json")
	if err := os.WriteFile(f.jwksFile, set, 0o600); err != nil {
		t.Fatal(err)
	}
	content, hash, err := bundle.EncodeContent(bundle.Content{
		Policy: bundle.Policy{
			Namespace: "shop", Name: "api", Issuer: "https://auth.example.com", Audiences: []string{"api"},
			Algorithms: []string{"ES256"}, AccessTokenType: "at+jwt", AccessTokenTTLSeconds: 600,
			Binding:      binding,
			Routes:       []bundle.Route{{Path: "/admin/*", Scopes: []string{"admin"}}},
			TokenSources: []bundle.TokenSource{{Type: "AuthorizationHeader"}},
		},
		JWKS:        set,
		Revocations: bundle.Revocations{JTI: []bundle.Revoked{{Value: "revoked-jti", Expires: testNow.Unix() + 600}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := bundle.Encode(3, content, hash)
	if err != nil {
		t.Fatal(err)
	}
	f.bundle = filepath.Join(f.dir, "bundle")
	if err := os.Mkdir(f.bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.bundle, bundle.DataKey), doc, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) token(t *testing.T, edit func(map[string]any)) string {
	c := map[string]any{
		"iss": "https://auth.example.com", "aud": "api", "sub": "alice", "jti": "j-1", "scope": "read",
		"iat": testNow.Unix() - 5, "exp": testNow.Unix() + 300,
	}
	if edit != nil {
		edit(c)
	}
	return sign(t, f.priv, map[string]any{"alg": "ES256", "kid": f.kid, "typ": "at+jwt"}, c)
}

func check(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"check"}, args...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// checkAt runs check with the fake clock (run uses the wall clock).
func checkAt(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runCheck(args, strings.NewReader(stdin), &out, &errb, clocktesting.NewFakePassiveClock(testNow))
	return code, out.String(), errb.String()
}

func TestCheckJWKS(t *testing.T) {
	f := newFixture(t, bundle.Binding{Mode: "None"})
	good := f.token(t, nil)
	full := []string{"--jwks", f.jwksFile, "--issuer", "https://auth.example.com", "--audience", "other", "--audience", "api"}
	tests := []struct {
		name       string
		stdin      string
		args       []string
		code       int
		stdoutHas  string
		stderrHas  string
		stdoutNone bool
	}{
		{"accepted, trailing newline trimmed", good + "\n", full, 0, `"sub": "alice"`, "", false},
		{"accepted without newline", good, full, 0, `"jti": "j-1"`, "", false},
		{"wrong issuer", good, []string{"--jwks", f.jwksFile, "--issuer", "https://evil", "--audience", "api"}, 1, "", "rejected: issuer", true},
		{"wrong typ", good, append(append([]string{}, full...), "--typ", "JWT"), 1, "", "rejected: typ", true},
		{"expired", f.token(t, func(c map[string]any) { c["exp"] = testNow.Unix() - 60 }), full, 1, "", "rejected: expired", true},
		{"expired within leeway", f.token(t, func(c map[string]any) { c["exp"] = testNow.Unix() - 60 }),
			append(append([]string{}, full...), "--leeway", "2m"), 0, `"sub"`, "", false},
		{"tampered", good[:len(good)-4] + "AAAA", full, 1, "", "rejected: signature", true},
		{"two newlines is not a token", good + "\n\n", full, 1, "", "rejected:", true},
		{"signature only ignores claims", f.token(t, func(c map[string]any) { c["iss"] = "https://elsewhere"; c["exp"] = 1 }),
			[]string{"--jwks", f.jwksFile, "--signature-only"}, 0, `"iss": "https://elsewhere"`, "", false},
		{"signature only still checks the signature", good[:len(good)-4] + "AAAA", []string{"--jwks", f.jwksFile, "--signature-only"}, 1, "", "rejected: signature", true},
		{"no issuer", good, []string{"--jwks", f.jwksFile, "--audience", "api"}, 2, "", "--issuer and --audience are required", true},
		{"no source", good, []string{"--issuer", "x"}, 2, "", "exactly one of --jwks and --bundle", true},
		{"both sources", good, []string{"--jwks", f.jwksFile, "--bundle", f.bundle}, 2, "", "exactly one", true},
		{"empty stdin", "\n", full, 2, "", "no token on stdin", true},
		{"missing jwks file", good, []string{"--jwks", filepath.Join(f.dir, "nope"), "--signature-only"}, 2, "", "no such file", true},
		{"invalid jwks", good, []string{"--jwks", f.bundle + "/bundle.json", "--signature-only"}, 2, "", "--jwks", true},
		{"unknown flag", good, []string{"--nope"}, 2, "", "flag provided but not defined", true},
		{"dpop with jwks", good, append(append([]string{}, full...), "--dpop", "x"), 2, "", "--dpop goes with --bundle", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := checkAt(t, tt.stdin, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tt.code, stderr)
			}
			if !strings.Contains(stdout, tt.stdoutHas) || !strings.Contains(stderr, tt.stderrHas) {
				t.Errorf("stdout %q stderr %q; want %q / %q", stdout, stderr, tt.stdoutHas, tt.stderrHas)
			}
			if tt.stdoutNone && stdout != "" {
				t.Errorf("stdout %q on failure", stdout)
			}
			if code == 0 && !json.Valid([]byte(stdout)) {
				t.Errorf("stdout is not JSON: %q", stdout)
			}
			if strings.Contains(stderr, strings.TrimSpace(tt.stdin)) && strings.TrimSpace(tt.stdin) != "" {
				t.Error("the token was echoed on stderr")
			}
		})
	}
}

func TestCheckBundle(t *testing.T) {
	f := newFixture(t, bundle.Binding{Mode: "DPoP"})
	good := f.token(t, nil)
	revoked := f.token(t, func(c map[string]any) { c["jti"] = "revoked-jti" })

	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubRaw, _ := priv.PublicKey.Bytes()
	pk, _ := jwk.Import(priv.Public())
	tp, _ := pk.Thumbprint(crypto.SHA256)
	jkt := b64u(tp)
	bound := f.token(t, func(c map[string]any) { c["cnf"] = map[string]any{"jkt": jkt} })
	ath := sha256.Sum256([]byte(bound))
	proof := func(htm, htu string) string {
		return sign(t, priv, map[string]any{"typ": "dpop+jwt", "alg": "ES256",
			"jwk": map[string]any{"kty": "EC", "crv": "P-256", "x": b64u(pubRaw[1:33]), "y": b64u(pubRaw[33:])}},
			map[string]any{"jti": "p-" + htm + htu, "htm": htm, "htu": htu, "iat": testNow.Unix(), "ath": b64u(ath[:])})
	}
	const u = "https://api.example.com/orders/7"
	tests := []struct {
		name      string
		stdin     string
		args      []string
		code      int
		stderrHas string
	}{
		{"accepted (bundle directory)", good, []string{"--bundle", f.bundle}, 0, "generation 3"},
		{"accepted (bundle file)", good, []string{"--bundle", filepath.Join(f.bundle, bundle.DataKey)}, 0, "accepted"},
		{"revoked", revoked, []string{"--bundle", f.bundle}, 1, "rejected: revoked (HTTP 401)"},
		{"route scope", good, []string{"--bundle", f.bundle, "--url", "https://api.example.com/admin/x"}, 1, "rejected: insufficient_scope (HTTP 403)"},
		{"bound token without a proof", bound, []string{"--bundle", f.bundle}, 1, "rejected: dpop_downgrade"},
		{"bound token with its proof", bound, []string{"--bundle", f.bundle, "--dpop", proof("POST", u), "--method", "POST", "--url", u}, 0, "accepted"},
		{"proof for another method", bound, []string{"--bundle", f.bundle, "--dpop", proof("GET", u), "--method", "POST", "--url", u}, 1, "rejected: dpop_htm"},
		{"dpop without url", bound, []string{"--bundle", f.bundle, "--dpop", "x"}, 2, "--dpop needs --url"},
		{"issuer with bundle", good, []string{"--bundle", f.bundle, "--issuer", "x"}, 2, "goes with --jwks"},
		{"broken bundle", good, []string{"--bundle", f.jwksFile}, 2, "--bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := checkAt(t, tt.stdin+"\n", tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderrHas) {
				t.Fatalf("exit %d stderr %q; want %d and %q", code, stderr, tt.code, tt.stderrHas)
			}
			if code == 0 {
				var claims map[string]any
				if err := json.Unmarshal([]byte(stdout), &claims); err != nil || claims["sub"] != "alice" {
					t.Errorf("stdout = %q", stdout)
				}
			}
		})
	}
}

func TestRunUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(nil, strings.NewReader(""), &out, &errb); code != 2 {
		t.Errorf("no command: exit %d", code)
	}
	if code := run([]string{"bogus"}, strings.NewReader(""), &out, &errb); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
	// Through run (wall clock): a token valid now.
	f := newFixture(t, bundle.Binding{Mode: "None"})
	now := time.Now().Unix()
	tok := f.token(t, func(c map[string]any) { c["iat"], c["exp"] = now-5, now+300 })
	code, stdout, stderr := check(t, tok+"\n", "--jwks", f.jwksFile, "--issuer", "https://auth.example.com", "--audience", "api")
	if code != 0 || !strings.Contains(stdout, `"sub": "alice"`) {
		t.Errorf("run check: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	if code := runServe([]string{"--bundle-dir", "x"}, &out, &errb); code != 2 {
		t.Errorf("serve without --upstream: exit %d", code)
	}
}
