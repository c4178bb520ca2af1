-- 0005: what `stats` reads of each execution, in an index of its own: statistics over the
-- whole history scan this narrow index instead of the table's wide rows (argv, reasons).
CREATE INDEX executions_outcomes
    ON executions (workflow_id, status, created_at, started_at, ended_at);
