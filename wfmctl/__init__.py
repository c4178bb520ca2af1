"""wfmctl: the thin client of wfmd (library and command line).

The top level is the library, which wfmd shares: the wire protocol (`protocol`), the default
paths (`paths`), the version, and a socket client (`client`). Front ends live in
sub-packages: the command line in `wfmctl.cli`, only imported by the `wfmctl` script.

Importing it stays cheap: the protocol types (msgspec) and a socket client, never trio or
apsw (see test_import_wfmctl_stays_light).
"""

from __future__ import annotations

__version__ = "0.1.0"

from wfmctl.client import Client, DaemonUnreachable, WfmError

__all__ = ["Client", "DaemonUnreachable", "WfmError", "__version__"]
