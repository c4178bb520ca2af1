"""`wfmctl completion bash|zsh|fish`: the scripts complete subcommands, options, status words,
workflow ids and recent handles (asked of the daemon), and stay silent when it is down.

bash is driven through its completion function (COMP_WORDS), fish through `complete -C`;
zsh completion needs a terminal widget, so its script is only loaded (after compinit)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import WFMCTL, Daemon

from wfmctl import protocol

TIMEOUT = 60


def shell_env(socket_path: Path | str) -> dict[str, str]:
    """The scripts call `wfmctl` from PATH: this one first."""
    path = f"{Path(WFMCTL).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return dict(os.environ, PATH=path, WFM_SOCKET=str(socket_path))


def bash_complete(socket_path: Path | str, line: str) -> list[str]:
    """What bash's completion function offers for `line` (the cursor at its end)."""
    words = line.split(" ")
    script = (
        "source <(wfmctl completion bash)\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        '_wfmctl\nprintf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "-c", script], env=shell_env(socket_path), capture_output=True, text=True,
        timeout=TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0 and result.stderr == "", result
    return [w for w in result.stdout.splitlines() if w]


def test_bash_completes_commands_options_and_live_values(daemon: Daemon) -> None:
    handle = daemon.run_and_wait("echo_params", message="x")
    assert sorted(bash_complete(daemon.socket, "wfmctl st")) == ["stats", "status"]
    assert "rerun" in bash_complete(daemon.socket, "wfmctl re")
    assert bash_complete(daemon.socket, "wfmctl history --fu") == ["--full"]
    assert bash_complete(daemon.socket, "wfmctl history --status ") == list(protocol.ALL_STATUSES)
    assert bash_complete(daemon.socket, "wfmctl run echo") == ["echo_params"]
    assert bash_complete(daemon.socket, "wfmctl --json run al") == ["always_fails"]
    assert bash_complete(daemon.socket, "wfmctl history --workflow mul") == ["multi_phase"]
    assert bash_complete(daemon.socket, "wfmctl status ") == ["@last", handle[:8]]
    assert bash_complete(daemon.socket, "wfmctl logs -n 5 ") == ["@last", handle[:8]]
    assert bash_complete(daemon.socket, "wfmctl completion z") == ["zsh"]


def test_completion_needs_a_shell() -> None:
    result = subprocess.run([WFMCTL, "completion"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "give a shell" in result.stderr, result


def test_completion_is_silent_and_quick_when_the_daemon_is_down(tmp_path: Path) -> None:
    down = tmp_path / "nothing.sock"
    assert bash_complete(down, "wfmctl status ") == []
    assert sorted(bash_complete(down, "wfmctl st")) == ["stats", "status"]
    # A daemon that accepts but never answers: the list gives up after its short timeout.
    hung = tmp_path / "hung.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(hung))
    listener.listen()
    with listener:
        began = time.monotonic()
        result = subprocess.run(
            [WFMCTL, "completion", "--list", "handles"],
            env=shell_env(hung), capture_output=True, text=True, timeout=TIMEOUT,
        )  # fmt: skip
        took = time.monotonic() - began
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert took < 10  # the 0.5 s timeout plus an interpreter start on a loaded machine


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completes_through_the_script(daemon: Daemon) -> None:
    daemon.run_and_wait("echo_params", message="x")

    def complete(line: str) -> list[str]:
        script = f"wfmctl completion fish | source; complete -C {line!r}"
        result = subprocess.run(
            ["fish", "--no-config", "-c", script], env=shell_env(daemon.socket),
            capture_output=True, text=True, timeout=TIMEOUT,
        )  # fmt: skip
        assert result.returncode == 0, result
        return [w.split("\t")[0] for w in result.stdout.splitlines()]

    assert "status" in complete("wfmctl st")
    assert "echo_params" in complete("wfmctl run ")
    assert "@last" in complete("wfmctl logs ")
    assert sorted(complete("wfmctl history --status ")) == sorted(protocol.ALL_STATUSES)
    assert "--cwd" in complete("wfmctl run -")


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_script_loads(tmp_path: Path) -> None:
    script = (
        "autoload -U compinit && compinit -u -d $ZDOTDIR/.zcompdump\n"
        "source <(wfmctl completion zsh)\n"
        "print -r -- $_comps[wfmctl]\n"
    )
    env = shell_env(tmp_path / "nothing.sock")
    env["ZDOTDIR"] = str(tmp_path)
    result = subprocess.run(
        ["zsh", "-f", "-c", script], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 0 and result.stderr == "", result
    assert result.stdout.strip() == "_wfmctl"
