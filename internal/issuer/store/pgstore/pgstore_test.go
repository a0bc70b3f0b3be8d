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

package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keyward-dev/keyward/internal/issuer/store"
	"github.com/keyward-dev/keyward/internal/issuer/store/storetest"
)

// The tests run against the server in KEYWARD_PG_DSN (a role that may CREATE DATABASE).
// Each run creates a database keyward_test_<random> and drops it at the end; each test gets
// a schema of its own in it (search_path in the DSN), so runs and tests do not interfere.
const skipMessage = "pgstore: KEYWARD_PG_DSN is not set, so the PostgreSQL contract tests are skipped; " +
	"run `hack/postgres.sh start` and `export KEYWARD_PG_DSN=$(hack/postgres.sh dsn)` " +
	"(KEYWARD_REQUIRE_PG=1 turns this skip into a failure)"

var (
	testDB     string // DSN of this run's database ("" when skipped)
	testAdmin  *pgx.Conn
	adminMu    sync.Mutex
	schemaSeqN atomic.Int64
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dsn := os.Getenv("KEYWARD_PG_DSN")
	if dsn == "" {
		return m.Run() // every test skips or fails in requirePG
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgstore tests: connecting to KEYWARD_PG_DSN: %v\n", err)
		return 1
	}
	defer admin.Close(ctx)
	name := "keyward_test_" + randomHex(6)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		fmt.Fprintf(os.Stderr, "pgstore tests: %v\n", err)
		return 1
	}
	defer func() {
		if _, err := admin.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			fmt.Fprintf(os.Stderr, "pgstore tests: dropping %s: %v\n", name, err)
		}
	}()
	if testDB, err = withParams(dsn, name, nil); err != nil {
		fmt.Fprintf(os.Stderr, "pgstore tests: %v\n", err)
		return 1
	}
	if testAdmin, err = pgx.Connect(ctx, testDB); err != nil {
		fmt.Fprintf(os.Stderr, "pgstore tests: %v\n", err)
		return 1
	}
	defer testAdmin.Close(ctx)
	return m.Run()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// withParams returns dsn with its database replaced by db (when not "") and params added;
// it handles both URL and key=value DSNs.
func withParams(dsn, db string, params map[string]string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("KEYWARD_PG_DSN is not a valid URL") // the error would quote the password
		}
		if db != "" {
			u.Path = "/" + db
		}
		q := u.Query()
		for k, v := range params {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	if db != "" {
		dsn += " dbname=" + db
	}
	for k, v := range params {
		dsn += " " + k + "=" + v
	}
	return dsn, nil
}

// requirePG skips (or, with KEYWARD_REQUIRE_PG=1, fails) when no server is configured.
func requirePG(tb testing.TB) {
	tb.Helper()
	if testDB != "" {
		return
	}
	if os.Getenv("KEYWARD_REQUIRE_PG") == "1" {
		tb.Fatal("pgstore: KEYWARD_REQUIRE_PG=1 but KEYWARD_PG_DSN is not set; " +
			"run `hack/postgres.sh start` and `export KEYWARD_PG_DSN=$(hack/postgres.sh dsn)`")
	}
	tb.Skip(skipMessage)
}

// newSchema creates an empty schema and returns a DSN that uses it.
func newSchema(tb testing.TB) string {
	tb.Helper()
	requirePG(tb)
	name := fmt.Sprintf("t%d_%s", schemaSeqN.Add(1), randomHex(3))
	adminMu.Lock()
	_, err := testAdmin.Exec(context.Background(), "CREATE SCHEMA "+name)
	adminMu.Unlock()
	if err != nil {
		tb.Fatal(err)
	}
	// 16 connections per pool, so the races really are concurrent in the server.
	dsn, err := withParams(testDB, "", map[string]string{"search_path": name, "pool_max_conns": "16"})
	if err != nil {
		tb.Fatal(err)
	}
	return dsn
}

func openDSN(tb testing.TB, dsn string) *Store {
	tb.Helper()
	s, err := Open(context.Background(), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func openFresh(tb testing.TB) store.Store { return openDSN(tb, newSchema(tb)) }

func TestContract(t *testing.T) {
	requirePG(t)
	storetest.Run(t, func(t *testing.T) store.Store { return openFresh(t) })
}

// Two pools on one schema are two issuer replicas.
func TestContractReplicas(t *testing.T) {
	requirePG(t)
	storetest.RunReplicas(t, func(t *testing.T) (store.Store, store.Store) {
		dsn := newSchema(t)
		return openDSN(t, dsn), openDSN(t, dsn)
	})
}

func schemaVersions(t *testing.T, s *Store) []int {
	t.Helper()
	rows, err := s.pool.Query(t.Context(), "SELECT version FROM schema_version ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	v, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Replicas that start together migrate once; reopening migrates nothing.
func TestMigrationsIdempotent(t *testing.T) {
	dsn := newSchema(t)
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	const replicas = 4
	stores := make([]*Store, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() { stores[i], errs[i] = Open(t.Context(), dsn) })
	}
	wg.Wait()
	for i := range replicas {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		defer stores[i].Close()
	}
	again := openDSN(t, dsn)
	got := schemaVersions(t, again)
	if len(got) != len(ms) || got[len(got)-1] != ms[len(ms)-1].version {
		t.Fatalf("schema_version %v after concurrent and repeated opens, want 1..%d once each", got, len(ms))
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	dsn := newSchema(t)
	s := openDSN(t, dsn)
	if _, err := s.pool.Exec(t.Context(), "INSERT INTO schema_version (version) VALUES (999)"); err != nil {
		t.Fatal(err)
	}
	_, err := Open(t.Context(), dsn)
	if err == nil || !strings.Contains(err.Error(), "schema version 999 is newer") {
		t.Fatalf("Open of a newer schema: %v, want a clear refusal", err)
	}
}

// A role that may only read and write the tables (no CREATE on the schema) runs the
// issuer once the schema is migrated: Open only reads schema_version then.
func TestOpenWithoutCreatePrivilege(t *testing.T) {
	dsn := newSchema(t)
	openDSN(t, dsn) // migrates as the owner
	ctx := t.Context()
	role, password := "keyward_rt_"+randomHex(4), randomHex(12)
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		t.Skip("this test builds a URL DSN; KEYWARD_PG_DSN is in key=value form")
	}
	schema := u.Query().Get("search_path")
	adminMu.Lock()
	defer adminMu.Unlock()
	for _, stmt := range []string{
		"CREATE ROLE " + role + " LOGIN PASSWORD '" + password + "'",
		"GRANT USAGE ON SCHEMA " + schema + " TO " + role,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA " + schema + " TO " + role,
	} {
		if _, err := testAdmin.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		_, _ = testAdmin.Exec(context.Background(), "DROP OWNED BY "+role)
		_, _ = testAdmin.Exec(context.Background(), "DROP ROLE "+role)
	}()
	u.User = url.UserPassword(role, password)
	s, err := Open(ctx, u.String())
	if err != nil {
		t.Fatalf("Open as a role without CREATE: %v", err)
	}
	defer s.Close()
	f := store.Family{ID: "fam", Policy: "p/q", Subject: "alice", ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	if err := s.CreateFamily(ctx, f, store.HashToken("a")); err != nil {
		t.Fatal(err)
	}
	res, err := s.Rotate(ctx, store.RotateRequest{Presented: store.HashToken("a"), Next: store.HashToken("b"),
		Now: time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC), ReplayWindow: time.Minute, Replay: []byte("r")})
	if err != nil || res.Outcome != store.Rotated {
		t.Fatalf("Rotate as a role without CREATE: %v, %v", res.Outcome, err)
	}
	if _, err := s.RevokedSince(ctx, time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatalf("RevokedSince as a role without CREATE: %v", err)
	}
	if _, err := s.GC(ctx, time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC), time.Minute, time.Hour); err != nil {
		t.Fatalf("GC as a role without CREATE: %v", err)
	}
}

// A database at schema version 1 (an older issuer) is migrated on Open: the revocations it
// already holds are listed by RevokedSince, through the new index.
func TestMigrateFromVersion1(t *testing.T) {
	dsn := newSchema(t)
	ctx := t.Context()
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	old, err := pgxpool.New(ctx, dsn) // an older issuer's pool
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, stmt := range []string{
		`CREATE TABLE schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
		ms[0].sql,
		`INSERT INTO schema_version (version) VALUES (1)`,
		`INSERT INTO families (id, policy, subject, created_at, expires_at, last_used_at, revoked_at, revoke_reason)
			VALUES ('fam', 'p/q', 'alice', '2028-12-31Z', '2030-01-01Z', '2028-12-31Z', '2029-01-01Z', 'logout')`,
	} {
		if _, err := old.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()

	s := openDSN(t, dsn)
	if got := schemaVersions(t, s); len(got) != len(ms) || got[len(got)-1] != ms[len(ms)-1].version {
		t.Fatalf("schema_version %v after migrating from 1", got)
	}
	fams, err := s.RevokedSince(ctx, at)
	if err != nil || len(fams) != 1 || fams[0].ID != "fam" || !fams[0].RevokedAt.Equal(at) {
		t.Fatalf("RevokedSince after the migration: %+v, %v", fams, err)
	}
	// The query can use the index (the planner prefers a scan of a table this small, so it
	// is told not to).
	var plan string
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `EXPLAIN `+revokedSinceSQL, at)
		if err != nil {
			return err
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		plan = strings.Join(lines, "\n")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan, "families_revoked_at") {
		t.Fatalf("RevokedSince does not use families_revoked_at:\n%s", plan)
	}
}

// Errors never carry the password of the DSN.
func TestOpenErrorHidesPassword(t *testing.T) {
	_, err := Open(t.Context(), "postgres://keyward:hunter2-secret@127.0.0.1:1/db?sslmode=disable&connect_timeout=2")
	if err == nil {
		t.Fatal("Open of an unreachable server succeeded")
	}
	if strings.Contains(err.Error(), "hunter2-secret") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func BenchmarkRotate(b *testing.B) {
	requirePG(b)
	storetest.BenchRotate(b, openFresh)
}
