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

// Package pgstore is the PostgreSQL store.Store, for several issuer replicas sharing one
// database.
//
// Rotate runs in one READ COMMITTED transaction that first locks the presented token's row
// and its family's row (SELECT … FOR UPDATE). Concurrent presentations of the same token,
// from any replica, queue on that lock; each one that waits then reads the row as the
// winner committed it (spent, with its Replay) and answers Replayed. Deadlocks (a rotation
// racing GC's cascading delete) and serialization failures are retried.
//
// The schema is created and migrated on Open (embedded migrations, recorded in the
// schema_version table, applied under an advisory lock so replicas starting together do
// not race). Tables go in the connection's current schema: set search_path in the DSN to
// use another than public. Times are stored with microsecond precision.
package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keyward-dev/keyward/internal/issuer/store"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrationLock is the pg_advisory_xact_lock key that serializes migrations
// ("keyward\x00st" as an int64).
const migrationLock int64 = 0x6b6579776172_6400

// maxAttempts bounds the retries of a transaction that failed with a deadlock or a
// serialization failure.
const maxAttempts = 5

// gcBatch bounds the rows one GC statement touches, so no transaction holds many locks.
const gcBatch = 1000

var _ store.Store = (*Store)(nil)

// Store is the PostgreSQL store; safe for concurrent use, by goroutines and replicas.
type Store struct {
	pool *pgxpool.Pool
}

// Open connects to dsn (a libpq URL or key=value string; pgxpool settings such as
// pool_max_conns are honoured) and migrates the schema.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	return &Store{pool: pool}, nil
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

type migration struct {
	version int
	name    string
	sql     string
}

// migrations lists the embedded migrations, NNNN_name.sql, in version order.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.sql", e.Name())
		}
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		if len(ms) > 0 && ms[len(ms)-1].version != v-1 {
			return nil, fmt.Errorf("migration %s: versions are not consecutive", e.Name())
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	return ms, nil
}

// migrate applies the migrations the database lacks, in one transaction. A schema that is
// up to date is only read, so a role without CREATE on the schema can run the issuer once
// a more privileged one has migrated it.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	latest := ms[len(ms)-1].version
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('schema_version') IS NOT NULL`).Scan(&exists); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if exists {
		var current int
		if err := pool.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM schema_version`).Scan(&current); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if current == latest {
			return nil
		}
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
			version    integer     PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		var current int
		if err := tx.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM schema_version`).Scan(&current); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if current > latest {
			return fmt.Errorf("database schema version %d is newer than this binary's %d: run a newer issuer", current, latest)
		}
		for _, m := range ms[current:] {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_version (version) VALUES ($1)`, m.version); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
		}
		return nil
	})
}

// ---- SQL

const familyColumns = `f.id, f.policy, f.subject, f.client_id, f.scope, f.jkt, f.created_at, f.expires_at,
	f.idle_timeout_ns, f.last_used_at, f.rotations, f.revoked_at, f.revoke_reason`

// idleDeadline is when the family f expires for idleness (NULL: no idle limit).
const idleDeadline = `CASE WHEN f.idle_timeout_ns > 0
	THEN f.last_used_at + (f.idle_timeout_ns / 1000) * interval '1 microsecond' END`

// scanFamily scans familyColumns (after any leading dest).
func scanFamily(row pgx.Row, lead ...any) (store.Family, error) {
	var (
		f       store.Family
		idle    int64
		revoked *time.Time
	)
	dest := slices.Concat(lead, []any{&f.ID, &f.Policy, &f.Subject, &f.ClientID, &f.Scope, &f.JKT, &f.CreatedAt,
		&f.ExpiresAt, &idle, &f.LastUsedAt, &f.Rotations, &revoked, &f.RevokeReason})
	if err := row.Scan(dest...); err != nil {
		return store.Family{}, err
	}
	f.IdleTimeout = time.Duration(idle)
	f.CreatedAt, f.ExpiresAt, f.LastUsedAt = f.CreatedAt.UTC(), f.ExpiresAt.UTC(), f.LastUsedAt.UTC()
	if revoked != nil {
		f.RevokedAt = revoked.UTC()
	}
	return f, nil
}

// nullTime maps the zero time to NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// inTx runs fn in a transaction, retrying deadlocks and serialization failures.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, s.pool, fn)
		if err == nil || attempt == maxAttempts || !retryable(err) {
			return err
		}
	}
}

func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// ---- store.Store

// CreateFamily stores f with its first token, in one statement.
func (s *Store) CreateFamily(ctx context.Context, f store.Family, first store.Hash) error {
	if f.ID == "" {
		return errors.New("pgstore: family ID is empty")
	}
	_, err := s.pool.Exec(ctx, `WITH f AS (
			INSERT INTO families (id, policy, subject, client_id, scope, jkt, created_at, expires_at,
				idle_timeout_ns, last_used_at, rotations, revoked_at, revoke_reason)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
			RETURNING id)
		INSERT INTO tokens (hash, family_id) SELECT $14, id FROM f`,
		f.ID, f.Policy, f.Subject, f.ClientID, f.Scope, f.JKT, f.CreatedAt, f.ExpiresAt,
		int64(f.IdleTimeout), f.LastUsedAt, f.Rotations, nullTime(f.RevokedAt), f.RevokeReason, first[:])
	if isUniqueViolation(err) {
		return fmt.Errorf("pgstore: create family %q: %w", f.ID, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("pgstore: create family %q: %w", f.ID, err)
	}
	return nil
}

// Rotate spends r.Presented; see store.Store and the package comment.
func (s *Store) Rotate(ctx context.Context, r store.RotateRequest) (store.RotateResult, error) {
	var res store.RotateResult
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		res = store.RotateResult{}
		var (
			spentAt   *time.Time
			hasReplay bool
			replay    []byte
		)
		row := tx.QueryRow(ctx, `SELECT t.spent_at, t.replay IS NOT NULL, t.replay, `+familyColumns+`
			FROM tokens t JOIN families f ON f.id = t.family_id
			WHERE t.hash = $1
			FOR UPDATE`, r.Presented[:])
		f, err := scanFamily(row, &spentAt, &hasReplay, &replay)
		if errors.Is(err, pgx.ErrNoRows) {
			res.Outcome = store.Unknown
			return nil
		}
		if err != nil {
			return err
		}
		res.Family = f
		switch {
		case !f.Live(r.Now):
			res.Outcome = store.Dead
			return nil
		case spentAt == nil:
			replay := r.Replay
			if replay == nil {
				replay = []byte{} // NULL means "dropped by GC"
			}
			row := tx.QueryRow(ctx, `WITH spent AS (
					UPDATE tokens SET spent_at = $2, replay = $3 WHERE hash = $1
				), next AS (
					INSERT INTO tokens (hash, family_id) VALUES ($4, $5)
				)
				UPDATE families f SET rotations = f.rotations + 1, last_used_at = $2
				WHERE f.id = $5
				RETURNING `+familyColumns,
				r.Presented[:], r.Now, replay, r.Next[:], f.ID)
			if res.Family, err = scanFamily(row); err != nil {
				if isUniqueViolation(err) {
					return fmt.Errorf("next token: %w", store.ErrExists)
				}
				return err
			}
			res.Outcome = store.Rotated
			return nil
		case hasReplay && r.Now.Before(spentAt.Add(r.ReplayWindow)):
			res.Outcome, res.Replay = store.Replayed, replay
			return nil
		default:
			row := tx.QueryRow(ctx, `UPDATE families f SET revoked_at = $2, revoke_reason = $3
				WHERE f.id = $1 RETURNING `+familyColumns, f.ID, r.Now, store.ReuseReason)
			if res.Family, err = scanFamily(row); err != nil {
				return err
			}
			res.Outcome = store.Reused
			return nil
		}
	})
	if err != nil {
		return store.RotateResult{}, fmt.Errorf("pgstore: rotate: %w", err)
	}
	return res, nil
}

// Lookup returns the family of h and whether h is its current token.
func (s *Store) Lookup(ctx context.Context, h store.Hash) (store.Family, bool, error) {
	var current bool
	row := s.pool.QueryRow(ctx, `SELECT t.spent_at IS NULL, `+familyColumns+`
		FROM tokens t JOIN families f ON f.id = t.family_id WHERE t.hash = $1`, h[:])
	f, err := scanFamily(row, &current)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Family{}, false, fmt.Errorf("pgstore: lookup: token: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Family{}, false, fmt.Errorf("pgstore: lookup: %w", err)
	}
	return f, current, nil
}

// Family returns the family id.
func (s *Store) Family(ctx context.Context, id string) (store.Family, error) {
	f, err := scanFamily(s.pool.QueryRow(ctx, `SELECT `+familyColumns+` FROM families f WHERE f.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Family{}, fmt.Errorf("pgstore: family %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Family{}, fmt.Errorf("pgstore: family %q: %w", id, err)
	}
	return f, nil
}

// RevokeFamily revokes family id unless it is revoked already (then its first revocation
// stays).
func (s *Store) RevokeFamily(ctx context.Context, id, reason string, at time.Time) (store.Family, error) {
	var f store.Family
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		// In SET, every expression sees the row as it was: the CASE tests the old revoked_at.
		f, err = scanFamily(tx.QueryRow(ctx, `UPDATE families f SET
				revoked_at = COALESCE(f.revoked_at, $2),
				revoke_reason = CASE WHEN f.revoked_at IS NULL THEN $3 ELSE f.revoke_reason END
			WHERE f.id = $1 RETURNING `+familyColumns, id, at, reason))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Family{}, fmt.Errorf("pgstore: revoke family %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Family{}, fmt.Errorf("pgstore: revoke family %q: %w", id, err)
	}
	return f, nil
}

// RevokeSubject revokes every family of subject under policy that is live at at.
func (s *Store) RevokeSubject(ctx context.Context, policy, subject, reason string, at time.Time) ([]string, error) {
	var ids []string
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE families f SET revoked_at = $3, revoke_reason = $4
			WHERE f.policy = $1 AND f.subject = $2 AND f.revoked_at IS NULL AND f.expires_at > $3
				AND (f.idle_timeout_ns = 0 OR `+idleDeadline+` > $3)
			RETURNING f.id`, policy, subject, at, reason)
		if err != nil {
			return err
		}
		ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: revoke subject: %w", err)
	}
	slices.Sort(ids)
	return ids, nil
}

// revokedSinceSQL reads the index families_revoked_at (migration 0002) in order.
const revokedSinceSQL = `SELECT ` + familyColumns + ` FROM families f
	WHERE f.revoked_at >= $1 ORDER BY f.revoked_at, f.id`

// RevokedSince returns the families revoked at or after since, by revoked_at then id.
func (s *Store) RevokedSince(ctx context.Context, since time.Time) ([]store.Family, error) {
	rows, err := s.pool.Query(ctx, revokedSinceSQL, since)
	if err != nil {
		return nil, fmt.Errorf("pgstore: revoked since: %w", err)
	}
	fams, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Family, error) { return scanFamily(row) })
	if err != nil {
		return nil, fmt.Errorf("pgstore: revoked since: %w", err)
	}
	return fams, nil
}

// GC drops replays whose window has passed and deletes families dead for more than retain
// (their tokens go by ON DELETE CASCADE), in batches of gcBatch rows.
func (s *Store) GC(ctx context.Context, now time.Time, replayWindow, retain time.Duration) (int, error) {
	for {
		tag, err := s.exec(ctx, `UPDATE tokens SET replay = NULL WHERE hash IN (
				SELECT hash FROM tokens WHERE replay IS NOT NULL AND spent_at <= $1 LIMIT $2)`,
			now.Add(-replayWindow), gcBatch)
		if err != nil {
			return 0, fmt.Errorf("pgstore: gc replays: %w", err)
		}
		if tag.RowsAffected() < gcBatch {
			break
		}
	}
	deleted := 0
	for {
		tag, err := s.exec(ctx, `DELETE FROM families WHERE id IN (
				SELECT f.id FROM families f
				WHERE LEAST(f.revoked_at, f.expires_at, `+idleDeadline+`) < $1 LIMIT $2)`,
			now.Add(-retain), gcBatch)
		if err != nil {
			return deleted, fmt.Errorf("pgstore: gc families: %w", err)
		}
		deleted += int(tag.RowsAffected())
		if tag.RowsAffected() < gcBatch {
			return deleted, nil
		}
	}
}

// exec runs one statement in its own transaction, retried like inTx.
func (s *Store) exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	var tag pgconn.CommandTag
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		tag, err = tx.Exec(ctx, sql, args...)
		return err
	})
	return tag, err
}
