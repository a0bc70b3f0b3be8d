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

package boltstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward-dev/keyward/internal/issuer/store"
	"github.com/keyward-dev/keyward/internal/issuer/store/storetest"
)

func openTemp(tb testing.TB) store.Store {
	tb.Helper()
	s, err := Open(filepath.Join(tb.TempDir(), "issuer", "tokens.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}

// A second replica on the same file must fail clearly instead of waiting forever or
// sharing the file; once the first closes, it opens and sees the data.
func TestSecondOpenFailsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.db")
	first, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f := store.Family{ID: "fam", Policy: "p/q", Subject: "alice", ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	if err := first.CreateFamily(t.Context(), f, store.HashToken("a")); err != nil {
		t.Fatal(err)
	}

	second, err := Open(path, WithLockTimeout(100*time.Millisecond))
	if err == nil {
		_ = second.Close()
		t.Fatal("a second Open of a file in use succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	for _, want := range []string{path, "locked", "one issuer replica", "PostgreSQL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	reopened, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	got, current, err := reopened.Lookup(t.Context(), store.HashToken("a"))
	if err != nil || !current || got.ID != f.ID {
		t.Fatalf("after reopening: %+v, %t, %v", got, current, err)
	}
}

func TestFileMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	path := filepath.Join(dir, "tokens.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700 | os.ModeDir} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %s, want %s", p, fi.Mode(), want)
		}
	}

	// A file that was made world-readable is tightened on open.
	loose := filepath.Join(t.TempDir(), "loose.db")
	if err := os.WriteFile(loose, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(loose)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if fi, _ := os.Stat(loose); fi.Mode().Perm() != 0o600 {
		t.Errorf("loose file: mode %s, want 0600", fi.Mode())
	}
}

func TestUnknownFormatVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put(keyVersion, []byte("99"))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), `format version "99"`) {
		t.Fatalf("Open of a future format: %v, want a format version error", err)
	}
}

func BenchmarkRotate(b *testing.B) {
	storetest.BenchRotate(b, openTemp)
}
