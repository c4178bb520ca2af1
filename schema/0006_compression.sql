-- 0006: compression of cold history. Log rows of executions that ended a while ago are
-- compressed in the background in SQLite's sqlar format, so that the stock `sqlite3` shell
-- reads them with its built-in `sqlar_uncompress(data, raw_size)`:
--   raw_size NULL          the row was never looked at: data is as printed;
--   raw_size = length(data) compression did not make it smaller: data is as printed;
--   otherwise               data is zlib.compress(the bytes printed), which were raw_size long.
ALTER TABLE execution_logs ADD COLUMN raw_size INTEGER;

-- 1 once every row of the (finished) execution has been looked at; the partial index finds
-- the executions still to do without reading the others.
ALTER TABLE executions ADD COLUMN logs_compressed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX executions_to_compress ON executions (ended_at) WHERE logs_compressed = 0;

-- The views read through sqlar_uncompress: the `sqlite3` shell has it built in; elsewhere
-- define it (README, "The database").
DROP VIEW log_rows_view;
DROP VIEW log_entries_view;

-- One row per stored log row (several lines of one read, or one event).
CREATE VIEW log_rows_view AS
SELECT e.handle AS handle_id,
       l.id & 4294967295 AS first_seq,
       l.lines,
       CASE l.stream WHEN 1 THEN 'stdout' ELSE 'stderr' END AS stream,
       strftime('%Y-%m-%dT%H:%M:%fZ', l.ts / 1000.0, 'unixepoch') AS received,
       coalesce(l.event, 'raw_output') AS type,
       CAST(sqlar_uncompress(l.data, l.raw_size) AS TEXT) AS text
FROM execution_logs AS l
JOIN executions AS e ON e.id = l.id >> 32;

-- One row per log entry (line). Splitting is done here, so filter on small executions:
--   SELECT * FROM log_entries_view WHERE handle_id = '...';
CREATE VIEW log_entries_view AS
WITH RECURSIVE split(log_id, stream, ts, event, seq, line, rest) AS (
    SELECT id, stream, ts, event, id & 4294967295, NULL,
           CAST(sqlar_uncompress(data, raw_size) AS TEXT)
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
