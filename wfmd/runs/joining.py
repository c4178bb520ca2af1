"""How a child joins its cgroup before it execs without the daemon forking itself.

A child started with `preexec_fn` is forked: the daemon's page tables are copied, and until
both sides have moved on every page either writes is faulted and copied, the fork itself
holding the GIL. For a daemon of tens of MB with several threads that is most of the CPU a
trivial run costs it (tests/bench/RESULTS.md). Without `preexec_fn` subprocess uses vfork,
which copies nothing, but then no code of ours runs in the child before its exec. So the
child execs `/bin/sh`, which writes itself into the cgroup and execs
`env -i -- NAME=VALUE... ARGV`: env, not sh, gives the program its environment, exactly (sh
drops variables whose names are not shell names, and rewrites PWD).

sh and env (execvp) differ from a plain execve in two ways: a program that fails to exec
comes back as an exit status (126, 127) with a message on stderr, not as an error of the
spawn; and a file that is neither a `#!` script nor an executable for this machine is run by
/bin/sh. So this way is taken only for a program sure to exec: the first executable regular
file on the search path execvp uses, an ELF for this machine or a `#!` script whose
interpreter is one. Anything else is forked, with the exact errors of execve. Only a file
changed between the check and the exec gets env's message and status.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

SH = "/bin/sh"
ENV = "/usr/bin/env"

# $0 is the cgroup's cgroup.procs; "0" there means the writing process. `exec` keeps the pid.
JOIN_THEN_EXEC = 'echo 0 >"$0" && exec "$@"'

# The kernel reads this much of a file to decide how to run it (BINPRM_BUF_SIZE), and follows
# a `#!` line's interpreter this many levels deep when it is itself a script.
HEADER_SIZE = 256
MAX_SCRIPT_DEPTH = 4

ELF_MAGIC = b"\x7fELF"
INTERPRETER = re.compile(rb"[ \t]*(/[^ \t\n]*)")
# An ELF header's class and byte order (bytes 4-5) and machine (18-19): what must match ours.
ELF_CLASS = slice(4, 6)
ELF_MACHINE = slice(18, 20)


def joining_argv(
    argv: Sequence[str], env: Mapping[str, str], cwd: str, procs: Path
) -> list[str] | None:
    """Blocking. The command line that joins the cgroup whose `cgroup.procs` is `procs` and
    then runs `argv` in `cwd` with exactly `env`; None if `argv` must be forked instead (see
    the module's docstring)."""
    name = argv[0]
    if not name or "=" in name or not _tools_present():  # env would take NAME=... for a variable
        return None
    program = _search(name, env, cwd)
    if program is None or not _sure_to_exec(program, MAX_SCRIPT_DEPTH):
        return None
    variables = [f"{key}={value}" for key, value in env.items()]
    return [SH, "-c", JOIN_THEN_EXEC, str(procs), ENV, "-i", "--", *variables, *argv]


@functools.cache
def _tools_present() -> bool:
    return all(os.access(tool, os.X_OK) for tool in (SH, ENV))


@functools.cache
def _own_elf_header() -> bytes:
    with open("/proc/self/exe", "rb") as exe:
        return exe.read(HEADER_SIZE)


def _search(name: str, env: Mapping[str, str], cwd: str) -> str | None:
    """The file execvp would run for `name`: the first executable regular file on PATH (or
    `name` itself if it has a slash), relative paths taken from `cwd`."""
    if "/" in name:
        candidates = [os.path.join(cwd, name)]
    else:
        candidates = [os.path.join(cwd, folder, name) for folder in os.get_exec_path(env)]
    for candidate in candidates:
        try:
            info = os.stat(candidate)
        except (OSError, ValueError):
            continue
        if stat.S_ISREG(info.st_mode) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _sure_to_exec(path: str, depth: int) -> bool:
    """Will the kernel exec `path` itself: an ELF for this machine, or a script whose
    interpreter (at most `depth` levels of them) is one?"""
    try:
        with open(path, "rb") as file:
            head = file.read(HEADER_SIZE)
    except OSError:
        return False
    if head.startswith(ELF_MAGIC):
        own = _own_elf_header()
        return head[ELF_CLASS] == own[ELF_CLASS] and head[ELF_MACHINE] == own[ELF_MACHINE]
    if not head.startswith(b"#!") or depth == 0 or b"\n" not in head:
        return False
    # As the kernel reads it: blanks are spaces and tabs only (a CR is part of the name).
    match = INTERPRETER.match(head, 2)
    if match is None:
        return False
    interpreter = os.fsdecode(match[1])
    try:
        info = os.stat(interpreter)
    except OSError:
        return False
    return (
        stat.S_ISREG(info.st_mode)
        and os.access(interpreter, os.X_OK)
        and _sure_to_exec(interpreter, depth - 1)
    )
