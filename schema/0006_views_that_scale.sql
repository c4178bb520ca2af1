-- 0006: views that filter and order through the indexes, in any sqlite3 (3.40 and newer)
-- with no extension.
--
-- A log row's key is execution_id * 2^32 + first_seq, so the rows of one execution are one
-- key range: the views join on that range, which is a b-tree range scan, never on
-- `l.id >> 32`, which no index can serve. log_entries_view splits each row into its lines
-- with json_each over the row's text turned into a JSON array (json_quote escapes it; its
-- escaped backslashes are set aside while newlines become element separators), in linear
-- time. Raw millisecond columns sit beside the ISO-8601 text: filter and order on those.

DROP VIEW executions_view;
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
       argv,
       workflow_name,
       ended_by,
       created_at,     -- ms since the Unix epoch (indexed): order and filter on it
       started_at,
       ended_at
FROM executions;

DROP VIEW log_rows_view;
CREATE VIEW log_rows_view AS
SELECT e.handle AS handle_id,
       l.id & 4294967295 AS first_seq,
       l.lines,
       CASE l.stream WHEN 1 THEN 'stdout' ELSE 'stderr' END AS stream,
       strftime('%Y-%m-%dT%H:%M:%fZ', l.ts / 1000.0, 'unixepoch') AS received,
       coalesce(l.event, 'raw_output') AS type,
       CAST(l.data AS TEXT) AS text,
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
JOIN json_each('[' || replace(replace(replace(json_quote(CAST(l.data AS TEXT)),
                                              '\\', char(1)),
                                      '\n', '","'),
                              char(1), '\\') || ']') AS j
WHERE j.key < l.lines;  -- the element after the row's last newline is empty
