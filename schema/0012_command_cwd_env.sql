-- 0012: where an execution runs and what it adds to the environment, as recorded when it was
-- accepted: `cwd` its working directory (NULL for rows older than this: they ran in the
-- daemon's), `env` a JSON object of the variables set for it on top of the daemon's
-- environment (`wfmctl run --env`; NULL: none). One-off commands (`wfmctl run -- CMD`) are
-- executions whose workflow_id is `cmd:NAME`; their argv is the command line.
ALTER TABLE executions ADD COLUMN cwd TEXT;
ALTER TABLE executions ADD COLUMN env TEXT;
