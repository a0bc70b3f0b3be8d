package bundle

import (
	"bytes"
	"testing"

	"github.com/keyward-dev/keyward/internal/jwks"
)

// FuzzDecode checks that Decode never panics, never returns a bundle with an error, and
// that every bundle it accepts re-encodes (EncodeContent of the decoded content, Encode
// with the same generation) to a document that decodes again with the hash EncodeContent
// returned, and whose encoding is a fixed point. A mutated content almost never matches the
// hash, so each input is also tried with its envelope rebuilt around what follows
// "content": with a correct hash, which lets mutations reach the checks behind the hash.
//
// Seeds live in testdata/fuzz/FuzzDecode: a valid bundle (the golden file), a valid one
// with non-canonical content, and several invalid ones.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data)
		if re := rehashed(data); re != nil {
			checkDecode(t, re)
		}
	})
}

func checkDecode(t *testing.T, data []byte) {
	b, err := Decode(data)
	if err != nil {
		if b != nil {
			t.Fatalf("Decode returned a bundle with error %v", err)
		}
		return
	}
	if len(data) > MaxBytes {
		t.Fatalf("Decode accepted %d bytes", len(data))
	}
	// Decode is at least as strict as the generic duplicate-member check.
	if err := jwks.CheckNoDuplicateMembers(data); err != nil {
		t.Fatalf("Decode accepted a document CheckNoDuplicateMembers refuses: %v", err)
	}
	if b.Generation < 1 || len(b.Keys) == 0 {
		t.Fatalf("accepted generation %d with %d keys", b.Generation, len(b.Keys))
	}

	raw, hash, err := EncodeContent(b.Content)
	if err != nil {
		t.Fatalf("accepted content does not re-encode: %v", err)
	}
	doc, err := Encode(b.Generation, raw, hash)
	if err != nil {
		t.Fatalf("accepted content does not re-wrap: %v", err)
	}
	// Re-encoding may grow the document (encoding/json escapes <, > and & as \u003c...),
	// so check it without the size limit.
	b2, err := decode(doc)
	if err != nil {
		t.Fatalf("re-encoded bundle does not decode: %v\ninput: %q\nre-encoded: %q", err, data, doc)
	}
	if b2.Hash != hash || b2.Generation != b.Generation {
		t.Fatalf("re-encoded bundle decodes to generation %d hash %s, want %d %s", b2.Generation, b2.Hash, b.Generation, hash)
	}
	if bytes.Contains(data, raw) && b.Hash != hash {
		t.Fatalf("canonical content, but the hash changed: %s -> %s", b.Hash, hash)
	}
	raw2, hash2, err := EncodeContent(b2.Content)
	if err != nil || !bytes.Equal(raw2, raw) || hash2 != hash {
		t.Fatalf("encoding is not a fixed point (%v):\n%s\n%s", err, raw, raw2)
	}
	if len(b2.Keys) != len(b.Keys) {
		t.Fatalf("%d keys became %d", len(b.Keys), len(b2.Keys))
	}
}

// rehashed returns data with its envelope replaced by a correct one around the bytes
// between the first "content": and the last '}', or nil when there is no such span.
func rehashed(data []byte) []byte {
	const member = `"content":`
	i := bytes.Index(data, []byte(member))
	j := bytes.LastIndexByte(data, '}')
	if i < 0 || j <= i+len(member) {
		return nil
	}
	return wrap(1, string(data[i+len(member):j]))
}
