package jwks

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// FuzzParseSet checks that ParseSet never panics, that it fails with
// ErrInvalidSet, and that every set it accepts re-renders and re-parses to
// the same kids in the same order (and renders identically the second time).
// Seeds live in testdata/fuzz/FuzzParseSet.
func FuzzParseSet(f *testing.F) {
	f.Add([]byte(`{"keys":[]}`), false)
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AAAA","kid":"a","alg":"HS256"}]}`), true)
	f.Fuzz(func(t *testing.T, data []byte, private bool) {
		keys, err := ParseSet(data, private)
		if err != nil {
			if keys != nil {
				t.Fatalf("ParseSet returned keys with error %v", err)
			}
			if !errors.Is(err, ErrInvalidSet) {
				t.Fatalf("error %v does not wrap ErrInvalidSet", err)
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("ParseSet accepted a set without keys")
		}
		kids := kidList(t, keys)

		render := PublicSetJSON
		if private {
			render = PrivateSetJSON
		}
		out, err := render(keys)
		if err != nil {
			t.Fatalf("accepted set does not re-render: %v", err)
		}
		again, err := ParseSet(out, private)
		if err != nil {
			t.Fatalf("re-rendered set does not re-parse: %v", err)
		}
		if got := kidList(t, again); !equalStrings(got, kids) {
			t.Fatalf("kids changed: %v -> %v", kids, got)
		}
		out2, err := render(again)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("rendering is not stable:\n%s\n%s", out, out2)
		}

		// The public half of any accepted set is a valid public set.
		pub, err := PublicSetJSON(keys)
		if err != nil {
			t.Fatalf("PublicSetJSON of an accepted set: %v", err)
		}
		pubKeys, err := ParseSet(pub, false)
		if err != nil {
			t.Fatalf("public set does not parse: %v", err)
		}
		if got := kidList(t, pubKeys); !equalStrings(got, kids) {
			t.Fatalf("public kids differ: %v -> %v", kids, got)
		}
		if private {
			if _, err := ParseSet(out, false); err == nil {
				t.Fatal("a private set parsed as a public set")
			}
		}
	})
}

func kidList(t *testing.T, keys []jwk.Key) []string {
	t.Helper()
	out := make([]string, len(keys))
	for i, k := range keys {
		kid, ok := k.KeyID()
		if !ok || kid == "" {
			t.Fatalf("keys[%d] has no kid", i)
		}
		out[i] = kid
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestFuzzSeeds keeps the committed corpus meaningful: seeds named valid_*
// must be accepted, all others refused.
func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParseSet")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < 10 {
		t.Fatalf("only %d seeds in %s", len(entries), dir)
	}
	for _, e := range entries {
		t.Run(e.Name(), func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
			if len(lines) != 3 || lines[0] != "go test fuzz v1" ||
				!strings.HasPrefix(lines[1], "[]byte(") || !strings.HasPrefix(lines[2], "bool(") {
				t.Fatalf("not a FuzzParseSet corpus file")
			}
			data, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
			if err != nil {
				t.Fatal(err)
			}
			private, err := strconv.ParseBool(strings.TrimSuffix(strings.TrimPrefix(lines[2], "bool("), ")"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseSet([]byte(data), private)
			if valid := strings.HasPrefix(e.Name(), "valid_"); valid != (err == nil) {
				t.Errorf("valid=%v, ParseSet error: %v", valid, err)
			}
		})
	}
}
