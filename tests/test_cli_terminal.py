r"""Workflow-controlled text and terminals: on a terminal wfmctl shows control characters and
bidi overrides escaped (`\x1b`, `\r`, `\u202e`); `--raw` passes them through; pipes get the
text as stored; `--json` never carries them raw to a terminal.

wfmctl runs with stdout and stderr on pseudo-terminals in raw mode, so that the bytes read
back are exactly the bytes it wrote.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
import tty
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import WFMCTL, Daemon, write_workflow

from wfmctl.cli.live import ERASE

TIMEOUT = 30.0

# Title change (OSC), screen clear and cursor home (CSI), bell, a C1 CSI, a bidi override
# and its pop, a tab (kept) and a carriage return.
LINE = (
    "title \x1b]0;pwned\x07 clear \x1b[2J\x1b[H bell \x07 csi \x9b31m bidi \u202eabc\u202c t\tcr\r"
)
LINE_ESCAPED = (
    r"title \x1b]0;pwned\x07 clear \x1b[2J\x1b[H bell \x07 csi \x9b31m bidi \u202eabc\u202c t"
    + "\t"
    + r"cr\r"
)
# A task_progress event whose JSON holds `\u001b`: the daemon decodes it into a real ESC.
EVENT = {"type": "task_progress", "task_id": "t1", "message": "\x1b]0;pwned\x07 \u2066x"}
EVENT_RENDERED = "  • task t1: \x1b]0;pwned\x07 \u2066x"
EVENT_ESCAPED = r"  • task t1: \x1b]0;pwned\x07 \u2066x"

# What a terminal acts on: C0 controls but tab and newline, DEL, C1, bidi overrides/isolates.
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

# A file name is the workflow author's to choose (only the id in its metadata is checked),
# and reasons quote it.
HOSTILE_FILE = "hostile\x1b]2;file\x07"
VANISHING_FILE = "vanishing\x1b[2J\u202e"


def hostile_metadata(workflow_id: str) -> dict[str, object]:
    return {
        "id": workflow_id,
        "name": "Hostile \x1b]0;name\x07",
        "description": "says \x1b[2Jhi\u202eevil",
        "fields": [
            {
                "name": "msg",
                "field_type": {"type": "text"},
                "label": "Message \x1b[31m",
                "description": "",
                "cli_arg": "--msg",
                "required": False,
                "default": "d\x9b1m",
                "required_for_phases": None,
            }
        ],
    }


HOSTILE_BODY = f"""
print({LINE!r}, flush=True)
print("__WF_EVENT__:" + json.dumps({EVENT!r}), file=sys.stderr, flush=True)
"""


class Output(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def controls(text: str) -> list[str]:
    return CONTROLS.findall(text)


def env(daemon_socket: Path | str) -> dict[str, str]:
    # UTF-8 whatever the locale, so that --raw output is never `?`-replaced; the terminal's
    # own width, not $COLUMNS.
    # No colour: these tests are about what workflows' text may bring (test_cli_live.py has
    # the colours).
    environ = dict(
        os.environ, WFM_SOCKET=str(daemon_socket), PYTHONIOENCODING="utf-8", NO_COLOR="1"
    )
    environ.pop("COLUMNS", None)
    return environ


def screen(text: str) -> str:
    """What stays on the screen of the progress line that `logs -f` and `run --follow` keep
    at the bottom (redrawn after erasing the line, erased at the end): each line as it is
    after its last erase."""
    return "\n".join(line.rsplit(ERASE, 1)[-1] for line in text.split("\n"))


def on_terminal(daemon_socket: Path | str, *args: str, columns: int = 200) -> Output:
    """Run wfmctl with stdout and stderr each on a pseudo-terminal `columns` wide; what it
    wrote, exactly."""
    out_master, out_slave = pty.openpty()
    err_master, err_slave = pty.openpty()
    for fd in (out_slave, err_slave):
        tty.setraw(fd)  # no line discipline: no \r added before \n, nothing interpreted
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    try:
        proc = subprocess.Popen(
            [WFMCTL, *args],
            stdin=subprocess.DEVNULL,
            stdout=out_slave,
            stderr=err_slave,
            env=env(daemon_socket),
        )
    finally:
        os.close(out_slave)
        os.close(err_slave)
    data = {out_master: bytearray(), err_master: bytearray()}
    pending = set(data)
    deadline = time.monotonic() + TIMEOUT
    try:
        while pending:
            ready, _, _ = select.select(list(pending), [], [], deadline - time.monotonic())
            if not ready:
                proc.kill()
                raise AssertionError(f"wfmctl {args} still writing after {TIMEOUT}s")
            for fd in ready:
                try:
                    chunk = os.read(fd, 1 << 16)
                except OSError:  # EIO: the last slave end is closed
                    chunk = b""
                if chunk:
                    data[fd] += chunk
                else:
                    pending.discard(fd)
        returncode = proc.wait(TIMEOUT)
    finally:
        os.close(out_master)
        os.close(err_master)
    return Output(returncode, screen(data[out_master].decode()), data[err_master].decode())


def through_pipes(daemon_socket: Path | str, *args: str) -> Output:
    """Run wfmctl with stdout and stderr on pipes; bytes decoded, no newline translation."""
    proc = subprocess.run(
        [WFMCTL, *args], env=env(daemon_socket), capture_output=True, timeout=TIMEOUT
    )
    return Output(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def ok(result: Output) -> Output:
    assert result.returncode == 0, result
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture
def hostile(daemon: Daemon, workflow_dir: Path) -> str:
    """The handle of a finished run of a workflow that prints hostile text."""
    write_workflow(workflow_dir, HOSTILE_FILE, HOSTILE_BODY, hostile_metadata("hostile"))
    result = ok(through_pipes(daemon.socket, "run", "hostile", "-p", "msg=v\x1b[5m", "--wait"))
    return result.stdout.split()[0]


# --------------------------------------------------------------------------- log lines


@pytest.mark.parametrize(
    "args",
    [
        ["logs"],
        ["logs", "-f"],
        ["logs", "-n", "5"],
        ["logs", "-n", "5", "-f"],
        ["logs", "--after", "-1"],
    ],
)
def test_logs_on_a_terminal_are_escaped(daemon: Daemon, hostile: str, args: list[str]) -> None:
    result = ok(on_terminal(daemon.socket, *args, hostile))
    assert sorted(result.stdout.split("\n")) == sorted([LINE_ESCAPED, EVENT_ESCAPED, ""])
    assert controls(result.stdout + result.stderr) == []


def test_run_follow_on_a_terminal_is_escaped(daemon: Daemon, hostile: str) -> None:
    result = ok(on_terminal(daemon.socket, "run", "hostile", "--follow"))
    handle, *lines = result.stdout.split("\n")
    assert sorted(lines) == sorted([LINE_ESCAPED, EVENT_ESCAPED, ""])
    assert len(handle) == 36 and "hostile  Completed" in result.stderr
    assert controls(result.stdout + result.stderr) == []


@pytest.mark.parametrize("args", [["logs"], ["logs", "-f"], ["logs", "-n", "5"]])
def test_a_pipe_gets_the_text_as_stored(daemon: Daemon, hostile: str, args: list[str]) -> None:
    result = ok(through_pipes(daemon.socket, *args, hostile))
    assert sorted(result.stdout.split("\n")) == sorted([LINE, EVENT_RENDERED, ""])


@pytest.mark.parametrize("args", [["logs", "--raw"], ["logs", "-f", "--raw"], ["--raw", "logs"]])
def test_raw_passes_through_on_a_terminal(daemon: Daemon, hostile: str, args: list[str]) -> None:
    result = ok(on_terminal(daemon.socket, *args, hostile))
    assert sorted(result.stdout.split("\n")) == sorted([LINE, EVENT_RENDERED, ""])


def test_run_follow_raw_passes_through_on_a_terminal(daemon: Daemon, hostile: str) -> None:
    result = ok(on_terminal(daemon.socket, "run", "hostile", "--follow", "--raw"))
    assert sorted(result.stdout.split("\n")[1:]) == sorted([LINE, EVENT_RENDERED, ""])


# --------------------------------------------------------------------------- JSON


@pytest.mark.parametrize("args", [["logs", "--json"], ["logs", "-f", "--json"]])
def test_json_on_a_terminal_is_the_same_document_without_controls(
    daemon: Daemon, hostile: str, args: list[str]
) -> None:
    on_tty = ok(on_terminal(daemon.socket, *args, hostile))
    piped = ok(through_pipes(daemon.socket, *args, hostile))
    assert controls(on_tty.stdout) == []
    documents = [json.loads(line) for line in on_tty.stdout.splitlines()]
    assert documents == [json.loads(line) for line in piped.stdout.splitlines()]
    entries = documents[0]["entries"] if "entries" in documents[0] else documents[:-1]
    assert sorted(e["line"] for e in entries if e["type"] == "raw_output") == [LINE]
    assert [e["event"]["message"] for e in entries if e["event"]] == [EVENT["message"]]


# --------------------------------------------------------------------------- other text


def test_metadata_params_and_reasons_on_a_terminal(
    daemon: Daemon, workflow_dir: Path, hostile: str
) -> None:
    vanishing = write_workflow(workflow_dir, VANISHING_FILE, "", hostile_metadata("vanishing"))
    ok(through_pipes(daemon.socket, "workflows", "--rescan"))
    vanishing.unlink()
    failed = on_terminal(daemon.socket, "run", "vanishing", "--wait")
    assert failed.returncode == 125, failed
    spawn_error = failed.stdout.split()[0]
    # Each view, and a piece of workflow-controlled text it must show escaped.
    views = [
        (["workflows"], r"Hostile \x1b]0;name\x07"),
        (["workflows", "hostile"], r"says \x1b[2Jhi\u202eevil"),
        (["workflows", "hostile"], r"Message \x1b[31m"),
        (["workflows", "hostile"], r"d\x9b1m"),
        (["status", hostile], r"v\x1b[5m"),
        (["params", hostile], r"v\x1b[5m"),
        (["status", spawn_error], r"vanishing\x1b[2J\u202e"),
        (["history"], r"vanishing\x1b[2J\u202e"),
        (["wait", spawn_error], r"vanishing\x1b[2J\u202e"),
        (["run", "vanishing", "--wait"], r"vanishing\x1b[2J\u202e"),
    ]
    for args, escaped in views:
        result = on_terminal(daemon.socket, *args)
        assert escaped in result.stdout, (args, result)
        assert controls(result.stdout + result.stderr) == [], (args, result)
    # `logs -f` ends with the execution's summary on stderr, reason included.
    followed = ok(on_terminal(daemon.socket, "logs", "-f", spawn_error))
    assert r"vanishing\x1b[2J\u202e" in followed.stderr
    assert controls(followed.stderr) == []
    # The same views through a pipe show the text as stored.
    assert "Hostile \x1b]0;name\x07" in ok(through_pipes(daemon.socket, "workflows")).stdout
    assert "v\x1b[5m" in ok(through_pipes(daemon.socket, "params", hostile)).stdout
    piped = through_pipes(daemon.socket, "logs", "-f", spawn_error)
    assert VANISHING_FILE in ok(piped).stderr


def test_error_messages_on_a_terminal(tmp_path: Path) -> None:
    socket = tmp_path / "no\x1b]0;where\x07" / "wfmd.sock"
    result = on_terminal(socket, "ping")
    assert result.returncode == 69, result
    assert r"no\x1b]0;where\x07" in result.stderr
    assert controls(result.stderr) == []
    piped = through_pipes(socket, "ping")
    assert "no\x1b]0;where\x07" in piped.stderr
