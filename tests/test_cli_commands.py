"""One-off commands, `wfmctl run -- CMD [ARG]...`: supervised and recorded as workflows are;
the working directory and environment every child gets; the workflow directories.

Where children run, by default (README, WORKFLOWS.md):
- a workflow, and a metadata probe: the user's home directory;
- a command: wfmctl's current directory (`--cwd DIR` otherwise); over the protocol, home;
- every child: the daemon's environment, plus a command's `--env` pairs, plus
  WFM_EXECUTION_ID; never the environment of the wfmctl that asked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import WFMCTL, Daemon, MakeDaemon, alive, kill_leftovers
from test_cli import ok

from wfmctl.cli.exit_codes import EXIT_CANCELLED, EXIT_DATAERR, EXIT_TIMEOUT, EXIT_USAGE

SHOW = 'echo out; echo err >&2; pwd; echo "foo=$FOO"; echo "id=$WFM_EXECUTION_ID"'


def wfmctl_in(
    daemon: Daemon, cwd: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """The real wfmctl against `daemon`, started in `cwd` with `env` added."""
    environ = dict(os.environ, WFM_SOCKET=str(daemon.socket), **env)
    return subprocess.run(
        [WFMCTL, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=60
    )


def test_a_command_runs_where_wfmctl_is_with_its_variables(daemon: Daemon, tmp_path: Path) -> None:
    here = tmp_path / "here"
    here.mkdir()
    result = wfmctl_in(
        daemon, here, "run", "--env", "FOO=bar", "--wait", "--", "sh", "-c", SHOW, CLIENT="x"
    )
    handle, status = ok(result).splitlines()
    assert status.startswith("cmd:sh  Completed in ")
    lines = ok(daemon.wfmctl("logs", handle)).splitlines()
    assert sorted(lines) == sorted(["out", "err", str(here), "foo=bar", f"id={handle}"])
    doc = json.loads(ok(daemon.wfmctl("status", handle, "--json")))
    assert doc["workflow_id"] == "cmd:sh"
    assert doc["command"] == ["sh", "-c", SHOW]
    assert doc["cwd"] == str(here) and doc["env"] == {"FOO": "bar"}
    shown = ok(daemon.wfmctl("status", handle))
    assert f"command:      sh -c '{SHOW}'" in shown
    assert f"directory:    {here}" in shown and "environment:  FOO=bar" in shown
    assert "cmd:sh" in ok(daemon.wfmctl("history", "--workflow", "cmd:sh"))
    assert handle in ok(daemon.wfmctl("status", "@last:cmd:sh"))
    # --cwd, relative to wfmctl's directory; the client's own variables stay with it.
    (here / "sub").mkdir()
    moved = wfmctl_in(
        daemon,
        here,
        "run",
        "--cwd",
        "sub",
        "--wait",
        "--",
        "sh",
        "-c",
        'pwd; echo "[$CLIENT]"',
        CLIENT="x",
    )
    moved_handle = ok(moved).split()[0]
    assert ok(daemon.wfmctl("logs", moved_handle)).splitlines() == [str(here / "sub"), "[]"]


def test_a_command_is_supervised_as_a_workflow(daemon: Daemon, tmp_path: Path) -> None:
    failed = daemon.wfmctl("run", "--wait", "--", "sh", "-c", "exit 7")
    assert failed.returncode == 7, failed
    timed = daemon.wfmctl("run", "--timeout", "0.5", "--wait", "--", "sleep", "30")
    assert timed.returncode == EXIT_TIMEOUT
    # Events on stderr are recognised; a background process dies with the command.
    script = (
        "sleep 60 & echo $! > " + str(tmp_path / "bg.pid") + "; "
        'echo \'__WF_EVENT__:{"type":"phase_started","phase":1,"total_phases":2,"name":"P"}\' >&2'
    )
    followed = daemon.wfmctl("run", "--follow", "--", "sh", "-c", script)
    assert ok(followed).splitlines()[1] == "▶ phase 1/2: P"
    assert not alive(int((tmp_path / "bg.pid").read_text()))
    # Cancel.
    handle = ok(daemon.wfmctl("run", "--", "sleep", "60")).strip()
    ok(daemon.wfmctl("cancel", handle))
    assert daemon.wfmctl("wait", handle).returncode == EXIT_CANCELLED
    # Rerun: the same command line, directory and variables.
    first = ok(daemon.wfmctl("run", "--env", "FOO=1", "--wait", "--", "sh", "-c", SHOW))
    again = ok(daemon.wfmctl("rerun", first.split()[0], "--wait")).split()[0]
    doc = json.loads(ok(daemon.wfmctl("status", again, "--json")))
    assert doc["command"] == ["sh", "-c", SHOW] and doc["env"] == {"FOO": "1"}
    assert doc["rerun_of"] == first.split()[0]
    refused = daemon.wfmctl("rerun", again, "-p", "x=1")
    assert refused.returncode == EXIT_DATAERR


def test_the_concurrency_limit_holds_commands_too(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    daemon = make_daemon(["--max-concurrent", "1"]).start()
    first = ok(daemon.wfmctl("run", "--", "sleep", "60")).strip()
    second = ok(daemon.wfmctl("run", "--", "sleep", "60")).strip()
    # A directory that goes away while its command waits for a slot: the reason says which.
    gone = tmp_path / "gone"
    gone.mkdir()
    with daemon.client() as client:
        assert client.status(second).status == "NotStarted"
        queued = client.run_command(["true"], cwd=str(gone))
        gone.rmdir()
        client.cancel(second)
        client.cancel(first)
        ended = client.wait(queued.handle)
    assert ended.ended_by == "spawn_error"
    assert f"working directory {gone}" in (ended.reason or ""), ended.reason


def test_command_line_mistakes(daemon: Daemon, tmp_path: Path) -> None:
    for args in (
        ["run", "echo_params", "--", "ls"],
        ["run", "--"],
        ["run", "-p", "a=1", "--", "ls"],
        ["run", "echo_params", "--cwd", "/"],
        ["run", "echo_params", "--env", "A=1"],
    ):
        result = daemon.wfmctl(*args)
        assert result.returncode == EXIT_USAGE, (args, result)
        assert "Traceback" not in result.stderr
    missing = daemon.wfmctl("run", "--cwd", str(tmp_path / "nowhere"), "--", "ls")
    assert missing.returncode == EXIT_DATAERR and "working directory" in missing.stderr
    spawn = daemon.wfmctl("run", "--wait", "--", "no-such-command-here")
    assert spawn.returncode == 125 and "could not start" in spawn.stdout


class HomeDaemon(Daemon):
    """A daemon with a home of its own, started from another directory, with a variable of
    its own; `default_dirs`: no --workflow-dir, so it scans (and makes) its defaults."""

    def __init__(self, root: Path, workflow_dirs: list[Path], *, default_dirs: bool) -> None:
        super().__init__(root, workflow_dirs, [])
        self.home = root / "home"
        self.home.mkdir(exist_ok=True)
        self.default_dirs = default_dirs

    def argv(self) -> list[str]:
        argv = super().argv()
        if self.default_dirs:
            argv = [a for a in argv if a != "--workflow-dir" and Path(a) not in self.workflow_dirs]
        return argv

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(HOME=str(self.home), XDG_DATA_HOME=str(self.root / "data"), DAEMON_ONLY="d")
        return env


PRINT_PLACE = """
print(os.getcwd())
print(os.environ.get("DAEMON_ONLY"), os.environ.get("CLIENT_ONLY"))
"""


def test_default_directory_and_environment_of_every_child(
    tmp_path: Path, workflow_dir: Path
) -> None:
    # The probe says where it ran in its description.
    probe = workflow_dir / "place"
    probe.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "if sys.argv[1:] == ['--workflow-metadata']:\n"
        "    print(json.dumps({'id': 'place', 'name': 'place', 'description': os.getcwd()}))\n"
        "    sys.exit(0)\n" + PRINT_PLACE
    )
    probe.chmod(0o755)
    daemon = HomeDaemon(tmp_path, [workflow_dir], default_dirs=False)
    try:
        daemon.start()
        home = str(daemon.home)
        detail = json.loads(ok(daemon.wfmctl("workflows", "place", "--json")))
        assert detail["description"] == home
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        ran = wfmctl_in(daemon, elsewhere, "run", "place", "--wait", CLIENT_ONLY="c")
        handle = ok(ran).split()[0]
        assert ok(daemon.wfmctl("logs", handle)).splitlines() == [home, "d None"]
        assert json.loads(ok(daemon.wfmctl("status", handle, "--json")))["cwd"] == home
        with daemon.client() as client:
            code = "import os" + PRINT_PLACE.replace("\n", ";").rstrip(";")
            command = client.run_command([sys.executable, "-c", code])
            client.wait(command.handle)
            lines = [e.line for e in client.logs(command.handle).entries]
        assert lines == [home, "d None"]
    finally:
        daemon.stop()
        assert not kill_leftovers(daemon.tag)


def test_workflows_shows_the_scanned_directories(tmp_path: Path) -> None:
    daemon = HomeDaemon(tmp_path, [], default_dirs=True)
    try:
        daemon.start()
        made = tmp_path / "data" / "wfm" / "workflows"
        assert made.is_dir()  # the daemon made the user's directory
        listing = ok(daemon.wfmctl("workflows")).split("scanned, in order:\n", 1)[1]
        lines = listing.splitlines()
        assert lines[0] == f"  {made}"
        assert lines[1] == f"  {daemon.home}/.workflow-manager/workflows  (does not exist)"
        assert len(lines) == 3 and lines[2].endswith("examples")
        doc = json.loads(ok(daemon.wfmctl("workflows", "--json")))
        assert [d["exists"] for d in doc["directories"]] == [True, False, True]
    finally:
        daemon.stop()
        assert not kill_leftovers(daemon.tag)
