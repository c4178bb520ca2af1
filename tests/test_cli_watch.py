"""Watching runs: `run --wait` prints the handle once and one status line; Ctrl-C while
watching says that the execution goes on and how to get back to it; every subcommand's
--help lists its exit codes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import WFMCTL, Daemon, metadata, write_workflow
from live_terminal import LiveTerminal
from test_cli import ok, run_handle
from test_cli_args import subcommand_parsers

from wfmctl.cli.exit_codes import COMMAND_EXIT_CODES, EXIT_CANCELLED

SLEEPER = 'print("started", flush=True)\ntime.sleep(60)\n'


def test_run_wait_prints_the_handle_once_then_one_status_line(daemon: Daemon) -> None:
    out = ok(daemon.wfmctl("run", "echo_params", "-p", "message=hi", "--wait")).splitlines()
    assert len(out) == 2
    handle, status = out
    assert len(handle) == 36
    assert status.startswith("echo_params  Completed in ")
    assert handle[:8] not in status


@pytest.mark.parametrize(
    "command",
    [["run", "sleeper", "--follow"], ["run", "sleeper", "--wait"], ["logs", "-f"], ["wait"]],
)
def test_ctrl_c_while_watching_says_the_run_goes_on(
    daemon: Daemon, workflow_dir: Path, command: list[str]
) -> None:
    write_workflow(workflow_dir, "sleeper", SLEEPER, metadata("sleeper"))
    ok(daemon.wfmctl("workflows", "--rescan"))
    if command[0] == "run":
        live = LiveTerminal(daemon.socket, *command)
        live.wait_for("\n")  # the handle: the run is accepted
        handle = live.stdout.split()[0]
    else:
        handle = run_handle(daemon, "sleeper")
        live = LiveTerminal(daemon.socket, *command, "@last")
    if "--wait" not in command and command != ["wait"]:
        live.wait_for("started")
    live.wait_blocked_on_wfmd()
    live.interrupt()
    assert live.finish() == EXIT_CANCELLED
    short = handle[:8]
    assert f"stopped watching; {short} (sleeper) goes on running" in live.stderr
    assert f"wfmctl logs -f {short}" in live.stderr
    assert f"wfmctl cancel {short}" in live.stderr
    assert "Traceback" not in live.stderr
    with daemon.client() as client:
        assert client.status(handle).status == "Running"
        client.cancel(handle)


def test_every_subcommand_help_lists_its_exit_codes() -> None:
    assert sorted(COMMAND_EXIT_CODES) == sorted(subcommand_parsers())
    for command, codes in COMMAND_EXIT_CODES.items():
        shown = subprocess.run(
            [WFMCTL, command, "--help"], capture_output=True, text=True, timeout=60
        )
        assert shown.returncode == 0, shown.stderr
        section = shown.stdout.split("exit codes:\n", 1)[1]
        listed = [line.split()[0] for line in section.splitlines()]
        assert sorted(listed) == sorted(code.strip() for code in codes), command
    run_help = subprocess.run([WFMCTL, "run", "--help"], capture_output=True, text=True)
    assert "130   Ctrl-C: wfmctl stops watching, the execution keeps running" in run_help.stdout
