-- 0006: executions_view orders and filters through the indexes: raw millisecond columns sit
-- beside the ISO-8601 text (`order by created_at` walks an index; `order by created` would
-- sort every formatted row). The log views are redone in 0009, once rows can be compressed.

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
