"""What `import wfmctl` and the commonest wfmctl command lines import.

A `wfmctl` run is mostly interpreter start-up and imports, so the modules a run needs only
sometimes are imported where they are used; these tests keep it that way.
"""

from __future__ import annotations

from pathlib import Path

from test_cli_support import run_python

from wfmctl.cli.exit_codes import EXIT_UNAVAILABLE

HEAVY = ("trio", "apsw")


def imported_modules(importtime_output: str) -> set[str]:
    """The modules named by -X importtime's lines on stderr:
    "import time: self [us] | cumulative | imported package"."""
    return {
        line.rsplit("|", 1)[-1].strip()
        for line in importtime_output.splitlines()
        if line.startswith("import time:")
    }


def test_import_wfmctl_stays_light() -> None:
    check = (
        "import sys, wfmctl, wfmctl.cli.main, wfmctl.cli.commands, wfmctl.cli.render; "
        "assert 'trio' not in sys.modules and 'apsw' not in sys.modules, sorted(sys.modules)"
    )
    proc = run_python("-c", check)
    assert proc.returncode == 0, proc.stderr


def test_no_command_but_tui_imports_textual(tmp_path: Path) -> None:
    check = (
        "import sys, wfmctl, wfmctl.cli.main, wfmctl.cli.commands, wfmctl.tui; "
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('textual', 'rich') "
        "or m.startswith('wfmctl.tui.')]; assert not loaded, loaded"
    )
    proc = run_python("-c", check)
    assert proc.returncode == 0, proc.stderr
    proc = run_python(
        "-X", "importtime", "-m", "wfmctl", "history", WFM_SOCKET=str(tmp_path / "none.sock")
    )
    assert proc.returncode == EXIT_UNAVAILABLE, proc.stderr
    imported = imported_modules(proc.stderr)
    assert "wfmctl.cli.commands" in imported  # the check below looks at the right output
    assert not {m for m in imported if m.split(".")[0] in ("textual", "rich")}
    assert not {m for m in imported if m.startswith("wfmctl.tui")}


def test_status_skips_argparse(tmp_path: Path) -> None:
    proc = run_python(
        "-X",
        "importtime",
        "-m",
        "wfmctl",
        "status",
        "ab",
        WFM_SOCKET=str(tmp_path / "nothing.sock"),
    )
    assert proc.returncode == EXIT_UNAVAILABLE, proc.stderr
    imported = imported_modules(proc.stderr)
    assert "wfmctl.cli.commands" in imported  # the check below looks at the right output
    assert not imported & {"argparse", "shutil", "json", "dataclasses", "signal"}


def test_help_stays_light() -> None:
    proc = run_python("-X", "importtime", "-m", "wfmctl", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: wfmctl" in proc.stdout
    imported = imported_modules(proc.stderr)
    assert "wfmctl.cli.main" in imported  # the check below looks at the right output
    heavy = {m for m in imported if m.split(".")[0] in HEAVY}
    assert not heavy
    assert not imported & {"shutil", "wfmctl.cli.commands"}
