-- 0008: retention. What each retention run did, executions whose deletion has begun, and the
-- highest id ever deleted (so that an id, and the log keys derived from it, is never reused).

-- One row per retention run (scheduled, `wfmctl prune`, `wfmctl delete`); wfmd keeps the
-- most recent ones only.
CREATE TABLE retention_runs (
    id                   INTEGER PRIMARY KEY,
    started_at           INTEGER NOT NULL,     -- ms since the Unix epoch
    duration_ms          INTEGER NOT NULL,
    trigger              TEXT    NOT NULL,     -- 'schedule', 'prune' or 'delete'
    executions_removed   INTEGER NOT NULL,
    log_entries_removed  INTEGER NOT NULL,
    bytes_freed          INTEGER NOT NULL,     -- drop in pages in use, in bytes
    bytes_compressed     INTEGER NOT NULL DEFAULT 0  -- log bytes compressed (before)
);

-- Executions already removed from `executions` whose log rows are still being deleted, a few
-- at a time. Not visible to anyone: the execution is gone the moment it is listed here.
CREATE TABLE pending_deletions (
    execution_id         INTEGER PRIMARY KEY
);

-- Log rows are keyed by execution id: a new execution must never get the id of a deleted one
-- (SQLite reuses the largest rowid once its row is deleted).
CREATE TABLE retention_state (
    id                   INTEGER PRIMARY KEY CHECK (id = 1),
    max_deleted_id       INTEGER NOT NULL
);
INSERT INTO retention_state (id, max_deleted_id) VALUES (1, 0);
