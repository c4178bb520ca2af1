"""wfmd: the wfm daemon."""

__version__ = "0.1.0"
