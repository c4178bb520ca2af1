-- 0003: how each execution ended, as a word clients can branch on (the reason is for people).
-- exit, signal, timeout, cancelled, daemon_died, spawn_error, storage, internal; NULL while
-- it has not ended. Executions recorded before this column get it from their reason's
-- wording, which was fixed for each kind of ending.
ALTER TABLE executions ADD COLUMN ended_by TEXT;

UPDATE executions
SET ended_by = CASE
        WHEN reason LIKE 'exited with status %' THEN 'exit'
        WHEN reason LIKE 'killed by signal %' THEN 'signal'
        WHEN reason LIKE 'timed out after %' THEN 'timeout'
        WHEN reason LIKE 'cancelled%' THEN 'cancelled'
        WHEN reason LIKE 'interrupted: the daemon supervising it died%' THEN 'daemon_died'
        WHEN reason LIKE 'could not start %' THEN 'spawn_error'
        WHEN reason LIKE 'storage full or failing%' THEN 'storage'
        WHEN reason LIKE 'internal error in wfmd%' THEN 'internal'
    END
WHERE status IN ('Completed', 'Failed', 'Cancelled');
