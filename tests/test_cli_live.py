"""`run --follow` and `logs -f` on a terminal: a progress line at the bottom built from the
events, colour (status, stderr, events) unless NO_COLOR or --no-color, carriage-return
progress bars shown as their latest state; pipes get none of it.

The real wfmctl runs on pseudo-terminals (tests/live_terminal.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import Daemon, metadata, write_workflow
from live_terminal import LiveTerminal
from test_cli import ok

from wfmctl.cli import style
from wfmctl.cli.live import ERASE
from wfmctl.protocol import LogEntry

SGR = re.compile(r"\x1b\[[0-9;]*m")


def event(**fields: object) -> str:
    return "__WF_EVENT__:" + json.dumps(fields)


# Two phases; a pause inside a task (the progress line must show it meanwhile); plain lines;
# a carriage-return progress bar (on stderr, as tqdm prints it). All on stderr: one stream
# keeps its order.
BODY = f"""
def say(text, stream=sys.stderr):
    print(text, file=stream, flush=True)

say({event(type="phase_started", phase=1, total_phases=2, name="Fetch")!r})
say({event(type="task_started", phase=1, task_id="t1", description="download")!r})
say("fetching")
print("ready", file=open(sys.argv[-1], "w"), flush=True)
time.sleep(0.6)
say({event(type="task_completed", task_id="t1", result="ok")!r})
say("a warning")
for pct in (10, 50, 100):
    sys.stderr.write(f"\\rbar {{pct:3d}}%")
    sys.stderr.flush()
    time.sleep(0.4 if pct == 10 else 0.05)
sys.stderr.write("\\n")
say({event(type="phase_started", phase=2, total_phases=2, name="Build")!r})
say("done")
"""


@pytest.fixture
def showy(daemon: Daemon, workflow_dir: Path, tmp_path: Path) -> Path:
    meta = metadata("showy", {"name": "flag", "field_type": {"type": "text"}, "cli_arg": "--flag"})
    write_workflow(workflow_dir, "showy", BODY, meta)
    ok(daemon.wfmctl("workflows", "--rescan"))
    return tmp_path / "ready"


def screen(text: str) -> list[str]:
    """The lines left on the screen: each after its last erase, without colour."""
    return [SGR.sub("", line.rsplit(ERASE, 1)[-1]) for line in text.split("\n")]


@pytest.mark.parametrize("command", ["run", "logs"])
def test_progress_line_and_colour_on_a_terminal(daemon: Daemon, showy: Path, command: str) -> None:
    if command == "run":
        live = LiveTerminal(daemon.socket, "run", "showy", "-p", f"flag={showy}", "--follow")
    else:
        handle = ok(daemon.wfmctl("run", "showy", "-p", f"flag={showy}")).strip()
        live = LiveTerminal(daemon.socket, "logs", "-f", handle)
    # While the task pauses, the bottom line says where the run is, and time moves on.
    live.wait_for("fetching")
    live.wait_for("task t1: download · 0.")
    # The progress bar, while it is on its line (not stored yet): its latest state.
    live.wait_for("showy · phase 1/2 Fetch · bar  10% · ")
    assert live.finish() == 0, live.stderr
    out = live.stdout
    assert f"{ERASE}{style.DIM}showy · phase 1/2 Fetch · task t1: download · " in out
    shown = [line for line in screen(out) if line]
    if command == "run":
        shown = shown[1:]  # the handle
    assert shown == [
        "▶ phase 1/2: Fetch",
        "  • task t1 started: download",
        "fetching",
        "  ✓ task t1 done: ok",
        "a warning",
        "bar 100%",  # the bar's latest state, not every state escaped
        "▶ phase 2/2: Build",
        "done",
    ]
    # Colour: events cyan (completions green), stderr yellow, the ending's status green.
    assert f"{style.CYAN}▶ phase 1/2: Fetch{style.RESET}" in out
    assert f"{style.GREEN}  ✓ task t1 done: ok{style.RESET}" in out
    assert f"{style.YELLOW}a warning{style.RESET}" in out
    assert f"{style.GREEN}Completed{style.RESET} in " in live.stderr
    assert screen(out)[-1] == ""  # the progress line is gone at the end
    # Drawn again while nothing came: the elapsed time moved during the task's pause.
    assert len(set(re.findall(r"task t1: download · (\d+\.\d)s", out))) >= 2


def test_no_color_and_pipes(daemon: Daemon, showy: Path) -> None:
    args = ["run", "showy", "-p", f"flag={showy}", "--follow"]
    live = LiveTerminal(daemon.socket, *args, env={"NO_COLOR": "1"})
    assert live.finish() == 0
    assert not SGR.search(live.stdout + live.stderr)
    assert "bar 100%" in screen(live.stdout)
    for command in (["history"], ["status", "@last"], ["logs", "-f", "@last"]):
        flagged = LiveTerminal(daemon.socket, *command, "--no-color")
        assert flagged.finish() == 0
        assert not SGR.search(flagged.stdout + flagged.stderr), command
    # Through a pipe: the lines as stored, no progress line, no colour.
    piped = daemon.wfmctl("logs", "-f", "@last")
    assert ERASE not in piped.stdout and not SGR.search(piped.stdout + piped.stderr)
    # Stored as printed: every state of the bar (what ingestion keeps today).
    page = json.loads(ok(daemon.wfmctl("logs", "@last", "--json")))
    assert "\rbar  10%\rbar  50%\rbar 100%" in [e["line"] for e in page["entries"]]


def test_status_and_history_colour(daemon: Daemon) -> None:
    daemon.run_and_wait("always_fails")
    history = LiveTerminal(daemon.socket, "history")
    assert history.finish() == 0
    assert f"{style.RED}Failed{style.RESET}" in history.stdout
    status = LiveTerminal(daemon.socket, "status", "@last")
    assert status.finish() == 0
    assert f"status:       {style.RED}Failed{style.RESET}" in status.stdout
    assert not SGR.search(ok(daemon.wfmctl("status", "@last")))


def test_follow_live_sends_the_bar_before_its_line_is_stored(daemon: Daemon, showy: Path) -> None:
    """Over the protocol: `Follow(partial=True)` brings the bar's latest states as they
    change, then the stored line; a plain `follow` brings only the stored line."""
    with daemon.client() as client:
        handle = client.run("showy", {"flag": str(showy)}).handle
        seen: list[object] = []
        for item in client.follow_live(handle):
            seen.append(item)
        plain = list(client.follow(handle))
    partials = [item for item in seen if isinstance(item, list)]
    assert [p.text for batch in partials for p in batch][:1] == ["bar  10%"]
    assert partials[0][0].stream == "stderr"
    lines = [item.line for item in seen if isinstance(item, LogEntry)]
    assert "\rbar  10%\rbar  50%\rbar 100%" in lines
    first_bar = next(i for i, item in enumerate(seen) if isinstance(item, list) and item)
    stored_at = next(
        i for i, item in enumerate(seen) if isinstance(item, LogEntry) and "bar" in item.line
    )
    assert first_bar < stored_at
    assert not any(isinstance(item, list) for item in plain)
