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

package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// ErrNoToken is returned by TokenStore.Load when nothing is stored.
var ErrNoToken = errors.New("keyward client: no token stored")

// TokenStore keeps a session's tokens. The Transport saves every rotated refresh token
// before it uses the new access token: with rotating refresh tokens the old one is spent
// the moment the server answers, so a token that was used but not stored is a session
// lost at the next restart.
//
// Save must be durable when it returns (a crash after it must not bring back the old
// token), and must not keep a reference to the Token it is given.
type TokenStore interface {
	// Load returns the stored token, or ErrNoToken.
	Load(ctx context.Context) (*Token, error)
	// Save replaces the stored token.
	Save(ctx context.Context, t *Token) error
}

// MemoryStore keeps the token in memory: for processes that obtain a fresh session at
// every start. The zero value is empty and ready to use.
type MemoryStore struct {
	mu  sync.Mutex
	tok *Token
}

// Load implements TokenStore.
func (m *MemoryStore) Load(context.Context) (*Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tok == nil {
		return nil, ErrNoToken
	}
	t := *m.tok
	return &t, nil
}

// Save implements TokenStore.
func (m *MemoryStore) Save(_ context.Context, t *Token) error {
	if t == nil {
		return errors.New("keyward client: saving a nil token")
	}
	c := *t
	m.mu.Lock()
	m.tok = &c
	m.mu.Unlock()
	return nil
}

// FileStore keeps the token in a JSON file readable by its owner only (mode 0600). Save
// writes a temporary file in the same directory, syncs it and renames it over the old
// one, so a crash leaves either the old token or the new one, never half of one. Load
// refuses a file that group or others may read or write.
//
// Several processes may share one file only if they never refresh at the same time:
// the Transport re-reads the file before each refresh and adopts a token another process
// stored, but there is no lock between processes.
type FileStore struct {
	// Path of the token file. Its directory must exist.
	Path string
	mu   sync.Mutex
}

// Load implements TokenStore.
func (f *FileStore) Load(context.Context) (*Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	info, err := os.Stat(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoToken
	}
	if err != nil {
		return nil, fmt.Errorf("keyward client: reading the token file: %w", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("keyward client: the token file %s has mode %#o; it holds a refresh token and must be readable by its owner only (chmod 600)", f.Path, perm)
	}
	b, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, fmt.Errorf("keyward client: reading the token file: %w", err)
	}
	var t Token
	if err := json.Unmarshal(b, &t); err != nil {
		// The error of encoding/json may quote the input; never a token in an error.
		return nil, fmt.Errorf("keyward client: the token file %s is not a token (invalid JSON)", f.Path)
	}
	return &t, nil
}

// Save implements TokenStore.
func (f *FileStore) Save(_ context.Context, t *Token) error {
	if t == nil {
		return errors.New("keyward client: saving a nil token")
	}
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("keyward client: encoding the token: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	dir := filepath.Dir(f.Path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.Path)+".*") // mode 0600
	if err != nil {
		return fmt.Errorf("keyward client: saving the token: %w", err)
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(name)
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("keyward client: saving the token: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		return fmt.Errorf("keyward client: saving the token: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("keyward client: saving the token: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("keyward client: saving the token: %w", err)
	}
	if err := os.Rename(name, f.Path); err != nil {
		return fmt.Errorf("keyward client: saving the token: %w", err)
	}
	ok = true
	// The rename is durable once the directory is synced; some filesystems refuse to
	// sync a directory, and the file itself is already on disk.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
