-- api-keys schema version 2, MySQL/MariaDB: the change feed.
--
-- Every management write (insert, update, roll) takes the next change
-- numbers from the single row of `api_key_feed`, as the last statements of
-- its transaction, and records one row per changed key in `api_key_changes`.
-- The exclusive row lock on the counter orders the writes' commits and a
-- write that rolls back gives its number back, so the numbers a reader sees
-- are a prefix without gaps and `seq > last_seen` never skips a change.
-- Touches are not changes. `pruned_through`: changes up to this number were
-- deleted (`MySqlKeyStore::prune_changes`).
CREATE TABLE IF NOT EXISTS api_key_feed (
    id             SMALLINT NOT NULL PRIMARY KEY,
    seq            BIGINT   NOT NULL,
    pruned_through BIGINT   NOT NULL
) ENGINE=InnoDB;

INSERT IGNORE INTO api_key_feed (id, seq, pruned_through) VALUES (1, 0, 0);

CREATE TABLE IF NOT EXISTS api_key_changes (
    seq    BIGINT     NOT NULL PRIMARY KEY,
    key_id BINARY(16) NOT NULL
) ENGINE=InnoDB;
