-- Refresh-token families (sessions) and their tokens, stored by SHA-256 hash only.
-- Times are timestamptz (microseconds); durations are bigint nanoseconds.

CREATE TABLE families (
    id              text        PRIMARY KEY,
    policy          text        NOT NULL,
    subject         text        NOT NULL,
    client_id       text        NOT NULL DEFAULT '',
    scope           text        NOT NULL DEFAULT '',
    jkt             text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    idle_timeout_ns bigint      NOT NULL DEFAULT 0 CHECK (idle_timeout_ns >= 0),
    last_used_at    timestamptz NOT NULL,
    rotations       bigint      NOT NULL DEFAULT 0,
    revoked_at      timestamptz,
    revoke_reason   text        NOT NULL DEFAULT ''
);

-- RevokeSubject: the live families of one subject under one policy.
CREATE INDEX families_policy_subject_live ON families (policy, subject) WHERE revoked_at IS NULL;

CREATE TABLE tokens (
    hash      bytea       PRIMARY KEY CHECK (length(hash) = 32),
    family_id text        NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    -- NULL while the token is current.
    spent_at  timestamptz,
    -- The response recorded when the token was spent; NULL once GC drops it.
    replay    bytea,
    CHECK (replay IS NULL OR spent_at IS NOT NULL)
);

-- GC: a family's tokens go with it (ON DELETE CASCADE needs this index).
CREATE INDEX tokens_family_id ON tokens (family_id);
-- GC: replays by age.
CREATE INDEX tokens_replay_spent_at ON tokens (spent_at) WHERE replay IS NOT NULL;
