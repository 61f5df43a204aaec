-- api-keys schema version 1, SQLite (`SqliteKeyStore`).
--
-- `SqliteKeyStore::migrate()` applies this file (embedded in the crate) once,
-- in a transaction, and records it in `api_keys_schema_migrations`. Every
-- statement is `... IF NOT EXISTS`, so running it again is harmless. Needs
-- SQLite 3.37 or later (STRICT tables; the crate bundles a newer one).
--
-- Column forms (one codec for every engine; see the crate's README, "Stores"):
-- instants are INTEGER Unix microseconds (UTC); enums their stable lower-case
-- names; scopes and domain patterns canonical comma-separated text ('' when
-- empty); the IP list its canonical comma-separated text.

-- One row per key. Never a secret: a digest of it, and for signing keys the
-- secret sealed (AEAD) under a host-held key.
CREATE TABLE IF NOT EXISTS api_keys (
    id                BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    owner             TEXT    NOT NULL,
    kind              TEXT    NOT NULL CHECK (kind IN ('secret', 'publishable')),
    environment       TEXT    NOT NULL CHECK (environment IN ('test', 'live')),
    name              TEXT    NOT NULL,
    note              TEXT,
    description       TEXT,
    scopes            TEXT    NOT NULL,
    allowed_domains   TEXT    NOT NULL,
    allowed_ips       TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('pending', 'active', 'inactive', 'revoked')),
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER,
    revoked_at        INTEGER,
    predecessor       BLOB    CHECK (length(predecessor) = 16),
    successor         BLOB    CHECK (length(successor) = 16),
    rolled_at         INTEGER,
    grace_ends_at     INTEGER,
    version           INTEGER NOT NULL CHECK (version >= 0),
    pepper_version    INTEGER CHECK (pepper_version BETWEEN 0 AND 4294967295),
    secret_digest     BLOB    CHECK (length(secret_digest) = 32),
    sealed_version    INTEGER CHECK (sealed_version BETWEEN 0 AND 4294967295),
    sealed_nonce      BLOB    CHECK (length(sealed_nonce) = 24),
    sealed_ciphertext BLOB,
    redacted          TEXT    NOT NULL,
    signing           INTEGER NOT NULL DEFAULT 0 CHECK (signing IN (0, 1)),
    CHECK ((secret_digest IS NULL) = (status = 'pending')),
    CHECK (
        (status = 'pending' AND sealed_version IS NULL)
        OR (status <> 'pending' AND (signing = 1) = (sealed_version IS NOT NULL))
    ),
    CHECK (
        (sealed_version IS NULL) = (sealed_nonce IS NULL)
        AND (sealed_nonce IS NULL) = (sealed_ciphertext IS NULL)
    )
) STRICT, WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS api_keys_owner_idx ON api_keys (owner);

-- When each key was last used, apart from the wide row (a touch rewrites a
-- small row). One row per key, written with it; no constraints on purpose.
CREATE TABLE IF NOT EXISTS api_key_usage (
    id           BLOB    NOT NULL PRIMARY KEY,
    last_used_at INTEGER,
    use_count    INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;

-- No owner lock table: `BEGIN IMMEDIATE` serialises every writer of the file.
