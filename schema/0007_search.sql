-- 0007: full-text search over the logs.
--
-- log_search holds, for each stored log row (its rowid is the row's key), which words the row
-- contains: no positions and no copy of the text (detail=none, contentless), so it stays a
-- fraction of the text's size; a search checks each line of the rows it finds. Rows are
-- indexed off the hot path: inserting a log row only queues its key, and wfmd's indexer
-- (housekeeping/indexer.py) indexes queued rows in the background. Deleting a row removes it
-- from both. Readers of the database with an older sqlite3 never need these tables.
CREATE VIRTUAL TABLE log_search USING fts5(
    text, content = '', contentless_delete = 1, detail = none
);

CREATE TABLE log_search_queue (
    key  INTEGER PRIMARY KEY  -- execution_logs.id of a row not indexed yet
);

CREATE TRIGGER log_rows_queued AFTER INSERT ON execution_logs
BEGIN
    INSERT OR IGNORE INTO log_search_queue (key) VALUES (new.id);
END;

CREATE TRIGGER log_rows_unindexed AFTER DELETE ON execution_logs
BEGIN
    DELETE FROM log_search WHERE rowid = old.id;
    DELETE FROM log_search_queue WHERE key = old.id;
END;

-- The history so far is indexed like new rows, in the background.
INSERT INTO log_search_queue (key) SELECT id FROM execution_logs;
