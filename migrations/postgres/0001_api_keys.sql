-- api-keys schema version 1, PostgreSQL (`PostgresKeyStore`).
--
-- `PostgresKeyStore::migrate()` applies this file (embedded in the crate)
-- once and records it in `api_keys_schema_migrations`. Every statement is
-- `... IF NOT EXISTS`, so running it again is harmless. To apply the schema
-- by hand instead (a role that may not create tables), run the files of
-- this directory in order; the store never checks the recorded version.
--
-- Plain tables, CHECK constraints and a secondary index only: no triggers,
-- sequences, extensions, enum types or stored procedures.
--
-- Column forms (one codec for every engine; see the crate's README, "Stores"):
-- instants are BIGINT Unix microseconds (UTC); enums their stable lower-case
-- names; scopes and domain patterns canonical comma-separated text ('' when
-- empty); the IP list its canonical comma-separated text.

-- One row per key. Never a secret: a digest of it, and for signing keys the
-- secret sealed (AEAD) under a host-held key.
CREATE TABLE IF NOT EXISTS api_keys (
    -- The public key id (16 random bytes).
    id                BYTEA  NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    owner             TEXT   NOT NULL,
    kind              TEXT   NOT NULL CHECK (kind IN ('secret', 'publishable')),
    environment       TEXT   NOT NULL CHECK (environment IN ('test', 'live')),
    name              TEXT   NOT NULL,
    note              TEXT,
    description       TEXT,
    scopes            TEXT   NOT NULL,
    allowed_domains   TEXT   NOT NULL,
    allowed_ips       TEXT   NOT NULL,
    status            TEXT   NOT NULL CHECK (status IN ('pending', 'active', 'inactive', 'revoked')),
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT,
    revoked_at        BIGINT,
    -- Roll links (key ids).
    predecessor       BYTEA  CHECK (length(predecessor) = 16),
    successor         BYTEA  CHECK (length(successor) = 16),
    rolled_at         BIGINT,
    grace_ends_at     BIGINT,
    -- Compare-and-swap version; every change increments it.
    version           BIGINT NOT NULL CHECK (version >= 0),
    -- The secret's hash: SHA-256, or HMAC-SHA256 under pepper `pepper_version`;
    -- NULL exactly while the key is pending (it has no secret yet).
    pepper_version    BIGINT CHECK (pepper_version BETWEEN 0 AND 4294967295),
    secret_digest     BYTEA  CHECK (length(secret_digest) = 32),
    -- Signing keys only: the sealed secret (all three or none).
    sealed_version    BIGINT CHECK (sealed_version BETWEEN 0 AND 4294967295),
    sealed_nonce      BYTEA  CHECK (length(sealed_nonce) = 24),
    sealed_ciphertext BYTEA,
    -- Display form of the token, e.g. `sk_live_…x9Qa`.
    redacted          TEXT   NOT NULL,
    -- 1 for a signing key (fixed at creation), else 0.
    signing           BIGINT NOT NULL DEFAULT 0 CHECK (signing IN (0, 1)),
    CONSTRAINT api_keys_digest_unless_pending CHECK (
        (secret_digest IS NULL) = (status = 'pending')
    ),
    -- A signing key has a sealed secret once it is not pending; no other key has one.
    CONSTRAINT api_keys_sealed_iff_signing CHECK (
        (status = 'pending' AND sealed_version IS NULL)
        OR (status <> 'pending' AND (signing = 1) = (sealed_version IS NOT NULL))
    ),
    CONSTRAINT api_keys_sealed_all_or_none CHECK (
        (sealed_version IS NULL) = (sealed_nonce IS NULL)
        AND (sealed_nonce IS NULL) = (sealed_ciphertext IS NULL)
    )
);

CREATE INDEX IF NOT EXISTS api_keys_owner_idx ON api_keys (owner);

-- When each key was last used, apart from the wide row: a touch rewrites
-- this narrow row and re-checks none of the constraints above. One row per
-- key, written with it; no constraints on purpose.
CREATE TABLE IF NOT EXISTS api_key_usage (
    id           BYTEA  NOT NULL PRIMARY KEY,
    last_used_at BIGINT,
    -- Accepted uses written so far.
    use_count    BIGINT NOT NULL DEFAULT 0
);

-- One row per owner that ever had a key written: the lock row that serialises
-- an owner's writes (`INSERT ... ON CONFLICT (owner) DO UPDATE`, which creates
-- and row-locks it in one statement), so the one-active-key check and the
-- write it guards are atomic even for an owner with no keys yet.
CREATE TABLE IF NOT EXISTS api_key_owners (
    owner TEXT NOT NULL PRIMARY KEY
);
