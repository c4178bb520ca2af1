"""Child output to committed rows: the pipe-reader thread, line cutting, the committer."""
