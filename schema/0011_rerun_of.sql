-- 0011: what an execution was rerun from (`wfmctl rerun`): the handle of that execution, kept
-- as text so that it still says where a run came from after the original is deleted.
ALTER TABLE executions ADD COLUMN rerun_of TEXT;
