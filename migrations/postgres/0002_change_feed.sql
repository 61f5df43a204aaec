-- api-keys schema version 2, PostgreSQL: the change feed.
--
-- Every management write (insert, update, roll) takes the next change
-- numbers from the single row of `api_key_feed`, as the last statements of
-- its transaction, and records one row per changed key in `api_key_changes`.
-- The row lock on the counter orders the writes' commits: a write that took
-- number n commits before any write can take n + 1, and a write that rolls
-- back gives its number back. So the numbers a reader sees are always a
-- prefix without gaps, and a verification cache that reads `seq > last_seen`
-- never skips a change (the DESIGN's "a change feed must not skip a change").
-- Touches (`api_key_usage`) are not changes and never take the counter.
--
-- `pruned_through`: changes up to this number were deleted
-- (`PostgresKeyStore::prune_changes`); a cache that has not seen them drops
-- everything it holds.
CREATE TABLE IF NOT EXISTS api_key_feed (
    id             SMALLINT NOT NULL PRIMARY KEY,
    seq            BIGINT   NOT NULL,
    pruned_through BIGINT   NOT NULL
);

INSERT INTO api_key_feed (id, seq, pruned_through) VALUES (1, 0, 0)
    ON CONFLICT (id) DO NOTHING;

-- One row per changed key per write; `seq` is the change number.
CREATE TABLE IF NOT EXISTS api_key_changes (
    seq    BIGINT NOT NULL PRIMARY KEY,
    key_id BYTEA  NOT NULL
);
