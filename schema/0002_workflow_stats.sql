-- 0002: per-workflow success rates and durations, for people reading the database.
CREATE VIEW workflow_stats_view AS
SELECT workflow_id,
       count(*) AS executions,
       sum(status = 'Completed') AS completed,
       sum(status = 'Failed') AS failed,
       sum(status = 'Cancelled') AS cancelled,
       round(100.0 * sum(status = 'Completed')
             / nullif(sum(status IN ('Completed', 'Failed', 'Cancelled')), 0), 1)
           AS success_rate_pct,
       round(avg(CASE WHEN ended_at IS NOT NULL AND started_at IS NOT NULL
                      THEN (ended_at - started_at) / 1000.0 END), 3) AS avg_duration_s,
       strftime('%Y-%m-%dT%H:%M:%fZ', max(created_at) / 1000.0, 'unixepoch') AS last_run
FROM executions
GROUP BY workflow_id;
