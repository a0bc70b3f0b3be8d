-- RevokedSince: the families revoked since a time, in revocation order. The token service
-- asks for the last access-token lifetime on every GC interval, to re-create the
-- RevocationEntries of sessions whose entry a crash may have lost.
-- Built inside the migration transaction (not CONCURRENTLY): writes to families wait for
-- the build, which is one pass over the table.
CREATE INDEX families_revoked_at ON families (revoked_at, id) WHERE revoked_at IS NOT NULL;
