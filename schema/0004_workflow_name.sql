-- 0004: the workflow's name as it was when the execution was accepted, as the original
-- workflow-manager recorded it. Older rows stay NULL until the daemon fills them in from
-- the workflows it discovers.
ALTER TABLE executions ADD COLUMN workflow_name TEXT;
