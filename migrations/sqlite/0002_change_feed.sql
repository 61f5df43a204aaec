-- api-keys schema version 2, SQLite: the change feed.
--
-- Every management write (insert, update, roll) takes the next change
-- numbers from the single row of `api_key_feed`, as the last statements of
-- its transaction (`BEGIN IMMEDIATE` already serialises every writer of the
-- file), and records one row per changed key in `api_key_changes`, so the
-- numbers a reader sees are a prefix without gaps. Touches are not changes.
-- `pruned_through`: changes up to this number were deleted
-- (`SqliteKeyStore::prune_changes`).
CREATE TABLE IF NOT EXISTS api_key_feed (
    id             INTEGER NOT NULL PRIMARY KEY,
    seq            INTEGER NOT NULL,
    pruned_through INTEGER NOT NULL
) STRICT;

INSERT OR IGNORE INTO api_key_feed (id, seq, pruned_through) VALUES (1, 0, 0);

CREATE TABLE IF NOT EXISTS api_key_changes (
    seq    INTEGER NOT NULL PRIMARY KEY,
    key_id BLOB    NOT NULL
) STRICT;
