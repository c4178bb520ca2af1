-- 0001: executions, their parameters and their logs.
--
-- Times are integers: milliseconds since the Unix epoch (UTC). The *_view views show them as
-- ISO-8601 text. Log rows are clustered by (execution, sequence number) through the integer
-- primary key, so reading any range of one execution's log is a single b-tree range scan.

CREATE TABLE schema_version (
    version       INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,
    applied_at    INTEGER NOT NULL      -- ms since the Unix epoch
);

CREATE TABLE executions (
    id            INTEGER PRIMARY KEY,  -- internal key; log rows cluster on it
    handle        TEXT    NOT NULL UNIQUE,  -- the handle id users see (a UUID)
    workflow_id   TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN
                      ('NotStarted', 'Running', 'Completed', 'Failed', 'Cancelled')),
    reason        TEXT,                 -- why it ended (or why it has not started)
    created_at    INTEGER NOT NULL,     -- accepted by the daemon
    started_at    INTEGER,              -- child spawned
    ended_at      INTEGER,              -- finished, or last moment known alive
    exit_code     INTEGER,              -- when the child exited normally
    signal        INTEGER,              -- when a signal killed it
    pid           INTEGER,              -- process (and process group) id while Running
    timeout_ms    INTEGER,              -- per-run timeout, NULL for none
    log_count     INTEGER NOT NULL DEFAULT 0,  -- log entries, final once it has ended
    argv          TEXT    NOT NULL      -- JSON array: exactly what is (or was) executed
);
CREATE INDEX executions_by_workflow ON executions (workflow_id, id);
CREATE INDEX executions_by_workflow_status ON executions (workflow_id, status, id);
CREATE INDEX executions_by_status ON executions (status, id);
CREATE INDEX executions_by_created ON executions (created_at);

CREATE TABLE execution_params (
    execution_id  INTEGER NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,     -- the field's position in the workflow's metadata
    name          TEXT    NOT NULL,
    value         TEXT    NOT NULL,
    PRIMARY KEY (execution_id, position)
) WITHOUT ROWID;

-- One row holds consecutive lines of one stream received together (one pipe read), or
-- exactly one structured event. Line k of a row (from 0) has sequence number first_seq + k.
-- id = execution_id * 2^32 + first_seq, so rows of an execution sit together in seq order.
CREATE TABLE execution_logs (
    id            INTEGER PRIMARY KEY,  -- (execution_id << 32) | sequence number of first line
    stream        INTEGER NOT NULL,     -- 1 = stdout, 2 = stderr
    ts            INTEGER NOT NULL,     -- daemon receive time of these lines
    lines         INTEGER NOT NULL,     -- number of log entries in data
    event         TEXT,                 -- event type when this row is one structured event
    data          BLOB    NOT NULL      -- bytes as printed; every line but maybe the last ends in \n
);

-- Liveness of the daemon that owns the database: recovery uses the last beat as the moment
-- an execution left Running by a dead daemon was last known alive.
CREATE TABLE daemon_heartbeat (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    pid           INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    beat_at       INTEGER NOT NULL
);

CREATE VIEW executions_view AS
SELECT handle AS handle_id,
       workflow_id,
       status,
       reason,
       exit_code,
       signal,
       strftime('%Y-%m-%dT%H:%M:%fZ', created_at / 1000.0, 'unixepoch') AS created,
       strftime('%Y-%m-%dT%H:%M:%fZ', started_at / 1000.0, 'unixepoch') AS started,
       strftime('%Y-%m-%dT%H:%M:%fZ', ended_at / 1000.0, 'unixepoch') AS ended,
       round((ended_at - started_at) / 1000.0, 3) AS duration_s,
       log_count,
       argv
FROM executions;

-- One row per stored log row (several lines of one read, or one event).
CREATE VIEW log_rows_view AS
SELECT e.handle AS handle_id,
       l.id & 4294967295 AS first_seq,
       l.lines,
       CASE l.stream WHEN 1 THEN 'stdout' ELSE 'stderr' END AS stream,
       strftime('%Y-%m-%dT%H:%M:%fZ', l.ts / 1000.0, 'unixepoch') AS received,
       coalesce(l.event, 'raw_output') AS type,
       CAST(l.data AS TEXT) AS text
FROM execution_logs AS l
JOIN executions AS e ON e.id = l.id >> 32;

-- One row per log entry (line). Splitting is done here, so filter on small executions:
--   SELECT * FROM log_entries_view WHERE handle_id = '...';
CREATE VIEW log_entries_view AS
WITH RECURSIVE split(log_id, stream, ts, event, seq, line, rest) AS (
    SELECT id, stream, ts, event, id & 4294967295, NULL, CAST(data AS TEXT)
    FROM execution_logs
    UNION ALL
    SELECT log_id, stream, ts, event,
           seq + (line IS NOT NULL),
           CASE WHEN instr(rest, char(10)) > 0
                THEN substr(rest, 1, instr(rest, char(10)) - 1) ELSE rest END,
           CASE WHEN instr(rest, char(10)) > 0
                THEN substr(rest, instr(rest, char(10)) + 1) ELSE '' END
    FROM split
    WHERE rest <> ''
)
SELECT e.handle AS handle_id,
       s.seq,
       CASE s.stream WHEN 1 THEN 'stdout' ELSE 'stderr' END AS stream,
       strftime('%Y-%m-%dT%H:%M:%fZ', s.ts / 1000.0, 'unixepoch') AS received,
       coalesce(s.event, 'raw_output') AS type,
       s.line
FROM split AS s
JOIN executions AS e ON e.id = s.log_id >> 32
WHERE s.line IS NOT NULL;
