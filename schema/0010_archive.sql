-- 0010: archive before delete. The size of each monthly archive file as of the last deletion
-- that committed: the next archiving truncates the file back to it, so an append whose
-- deletion never committed (a crash in between) is not left behind twice, nor half-written.
CREATE TABLE archive_files (
    name          TEXT    PRIMARY KEY,  -- the file's name in the archive directory
    size          INTEGER NOT NULL      -- bytes, every one synced
) WITHOUT ROWID;
