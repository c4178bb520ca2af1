"""`wfmctl tui`: a live dashboard of wfmd in the terminal.

A front end beside `wfmctl.cli` and `wfmctl.mcp`, reaching the daemon only through the
wfmctl library. It needs Textual, an optional extra (`pip install 'wfm[tui]'`): this module
imports nothing of it until `main` runs, so that `import wfmctl` and every other command
stay thin.

    link.py       daemon calls from worker threads; pooled connections, reconnection
    text.py       protocol values as short cells and lines (over wfmctl.cli.render)
    progress.py   the phase / task / agent tree, built from a log's events
    logview.py    a log as a window of pages over the daemon's log: opens at once at any size
    execution.py  one execution's tab: its tree, its log (following), cancel and rerun
    form.py       the launch form built from a workflow's metadata
    problems.py   the daemon's invalid_params message, split per field
    host.py       what the tabs ask of the app
    panes.py      the workflows, runs and history tabs
    app.py        the application: tabs, banner, keys
    capture.py    the screen as plain text (tests, README)
"""

from __future__ import annotations

import sys

from wfmctl.cli.exit_codes import EXIT_USAGE

INSTALL_HINT = "install it with: pip install 'wfm[tui]'"
# Missing the extra is a usage problem, like a bad command line.
EXIT_NO_TEXTUAL = EXIT_USAGE


def main(socket_path: str | None = None) -> int:
    """Run the dashboard for the daemon at `socket_path`; returns the exit code."""
    try:
        import textual  # noqa: F401  # the optional extra
    except ImportError as exc:
        if (exc.name or "textual").partition(".")[0] == "textual":
            print(f"wfmctl: error: wfmctl tui needs Textual; {INSTALL_HINT}", file=sys.stderr)
        else:  # Textual is there but one of its dependencies is not
            print(
                f"wfmctl: error: Textual cannot be imported ({exc}); {INSTALL_HINT}",
                file=sys.stderr,
            )
        return EXIT_NO_TEXTUAL

    from wfmctl.tui.app import WfmApp

    WfmApp(socket_path).run()
    return 0
