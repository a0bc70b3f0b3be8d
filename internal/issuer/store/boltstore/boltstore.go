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

// Package boltstore is the embedded store.Store: one bbolt file on a volume, for a single
// issuer replica. bbolt runs one read-write transaction at a time, so Rotate is atomic by
// construction; the file is locked (flock) while open, so a second process (a second
// replica on the same volume) fails to open it with ErrLocked instead of corrupting it.
//
// Layout (format version 1, in bucket "meta"):
//
//	families       family ID → family record (JSON)
//	tokens         SHA-256 hash → token record (JSON): family ID, spent, spent at, replay
//	family_tokens  len16(family ID) ‖ family ID ‖ hash → ""   (GC: a family's tokens)
//	subjects       len16(policy) ‖ policy ‖ len16(subject) ‖ subject ‖ family ID → ""
//	replays        sortable(spent at) ‖ hash → ""              (GC: replays by age)
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/keyward-dev/keyward/internal/issuer/store"
)

// formatVersion is the layout this package reads and writes.
const formatVersion = "1"

// DefaultLockTimeout is how long Open waits for another holder of the file to let go.
const DefaultLockTimeout = 2 * time.Second

// ErrLocked: the file is open in another process (or another Store in this one).
var ErrLocked = errors.New("database file is locked by another process")

var (
	bucketMeta         = []byte("meta")
	bucketFamilies     = []byte("families")
	bucketTokens       = []byte("tokens")
	bucketFamilyTokens = []byte("family_tokens")
	bucketSubjects     = []byte("subjects")
	bucketReplays      = []byte("replays")
	keyVersion         = []byte("version")
)

// maxIndexKey keeps every index key well under bbolt's 32 KiB key limit.
const maxIndexKey = 16 << 10

// gcBatch bounds how much one GC write transaction deletes, so Rotate never waits long.
const gcBatch = 1000

// errNoChange rolls back a read-write transaction that decided to write nothing.
var errNoChange = errors.New("no change")

var _ store.Store = (*Store)(nil)

// Store is the embedded store. Open it with Open; safe for concurrent use.
type Store struct {
	db *bolt.DB
}

// Option configures Open.
type Option func(*options)

type options struct {
	lockTimeout time.Duration
}

// WithLockTimeout sets how long Open waits for the file lock (DefaultLockTimeout); it must
// be positive, since bbolt would wait forever on zero.
func WithLockTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.lockTimeout = d
		}
	}
}

// Open opens (creating it, mode 0600, and its directory, mode 0700, when absent) the store
// file at path. A file another process holds open fails with ErrLocked: the embedded store
// serves one replica; several replicas need PostgreSQL (pgstore).
func Open(path string, opts ...Option) (*Store, error) {
	o := options{lockTimeout: DefaultLockTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("boltstore: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.lockTimeout, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("boltstore: open %s: %w (waited %s): the embedded store serves one issuer replica; "+
			"run one replica or use PostgreSQL for several", path, ErrLocked, o.lockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	// The file holds token hashes and sealed responses: never readable by others, even if
	// it was created with a looser mode.
	if err := os.Chmod(path, 0o600); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltstore: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketFamilies, bucketTokens, bucketFamilyTokens, bucketSubjects, bucketReplays} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(keyVersion); {
		case v == nil:
			return meta.Put(keyVersion, []byte(formatVersion))
		case string(v) != formatVersion:
			return fmt.Errorf("format version %q, this binary reads %q", v, formatVersion)
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close releases the file and its lock.
func (s *Store) Close() error { return s.db.Close() }

// ---- records

type familyRecord struct {
	Policy       string        `json:"policy"`
	Subject      string        `json:"subject"`
	ClientID     string        `json:"clientID,omitempty"`
	Scope        string        `json:"scope,omitempty"`
	JKT          string        `json:"jkt,omitempty"`
	CreatedAt    time.Time     `json:"createdAt"`
	ExpiresAt    time.Time     `json:"expiresAt"`
	IdleTimeout  time.Duration `json:"idleTimeout,omitempty"`
	LastUsedAt   time.Time     `json:"lastUsedAt"`
	Rotations    int64         `json:"rotations,omitempty"`
	RevokedAt    time.Time     `json:"revokedAt,omitzero"`
	RevokeReason string        `json:"revokeReason,omitempty"`
}

func toRecord(f store.Family) familyRecord {
	return familyRecord{
		Policy: f.Policy, Subject: f.Subject, ClientID: f.ClientID, Scope: f.Scope, JKT: f.JKT,
		CreatedAt: utc(f.CreatedAt), ExpiresAt: utc(f.ExpiresAt), IdleTimeout: f.IdleTimeout,
		LastUsedAt: utc(f.LastUsedAt), Rotations: f.Rotations,
		RevokedAt: utc(f.RevokedAt), RevokeReason: f.RevokeReason,
	}
}

func (r familyRecord) family(id string) store.Family {
	return store.Family{
		ID: id, Policy: r.Policy, Subject: r.Subject, ClientID: r.ClientID, Scope: r.Scope, JKT: r.JKT,
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, IdleTimeout: r.IdleTimeout,
		LastUsedAt: r.LastUsedAt, Rotations: r.Rotations,
		RevokedAt: r.RevokedAt, RevokeReason: r.RevokeReason,
	}
}

type tokenRecord struct {
	Family  string    `json:"family"`
	Spent   bool      `json:"spent,omitempty"`
	SpentAt time.Time `json:"spentAt,omitzero"`
	// HasReplay is true from the token's rotation until GC drops Replay.
	HasReplay bool   `json:"hasReplay,omitempty"`
	Replay    []byte `json:"replay,omitempty"`
}

// utc drops the location and monotonic reading (the zero time stays zero).
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Round(0)
}

type buckets struct {
	families, tokens, familyTokens, subjects, replays *bolt.Bucket
}

func open(tx *bolt.Tx) buckets {
	return buckets{
		families:     tx.Bucket(bucketFamilies),
		tokens:       tx.Bucket(bucketTokens),
		familyTokens: tx.Bucket(bucketFamilyTokens),
		subjects:     tx.Bucket(bucketSubjects),
		replays:      tx.Bucket(bucketReplays),
	}
}

func (b buckets) family(id string) (store.Family, bool, error) {
	v := b.families.Get([]byte(id))
	if v == nil {
		return store.Family{}, false, nil
	}
	var r familyRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return store.Family{}, false, fmt.Errorf("family %q: %w", id, err)
	}
	return r.family(id), true, nil
}

func (b buckets) putFamily(f store.Family) error {
	v, err := json.Marshal(toRecord(f))
	if err != nil {
		return err
	}
	return b.families.Put([]byte(f.ID), v)
}

func (b buckets) token(h store.Hash) (tokenRecord, bool, error) {
	v := b.tokens.Get(h[:])
	if v == nil {
		return tokenRecord{}, false, nil
	}
	var r tokenRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return tokenRecord{}, false, fmt.Errorf("token record: %w", err)
	}
	return r, true, nil
}

func (b buckets) putToken(h store.Hash, r tokenRecord) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return b.tokens.Put(h[:], v)
}

// tokenWithFamily reads a token and its family; a token without a family is corruption.
func (b buckets) tokenWithFamily(h store.Hash) (tokenRecord, store.Family, bool, error) {
	t, ok, err := b.token(h)
	if err != nil || !ok {
		return t, store.Family{}, ok, err
	}
	f, ok, err := b.family(t.Family)
	if err == nil && !ok {
		err = fmt.Errorf("token of family %q, which does not exist", t.Family)
	}
	return t, f, err == nil, err
}

// ---- keys

func appendLP(k []byte, s string) []byte {
	k = binary.BigEndian.AppendUint16(k, uint16(len(s)))
	return append(k, s...)
}

func familyTokenKey(id string, h store.Hash) []byte {
	return append(appendLP(nil, id), h[:]...)
}

func subjectPrefix(policy, subject string) []byte {
	return appendLP(appendLP(nil, policy), subject)
}

// sortable encodes t so that byte order is time order (sign bit flipped).
func sortable(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())^(1<<63))
}

func replayKey(spentAt time.Time, h store.Hash) []byte {
	return append(sortable(spentAt), h[:]...)
}

// ---- store.Store

// CreateFamily stores f with its first token.
func (s *Store) CreateFamily(ctx context.Context, f store.Family, first store.Hash) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if f.ID == "" {
		return errors.New("boltstore: family ID is empty")
	}
	if len(f.ID)+len(f.Policy)+len(f.Subject) > maxIndexKey {
		return fmt.Errorf("boltstore: family %q: ID, policy and subject exceed %d bytes", f.ID, maxIndexKey)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := open(tx)
		if b.families.Get([]byte(f.ID)) != nil {
			return fmt.Errorf("family %q: %w", f.ID, store.ErrExists)
		}
		if b.tokens.Get(first[:]) != nil {
			return fmt.Errorf("token: %w", store.ErrExists)
		}
		if err := b.putFamily(f); err != nil {
			return err
		}
		if err := b.putToken(first, tokenRecord{Family: f.ID}); err != nil {
			return err
		}
		if err := b.familyTokens.Put(familyTokenKey(f.ID, first), nil); err != nil {
			return err
		}
		return b.subjects.Put(append(subjectPrefix(f.Policy, f.Subject), f.ID...), nil)
	})
	if err != nil {
		return fmt.Errorf("boltstore: create family: %w", err)
	}
	return nil
}

// Rotate spends r.Presented; see store.Store.
func (s *Store) Rotate(ctx context.Context, r store.RotateRequest) (store.RotateResult, error) {
	var res store.RotateResult
	if err := ctx.Err(); err != nil {
		return res, err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		res = store.RotateResult{}
		b := open(tx)
		t, f, ok, err := b.tokenWithFamily(r.Presented)
		if err != nil {
			return err
		}
		if !ok {
			res.Outcome = store.Unknown
			return errNoChange
		}
		res.Family = f
		switch {
		case !f.Live(r.Now):
			res.Outcome = store.Dead
			return errNoChange
		case !t.Spent:
			return rotate(b, r, t, &res)
		case t.HasReplay && r.Now.Before(t.SpentAt.Add(r.ReplayWindow)):
			res.Outcome, res.Replay = store.Replayed, t.Replay
			return errNoChange
		default:
			res.Outcome = store.Reused
			res.Family.RevokedAt, res.Family.RevokeReason = utc(r.Now), store.ReuseReason
			return b.putFamily(res.Family)
		}
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return store.RotateResult{}, fmt.Errorf("boltstore: rotate: %w", err)
	}
	return res, nil
}

// rotate spends the current token t (r.Presented) and makes r.Next current.
func rotate(b buckets, r store.RotateRequest, t tokenRecord, res *store.RotateResult) error {
	if b.tokens.Get(r.Next[:]) != nil {
		return fmt.Errorf("next token: %w", store.ErrExists)
	}
	now := utc(r.Now)
	t.Spent, t.SpentAt, t.HasReplay, t.Replay = true, now, true, r.Replay
	if err := b.putToken(r.Presented, t); err != nil {
		return err
	}
	if err := b.replays.Put(replayKey(now, r.Presented), nil); err != nil {
		return err
	}
	if err := b.putToken(r.Next, tokenRecord{Family: t.Family}); err != nil {
		return err
	}
	if err := b.familyTokens.Put(familyTokenKey(t.Family, r.Next), nil); err != nil {
		return err
	}
	res.Outcome = store.Rotated
	res.Family.Rotations++
	res.Family.LastUsedAt = now
	return b.putFamily(res.Family)
}

// Lookup returns the family of h and whether h is its current token.
func (s *Store) Lookup(ctx context.Context, h store.Hash) (store.Family, bool, error) {
	if err := ctx.Err(); err != nil {
		return store.Family{}, false, err
	}
	var (
		f       store.Family
		current bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		t, fam, ok, err := open(tx).tokenWithFamily(h)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("token: %w", store.ErrNotFound)
		}
		f, current = fam, !t.Spent
		return nil
	})
	if err != nil {
		return store.Family{}, false, fmt.Errorf("boltstore: lookup: %w", err)
	}
	return f, current, nil
}

// Family returns the family id.
func (s *Store) Family(ctx context.Context, id string) (store.Family, error) {
	if err := ctx.Err(); err != nil {
		return store.Family{}, err
	}
	var f store.Family
	err := s.db.View(func(tx *bolt.Tx) error {
		fam, ok, err := open(tx).family(id)
		if err == nil && !ok {
			err = fmt.Errorf("family %q: %w", id, store.ErrNotFound)
		}
		f = fam
		return err
	})
	if err != nil {
		return store.Family{}, fmt.Errorf("boltstore: %w", err)
	}
	return f, nil
}

// RevokeFamily revokes family id unless it is revoked already.
func (s *Store) RevokeFamily(ctx context.Context, id, reason string, at time.Time) (store.Family, error) {
	if err := ctx.Err(); err != nil {
		return store.Family{}, err
	}
	var f store.Family
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := open(tx)
		fam, ok, err := b.family(id)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("family %q: %w", id, store.ErrNotFound)
		}
		f = fam
		if !f.RevokedAt.IsZero() {
			return errNoChange
		}
		f.RevokedAt, f.RevokeReason = utc(at), reason
		return b.putFamily(f)
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return store.Family{}, fmt.Errorf("boltstore: revoke family: %w", err)
	}
	return f, nil
}

// RevokeSubject revokes every family of subject under policy that is live at at.
func (s *Store) RevokeSubject(ctx context.Context, policy, subject, reason string, at time.Time) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var ids []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		ids = nil
		b := open(tx)
		prefix := subjectPrefix(policy, subject)
		c := b.subjects.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			f, ok, err := b.family(string(k[len(prefix):]))
			if err != nil {
				return err
			}
			if !ok || !f.Live(at) {
				continue
			}
			ids = append(ids, f.ID)
		}
		for _, id := range ids {
			f, _, err := b.family(id)
			if err != nil {
				return err
			}
			f.RevokedAt, f.RevokeReason = utc(at), reason
			if err := b.putFamily(f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: revoke subject: %w", err)
	}
	slices.Sort(ids)
	return ids, nil
}

// RevokedSince returns the families revoked at or after since, by RevokedAt then ID. It
// scans every family in one read transaction: there is no index by revocation time, which
// would need a new format version. The scan costs what GC's own scan of the families costs,
// and the token service runs both once per GC interval; one replica's sessions fit.
func (s *Store) RevokedSince(ctx context.Context, since time.Time) ([]store.Family, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var fams []store.Family
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketFamilies).ForEach(func(k, v []byte) error {
			var r familyRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("family %q: %w", k, err)
			}
			if !r.RevokedAt.IsZero() && !r.RevokedAt.Before(since) {
				fams = append(fams, r.family(string(k)))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: revoked since: %w", err)
	}
	slices.SortFunc(fams, func(a, b store.Family) int {
		if c := a.RevokedAt.Compare(b.RevokedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return fams, nil
}

// GC drops replays whose window has passed and deletes families dead for more than retain.
func (s *Store) GC(ctx context.Context, now time.Time, replayWindow, retain time.Duration) (int, error) {
	if err := s.gcReplays(ctx, now.Add(-replayWindow)); err != nil {
		return 0, fmt.Errorf("boltstore: gc: %w", err)
	}
	n, err := s.gcFamilies(ctx, now, retain)
	if err != nil {
		return n, fmt.Errorf("boltstore: gc: %w", err)
	}
	return n, nil
}

// gcReplays drops the Replay of every token spent at or before cutoff.
func (s *Store) gcReplays(ctx context.Context, cutoff time.Time) error {
	limit := sortable(cutoff)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		done := true
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := open(tx)
			var keys [][]byte
			c := b.replays.Cursor()
			for k, _ := c.First(); k != nil && bytes.Compare(k[:8], limit) <= 0; k, _ = c.Next() {
				if len(keys) == gcBatch {
					done = false
					break
				}
				keys = append(keys, bytes.Clone(k))
			}
			for _, k := range keys {
				var h store.Hash
				copy(h[:], k[8:])
				t, ok, err := b.token(h)
				if err != nil {
					return err
				}
				if ok && t.HasReplay {
					t.HasReplay, t.Replay = false, nil
					if err := b.putToken(h, t); err != nil {
						return err
					}
				}
				if err := b.replays.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil || done {
			return err
		}
	}
}

// deadSince is when f stops (or stopped) being live as things stand.
func deadSince(f store.Family) time.Time {
	end := f.ExpiresAt
	if f.IdleTimeout > 0 {
		if idle := f.LastUsedAt.Add(f.IdleTimeout); idle.Before(end) {
			end = idle
		}
	}
	if !f.RevokedAt.IsZero() && f.RevokedAt.Before(end) {
		end = f.RevokedAt
	}
	return end
}

func collectable(f store.Family, now time.Time, retain time.Duration) bool {
	return deadSince(f).Add(retain).Before(now)
}

// gcFamilies finds collectable families in a read transaction, then deletes them (checked
// again) in write transactions of at most gcBatch families.
func (s *Store) gcFamilies(ctx context.Context, now time.Time, retain time.Duration) (int, error) {
	var ids []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketFamilies).ForEach(func(k, v []byte) error {
			var r familyRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("family %q: %w", k, err)
			}
			if collectable(r.family(string(k)), now, retain) {
				ids = append(ids, string(k))
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	deleted := 0
	for batch := range slices.Chunk(ids, gcBatch) {
		if err := ctx.Err(); err != nil {
			return deleted, err
		}
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := open(tx)
			n := 0
			for _, id := range batch {
				f, ok, err := b.family(id)
				if err != nil {
					return err
				}
				if !ok || !collectable(f, now, retain) {
					continue
				}
				if err := b.deleteFamily(f); err != nil {
					return err
				}
				n++
			}
			deleted += n
			return nil
		})
		if err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

// deleteFamily deletes f, its tokens and every index entry that points at them.
func (b buckets) deleteFamily(f store.Family) error {
	prefix := appendLP(nil, f.ID)
	var keys [][]byte
	c := b.familyTokens.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		var h store.Hash
		copy(h[:], k[len(prefix):])
		t, ok, err := b.token(h)
		if err != nil {
			return err
		}
		if ok && t.HasReplay {
			if err := b.replays.Delete(replayKey(t.SpentAt, h)); err != nil {
				return err
			}
		}
		if err := b.tokens.Delete(h[:]); err != nil {
			return err
		}
		if err := b.familyTokens.Delete(k); err != nil {
			return err
		}
	}
	if err := b.subjects.Delete(append(subjectPrefix(f.Policy, f.Subject), f.ID...)); err != nil {
		return err
	}
	return b.families.Delete([]byte(f.ID))
}
