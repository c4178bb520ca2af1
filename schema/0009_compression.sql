-- 0009: compression of cold history. Log rows of executions that ended a while ago are
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

-- The log views, in any sqlite3 (3.40 and newer) with no extension:
-- - they read a row's data through sqlar_uncompress, which the `sqlite3` shell has built in;
--   elsewhere define it (README, "The database");
-- - a log row's key is execution_id * 2^32 + first_seq, so one execution's rows are one key
--   range: the views join on that range, a b-tree range scan, never on `l.id >> 32`, which
--   no index can serve;
-- - log_entries_view splits a row into its lines with json_each over its text made a JSON
--   array (json_quote escapes it; its escaped backslashes are set aside while newlines
--   become element separators), in linear time.
DROP VIEW log_rows_view;
CREATE VIEW log_rows_view AS
SELECT e.handle AS handle_id,
       l.id & 4294967295 AS first_seq,
       l.lines,
       CASE l.stream WHEN 1 THEN 'stdout' ELSE 'stderr' END AS stream,
       strftime('%Y-%m-%dT%H:%M:%fZ', l.ts / 1000.0, 'unixepoch') AS received,
       coalesce(l.event, 'raw_output') AS type,
       CAST(sqlar_uncompress(l.data, l.raw_size) AS TEXT) AS text,
       l.ts AS received_at  -- ms since the Unix epoch
FROM executions AS e
JOIN execution_logs AS l ON l.id BETWEEN e.id << 32 AND (e.id << 32) + 4294967295;

DROP VIEW log_entries_view;
CREATE VIEW log_entries_view AS
SELECT e.handle AS handle_id,
       (l.id & 4294967295) + j.key AS seq,
       CASE l.stream WHEN 1 THEN 'stdout' ELSE 'stderr' END AS stream,
       strftime('%Y-%m-%dT%H:%M:%fZ', l.ts / 1000.0, 'unixepoch') AS received,
       coalesce(l.event, 'raw_output') AS type,
       j.value AS line,
       l.ts AS received_at  -- ms since the Unix epoch
FROM executions AS e
JOIN execution_logs AS l ON l.id BETWEEN e.id << 32 AND (e.id << 32) + 4294967295
JOIN json_each('[' || replace(replace(replace(
                           json_quote(CAST(sqlar_uncompress(l.data, l.raw_size) AS TEXT)),
                           '\\', char(1)),
                       '\n', '","'),
                   char(1), '\\') || ']') AS j
WHERE j.key < l.lines;  -- the element after the row's last newline is empty
