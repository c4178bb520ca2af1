"""The `wfmctl` command line: one front end of the wfmctl library."""
