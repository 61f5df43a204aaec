-- api-keys: the PostgreSQL schema of `PostgresKeyStore`, version 1.
--
-- Idempotent: `PostgresKeyStore::migrate()` runs this whole file (embedded in
-- the crate) every time it is called, so every statement is
-- `... IF NOT EXISTS`. Apply it by hand instead if the application's database
-- role may not create tables.
--
-- Only plain tables, CHECK constraints and a secondary index: no triggers,
-- sequences, extensions, enum types or stored procedures, so the schema also
-- works on PostgreSQL-compatible distributed databases.

-- One row per key. Never a secret: a digest of it, and for signing keys the
-- secret sealed (AEAD) under a host-held key.
CREATE TABLE IF NOT EXISTS api_keys (
    -- The public key id (16 random bytes).
    id                BYTEA       PRIMARY KEY CHECK (length(id) = 16),
    owner             TEXT        NOT NULL,
    kind              TEXT        NOT NULL CHECK (kind IN ('secret', 'publishable')),
    environment       TEXT        NOT NULL CHECK (environment IN ('test', 'live')),
    name              TEXT        NOT NULL,
    note              TEXT,
    description       TEXT,
    -- Sorted, de-duplicated scope names; empty = see `Scopes`.
    scopes            TEXT[]      NOT NULL DEFAULT '{}',
    -- Canonical domain patterns (`example.com`, `*.example.com`); empty = any.
    allowed_domains   TEXT[]      NOT NULL DEFAULT '{}',
    -- Canonical comma-separated addresses and networks; '' = any.
    allowed_ips       TEXT        NOT NULL DEFAULT '',
    status            TEXT        NOT NULL CHECK (status IN ('active', 'inactive', 'revoked')),
    -- Instants, stored with microsecond precision.
    created_at        TIMESTAMPTZ NOT NULL,
    expires_at        TIMESTAMPTZ,
    last_used_at      TIMESTAMPTZ,
    revoked_at        TIMESTAMPTZ,
    rolled_at         TIMESTAMPTZ,
    grace_ends_at     TIMESTAMPTZ,
    -- Roll links (key ids).
    predecessor       BYTEA       CHECK (length(predecessor) = 16),
    successor         BYTEA       CHECK (length(successor) = 16),
    -- Compare-and-swap version; every change increments it.
    version           BIGINT      NOT NULL CHECK (version >= 0),
    -- The secret's hash: SHA-256, or HMAC-SHA256 under pepper `pepper_version`.
    -- Versions are u32, hence BIGINT.
    pepper_version    BIGINT      CHECK (pepper_version BETWEEN 0 AND 4294967295),
    secret_digest     BYTEA       NOT NULL CHECK (length(secret_digest) = 32),
    -- Signing keys only: the sealed secret (all three or none).
    sealed_version    BIGINT      CHECK (sealed_version BETWEEN 0 AND 4294967295),
    sealed_nonce      BYTEA       CHECK (length(sealed_nonce) = 24),
    sealed_ciphertext BYTEA,
    -- Display form of the token, e.g. `sk_live_…x9Qa`.
    redacted          TEXT        NOT NULL,
    CONSTRAINT api_keys_sealed_all_or_none CHECK (
        (sealed_version IS NULL) = (sealed_nonce IS NULL)
        AND (sealed_nonce IS NULL) = (sealed_ciphertext IS NULL)
    )
);

CREATE INDEX IF NOT EXISTS api_keys_owner_idx ON api_keys (owner);

-- One row per owner that ever had a key written: the lock row that serialises
-- an owner's writes (`INSERT ... ON CONFLICT (owner) DO UPDATE`, which creates
-- and row-locks it in one statement), so the one-active-key check and the
-- write it guards are atomic even for an owner with no keys yet. Holds no
-- other data.
CREATE TABLE IF NOT EXISTS api_key_owners (
    owner TEXT PRIMARY KEY
);
