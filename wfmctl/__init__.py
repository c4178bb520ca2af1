"""wfmctl: the thin client of wfmd (library and command line).

Importing it stays cheap: the protocol types (msgspec) and a socket client, never trio or
apsw. The command line lives in `wfmctl.cli` and is only imported by the `wfmctl` script.
"""

from __future__ import annotations

__version__ = "0.1.0"

from wfmctl.client import Client, DaemonUnreachable, WfmError

__all__ = ["Client", "DaemonUnreachable", "WfmError", "__version__"]
