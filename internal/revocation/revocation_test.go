package revocation

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/keyward-dev/keyward/internal/bundle"
)

const exp = 2_000_000_000

func r(v string, before int64) bundle.Revoked {
	return bundle.Revoked{Value: v, IssuedBefore: before, Expires: exp}
}

func TestCheck(t *testing.T) {
	s := New(bundle.Revocations{
		JTI:      []bundle.Revoked{r("jti-1", 0)},
		Subject:  []bundle.Revoked{r("sub-all", 0), r("sub-old", 1000)},
		Session:  []bundle.Revoked{r("sid-1", 0)},
		KeyID:    []bundle.Revoked{r("kid-1", 0)},
		ClientID: []bundle.Revoked{r("client-all", 0), r("client-old", 1000)},
	})
	tests := []struct {
		name string
		tok  Token
		want string
	}{
		{"nothing matches", Token{JTI: "j", Subject: "s", SessionID: "x", KeyID: "k", ClientID: "c", IssuedAt: 5}, ""},
		{"empty token", Token{}, ""},
		{"jti", Token{JTI: "jti-1", IssuedAt: 5000}, "jti"},
		{"sub, every token", Token{Subject: "sub-all", IssuedAt: 5000}, "sub"},
		{"sub, iat before cut-off", Token{Subject: "sub-old", IssuedAt: 999}, "sub"},
		{"sub, iat at cut-off", Token{Subject: "sub-old", IssuedAt: 1000}, ""},
		{"sub, iat after cut-off", Token{Subject: "sub-old", IssuedAt: 1001}, ""},
		{"sub, no iat (fail closed)", Token{Subject: "sub-old"}, "sub"},
		{"sid", Token{SessionID: "sid-1"}, "sid"},
		{"kid", Token{KeyID: "kid-1"}, "kid"},
		{"client_id, every token", Token{ClientID: "client-all", IssuedAt: 5000}, "client_id"},
		{"client_id, iat before cut-off", Token{ClientID: "client-old", IssuedAt: 10}, "client_id"},
		{"client_id, iat after cut-off", Token{ClientID: "client-old", IssuedAt: 2000}, ""},
		{"client_id, no iat (fail closed)", Token{ClientID: "client-old"}, "client_id"},
		{"values are per claim", Token{JTI: "sid-1", Subject: "kid-1", SessionID: "jti-1", KeyID: "sub-all", ClientID: "sub-all"}, ""},
		{"first match in claim order", Token{JTI: "jti-1", Subject: "sub-all", ClientID: "client-all"}, "jti"},
		{"case-sensitive", Token{JTI: "JTI-1"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.Check(tc.tok); got != tc.want {
				t.Fatalf("Check(%+v) = %q, want %q", tc.tok, got, tc.want)
			}
		})
	}
	if s.Len() != 7 {
		t.Fatalf("Len() = %d, want 7", s.Len())
	}
}

func TestNilAndEmpty(t *testing.T) {
	var nilSet *Set
	tok := Token{JTI: "a", Subject: "b"}
	if nilSet.Check(tok) != "" || nilSet.Len() != 0 {
		t.Fatal("nil set revokes")
	}
	if s := New(bundle.Revocations{}); s.Check(tok) != "" || s.Len() != 0 {
		t.Fatal("empty set revokes")
	}
	var zero Set
	if zero.Check(tok) != "" || zero.Len() != 0 {
		t.Fatal("zero set revokes")
	}
}

func TestDuplicatesMerge(t *testing.T) {
	tests := []struct {
		name    string
		entries []bundle.Revoked
		iat     int64
		want    string
	}{
		{"wider cut-off wins", []bundle.Revoked{r("s", 100), r("s", 200)}, 150, "sub"},
		{"wider cut-off wins (reversed)", []bundle.Revoked{r("s", 200), r("s", 100)}, 150, "sub"},
		{"0 (every token) wins", []bundle.Revoked{r("s", 100), r("s", 0)}, 5000, "sub"},
		{"0 (every token) wins (reversed)", []bundle.Revoked{r("s", 0), r("s", 100)}, 5000, "sub"},
		{"neither reaches", []bundle.Revoked{r("s", 100), r("s", 200)}, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(bundle.Revocations{Subject: tc.entries})
			if got := s.Check(Token{Subject: "s", IssuedAt: tc.iat}); got != tc.want {
				t.Fatalf("Check = %q, want %q", got, tc.want)
			}
			if s.Len() != 1 {
				t.Fatalf("Len() = %d, want 1", s.Len())
			}
		})
	}
}

// New must not keep the bundle's slices: changing them afterwards changes nothing.
func TestImmutable(t *testing.T) {
	list := []bundle.Revoked{r("a", 0)}
	s := New(bundle.Revocations{JTI: list})
	list[0].Value = "b"
	if s.Check(Token{JTI: "a"}) != "jti" || s.Check(Token{JTI: "b"}) != "" {
		t.Fatal("set follows the bundle's slice")
	}
}

// FuzzRevocation compares Check with a direct reading of the rules over the entry lists.
func FuzzRevocation(f *testing.F) {
	f.Add("a", "b", int64(0), int64(5), uint8(1))
	f.Add("a", "a", int64(10), int64(5), uint8(2))
	f.Add("x", "x", int64(10), int64(0), uint8(4))
	f.Fuzz(func(t *testing.T, value, probe string, before, iat int64, which uint8) {
		if value == "" || before < 0 {
			return // the bundle refuses these
		}
		var rev bundle.Revocations
		lists := []*[]bundle.Revoked{&rev.JTI, &rev.Subject, &rev.Session, &rev.KeyID, &rev.ClientID}
		names := []string{"jti", "sub", "sid", "kid", "client_id"}
		i := int(which) % 5
		b := int64(0)
		if i == 1 || i == 4 {
			b = before
		}
		*lists[i] = []bundle.Revoked{{Value: value, IssuedBefore: b, Expires: exp}}
		s := New(rev)
		tok := Token{JTI: probe, Subject: probe, SessionID: probe, KeyID: probe, ClientID: probe, IssuedAt: iat}
		want := ""
		if probe == value && (b == 0 || iat <= 0 || iat < b) {
			want = names[i]
		}
		if got := s.Check(tok); got != want {
			t.Fatalf("Check = %q, want %q", got, want)
		}
	})
}

func buildSet(n int) (*Set, []Token) {
	var rev bundle.Revocations
	per := n / 5
	for i := range per {
		rev.JTI = append(rev.JTI, r(fmt.Sprintf("jti-%08d", i), 0))
		rev.Subject = append(rev.Subject, r(fmt.Sprintf("sub-%08d", i), int64(i%2)*1000))
		rev.Session = append(rev.Session, r(fmt.Sprintf("sid-%08d", i), 0))
		rev.KeyID = append(rev.KeyID, r(fmt.Sprintf("kid-%08d", i), 0))
		rev.ClientID = append(rev.ClientID, r(fmt.Sprintf("cli-%08d", i), 0))
	}
	s := New(rev)
	// Probes: a mix of hits on each claim and clean tokens (which look up all five).
	toks := make([]Token, 1024)
	for i := range toks {
		k := (i * 7919) % per
		switch i % 4 {
		case 0:
			toks[i] = Token{JTI: fmt.Sprintf("jti-%08d", k), IssuedAt: 500}
		case 1:
			toks[i] = Token{Subject: fmt.Sprintf("sub-%08d", k), IssuedAt: 500}
		default:
			toks[i] = Token{JTI: fmt.Sprintf("jti-x%07d", k), Subject: fmt.Sprintf("sub-x%07d", k),
				SessionID: fmt.Sprintf("sid-x%07d", k), KeyID: "kid-none", ClientID: fmt.Sprintf("cli-x%07d", k), IssuedAt: 500}
		}
	}
	return s, toks
}

func benchmarkCheck(b *testing.B, n int) {
	s, toks := buildSet(n)
	if s.Len() != n {
		b.Fatalf("Len() = %d, want %d", s.Len(), n)
	}
	runtime.GC() // the garbage of building the set must not be collected while timing
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		_ = s.Check(toks[i&1023])
		i++
	}
}

// BenchmarkCheck1K, 100K and 1M: the lookup cost must not grow with the set (maps:
// O(1)). The 1K set stays in the CPU caches; from 100K on, lookups pay cache misses,
// which is why 100K and 1M cost the same and more than 1K.
func BenchmarkCheck1K(b *testing.B)   { benchmarkCheck(b, 1_000) }
func BenchmarkCheck100K(b *testing.B) { benchmarkCheck(b, 100_000) }
func BenchmarkCheck1M(b *testing.B)   { benchmarkCheck(b, 1_000_000) }

func BenchmarkNew100K(b *testing.B) {
	var rev bundle.Revocations
	for i := range 100_000 {
		rev.JTI = append(rev.JTI, r(fmt.Sprintf("jti-%08d", i), 0))
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = New(rev)
	}
}
