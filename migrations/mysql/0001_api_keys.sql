-- api-keys schema version 1, MySQL 8.0.16+ and MariaDB 10.5+ (`MySqlKeyStore`).
--
-- `MySqlKeyStore::migrate()` applies this file (embedded in the crate) once
-- and records it in `api_keys_schema_migrations`. DDL is not transactional
-- here (each statement commits by itself), so every statement is written to
-- be run again safely: `CREATE TABLE IF NOT EXISTS`, with the indexes inside
-- the table definition. Two servers migrating at once both run it; the second
-- finds the tables.
--
-- Tables are utf8mb4 with the binary collation: owner ids and the other text
-- compare exactly (`Acct` and `acct` are two owners).
--
-- Column forms (one codec for every engine; see the crate's README, "Stores"):
-- instants are BIGINT Unix microseconds (UTC); enums their stable lower-case
-- names; scopes and domain patterns canonical comma-separated text ('' when
-- empty); the IP list its canonical comma-separated text.

-- One row per key. Never a secret: a digest of it, and for signing keys the
-- secret sealed (AEAD) under a host-held key.
CREATE TABLE IF NOT EXISTS api_keys (
    id                BINARY(16)   NOT NULL PRIMARY KEY,
    owner             VARCHAR(128) NOT NULL,
    kind              VARCHAR(16)  NOT NULL CHECK (kind IN ('secret', 'publishable')),
    environment       VARCHAR(16)  NOT NULL CHECK (environment IN ('test', 'live')),
    name              TEXT         NOT NULL,
    note              TEXT,
    description       TEXT,
    scopes            TEXT         NOT NULL,
    allowed_domains   TEXT         NOT NULL,
    allowed_ips       TEXT         NOT NULL,
    status            VARCHAR(16)  NOT NULL CHECK (status IN ('pending', 'active', 'inactive', 'revoked')),
    created_at        BIGINT       NOT NULL,
    expires_at        BIGINT,
    revoked_at        BIGINT,
    predecessor       BINARY(16),
    successor         BINARY(16),
    rolled_at         BIGINT,
    grace_ends_at     BIGINT,
    version           BIGINT       NOT NULL CHECK (version >= 0),
    pepper_version    BIGINT       CHECK (pepper_version BETWEEN 0 AND 4294967295),
    secret_digest     BINARY(32),
    sealed_version    BIGINT       CHECK (sealed_version BETWEEN 0 AND 4294967295),
    sealed_nonce      BINARY(24),
    sealed_ciphertext BLOB,
    redacted          VARCHAR(255) NOT NULL,
    signing           BIGINT       NOT NULL DEFAULT 0 CHECK (signing IN (0, 1)),
    INDEX api_keys_owner_idx (owner),
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
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- When each key was last used, apart from the wide row (a touch rewrites a
-- small row). One row per key, written with it; no constraints on purpose.
CREATE TABLE IF NOT EXISTS api_key_usage (
    id           BINARY(16) NOT NULL PRIMARY KEY,
    last_used_at BIGINT,
    use_count    BIGINT     NOT NULL DEFAULT 0
) ENGINE=InnoDB;

-- One row per owner that ever had a key written: the lock row that serialises
-- an owner's writes (`INSERT ... ON DUPLICATE KEY UPDATE` takes an exclusive
-- lock on it, creating it if needed).
CREATE TABLE IF NOT EXISTS api_key_owners (
    owner VARCHAR(128) NOT NULL PRIMARY KEY
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
