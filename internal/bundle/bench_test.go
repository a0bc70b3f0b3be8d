package bundle

import (
	"testing"
)

// The product target is "a bundle of 100,000 entries parsed in < 200 ms".
//
// A bundle of 100,000 jti revocations is about 6 MB, far over MaxBytes, so Decode refuses
// it before parsing. BenchmarkDecode100k therefore measures decode, the internal path
// behind Decode's size check (every other check runs: duplicate and unknown members, hash,
// policy, JWKS, revocations), on a document built with EncodeContent and Encode, which do
// not enforce the limit. BenchmarkDecodeMaxFit measures the public Decode on the largest
// jti bundle that fits under MaxBytes. Both report ns/entry.
//
// Measured numbers are recorded in docs/bundle-format.md, with the command.

func BenchmarkDecode100k(b *testing.B) {
	benchDecode(b, 100_000, decode)
}

func BenchmarkDecodeMaxFit(b *testing.B) {
	benchDecode(b, maxFitJTIs(b), Decode)
}

func benchDecode(b *testing.B, n int, dec func([]byte) (*Bundle, error)) {
	doc := mustEncode(b, 1, jtiContent(b, n))
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		bu, err := dec(doc)
		if err != nil {
			b.Fatal(err)
		}
		if len(bu.Content.Revocations.JTI) != n {
			b.Fatalf("decoded %d entries, want %d", len(bu.Content.Revocations.JTI), n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/entry")
	b.ReportMetric(float64(n), "entries")
}
