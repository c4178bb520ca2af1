"""Joining a cgroup before exec through sh and env (wfmd/runs/joining.py): taken only for a
program sure to exec, and then the program gets exactly its argv, environment, directory,
session and cgroup; anything else is forked and fails with execve's own error."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from wfmd.runs import cgroupfs, containment, joining, process

PYTHON = os.path.realpath(sys.executable)

REPORT = f"""#!{PYTHON}
import json, os, sys
print(json.dumps({{
    "argv": sys.argv[1:],
    "env": dict(os.environ),
    "cwd": os.getcwd(),
    "cgroup": open("/proc/self/cgroup").read(),
    "session_leader": os.getsid(0) == os.getpid(),
}}))
"""

# Names sh would drop (not shell names) or rewrite (PWD), and values with every awkward byte.
ODD_ENV = {
    "A.B": "1",
    "X-Y": "two words",
    "PWD": "/nonsense",
    "EMPTY": "",
    "LINES": "a\nb",
    "EQUALS": "k=v=w",
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "LC_ALL": "C.UTF-8",  # else Python adds LC_CTYPE to the report's environment (PEP 538)
}
ODD_ARGS = ["--", "-x", "K=V", "two words", "", "*"]


def executable(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    path.chmod(0o755)
    return path


def joins(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> bool:
    procs = Path("/sys/fs/cgroup/x/cgroup.procs")  # only passed through
    found = joining.joining_argv(argv, env or {"PATH": "/usr/bin:/bin"}, str(cwd), procs)
    if found is not None:
        prefix = [joining.SH, "-c", joining.JOIN_THEN_EXEC, str(procs), joining.ENV, "-i", "--"]
        assert found[: len(prefix)] == prefix
        assert found[-len(argv) :] == argv
    return found is not None


# --------------------------------------------------------------------------- which way


def test_an_elf_for_this_machine_and_scripts_it_runs_join_through_sh(tmp_path: Path) -> None:
    assert joins([PYTHON, "-c", "pass"], tmp_path)
    assert joins([str(executable(tmp_path / "s", "#!/bin/sh\necho hi\n"))], tmp_path)
    assert joins([str(executable(tmp_path / "t", "#! \t/bin/sh -e\n"))], tmp_path)
    # An interpreter that is itself a script of an ELF interpreter.
    middle = executable(tmp_path / "middle", "#!/bin/sh\n")
    assert joins([str(executable(tmp_path / "top", f"#!{middle}\n"))], tmp_path)


def test_the_program_is_found_as_execvp_finds_it(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tool").write_text("#!/bin/sh\n")  # not executable: skipped, as execvp does
    other = tmp_path / "other"
    other.mkdir()
    executable(other / "tool", "#!/bin/sh\n")
    assert joins(["tool"], tmp_path, {"PATH": f"{bin_dir}:{other}"})
    assert not joins(["tool"], tmp_path, {"PATH": str(bin_dir)})
    assert not joins(["absent-tool"], tmp_path, {"PATH": str(other)})
    # A relative path is taken from the child's directory, not the daemon's.
    assert joins(["./tool"], other)
    assert not joins(["./tool"], tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        "echo no interpreter line\n",
        "#!/nonexistent/interpreter\n",
        "#!/bin/sh\r\necho a CR ends the name\n",
        "#!relative/interpreter\n",
        b"\x7fELF" + b"\x00" * 60,  # an ELF for no machine
        "#!" + "/bin/sh" + " " * 300,  # a first line longer than the kernel reads
    ],
    ids=["no-shebang", "missing-interpreter", "crlf", "relative", "foreign-elf", "long-line"],
)
def test_anything_not_sure_to_exec_is_forked(tmp_path: Path, content: str | bytes) -> None:
    assert not joins([str(executable(tmp_path / "prog", content))], tmp_path)


def test_a_script_of_a_no_shebang_interpreter_is_forked(tmp_path: Path) -> None:
    middle = executable(tmp_path / "middle", "echo plain text\n")
    assert not joins([str(executable(tmp_path / "top", f"#!{middle}\n"))], tmp_path)


def test_names_env_would_read_as_variables_and_unexecutables_are_forked(tmp_path: Path) -> None:
    script = executable(tmp_path / "k=v", "#!/bin/sh\n")
    assert not joins([str(script)], tmp_path)
    assert not joins([""], tmp_path)
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    plain.chmod(0o644)
    assert not joins([str(plain)], tmp_path)
    assert not joins([str(tmp_path)], tmp_path)  # a directory


# --------------------------------------------------------------------------- in a cgroup


@pytest.fixture
async def cgroup() -> AsyncIterator[Path]:
    found = await containment.current()
    if found.cgroups is None:
        pytest.skip(f"no cgroup containment here: {found.detail}")
    path = found.cgroups.create(f"test-joining-{os.getpid()}")
    try:
        yield path
    finally:
        await cgroupfs.kill_and_wait_empty(found.cgroups, path, 10.0)
        cgroupfs.remove(path)


async def spawn_and_read(
    argv: list[str], env: dict[str, str], cwd: Path, cgroup: Path, out: Path
) -> tuple[int, str]:
    sink = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        proc = await process.open_in_session(
            argv, env=env, stdout=sink, stderr=sink, cgroup=cgroup, cwd=str(cwd)
        )
    finally:
        os.close(sink)
    with trio.fail_after(20):
        code = await proc.wait()
    return code, await trio.Path(out).read_text()


async def test_a_joined_program_gets_exactly_its_argv_env_directory_and_cgroup(
    cgroup: Path, tmp_path: Path
) -> None:
    script = executable(tmp_path / "report", REPORT)
    argv = [str(script), *ODD_ARGS]
    assert joining.joining_argv(argv, ODD_ENV, str(tmp_path), cgroup / "cgroup.procs")
    code, output = await spawn_and_read(argv, ODD_ENV, tmp_path, cgroup, tmp_path / "out")
    assert code == 0, output
    report: dict[str, Any] = json.loads(output)
    assert report["argv"] == ODD_ARGS
    assert report["env"] == ODD_ENV
    assert report["cwd"] == str(tmp_path)
    assert report["session_leader"] is True
    assert report["cgroup"].strip().endswith("/" + cgroup.name), report["cgroup"]


async def test_a_forked_program_joins_too_and_fails_with_execves_error(
    cgroup: Path, tmp_path: Path
) -> None:
    # A name with "=" in it, which env would take for a variable: forked, still joined.
    report = executable(tmp_path / "re=port", REPORT)
    argv = [str(report), "x"]
    assert joining.joining_argv(argv, {}, str(tmp_path), cgroup / "cgroup.procs") is None
    env = {"K": "v", "LC_ALL": "C.UTF-8"}
    code, output = await spawn_and_read(argv, env, tmp_path, cgroup, tmp_path / "out")
    assert code == 0, output
    assert json.loads(output)["env"] == env
    assert json.loads(output)["cgroup"].strip().endswith("/" + cgroup.name)

    no_shebang = executable(tmp_path / "plain-text", "echo I must not run as a script\n")
    with pytest.raises(OSError) as raised:
        await process.open_in_session(
            [str(no_shebang)],
            env={},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cgroup=cgroup,
            cwd=str(tmp_path),
        )
    assert raised.value.errno == errno.ENOEXEC
