"""wfmd: the wfm daemon. Its version is the package's, kept in `wfmctl`."""

from wfmctl import __version__

__all__ = ["__version__"]
