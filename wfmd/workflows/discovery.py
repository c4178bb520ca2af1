"""Workflow discovery: find the executables in the workflow directories and ask each one for
its metadata (`<exe> --workflow-metadata`, one JSON document on stdout).

Nothing is dropped silently: a file that looks like a workflow but cannot be used (not
executable, probe timed out, failed, or printed bad metadata) is reported with the reason,
and two workflows claiming one id are reported as a conflict (the first one found wins).
Only obvious non-workflows are ignored without a word: hidden files, documentation and JSON
files, directories.

Probes are untrusted programs: each runs in its own session and its own box (a cgroup, see
runs/containment.py) with stdin closed, a deadline, and a bound on how much output we keep,
and everything in its box is killed when it is done, so a probe can neither hang discovery,
eat our memory, nor leave processes behind.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import trio

from wfmctl.paths import data_dir
from wfmctl.protocol import MAX_NAME, SkippedFile, Workflow
from wfmd.runs import containment, process
from wfmd.workflows.params import scalar_text

log = logging.getLogger(__name__)

METADATA_FLAG = "--workflow-metadata"

# Workflows shipped with wfm. They are installed with their executable bit: pip (and every
# installer we know of) restores it from the wheel, so they need no special treatment.
EXAMPLES_DIR = Path(__file__).parent / "examples"

# Probes run at once up to this many: a directory of 100 workflows is scanned in a few
# rounds instead of 100 sequential start-ups, without forking 100 interpreters at once.
PROBE_CONCURRENCY = 16

# Real metadata is a few KiB. A probe printing more than this is broken (or hostile); we stop
# reading rather than hold its output in memory.
MAX_METADATA_BYTES = 1024 * 1024

# Only stderr's first line goes into a skip reason; the rest is read and discarded so that a
# chatty probe cannot block on a full pipe.
MAX_STDERR_BYTES = 64 * 1024
MAX_REASON_LINE = 300  # characters of that line kept: a reason is read by people

READ_CHUNK = 64 * 1024

# After the probe has exited, how long what it started may keep its pipes open before it is
# killed: time for a helper to finish writing, not for a daemon to keep running.
DRAIN_GRACE = 0.5

# After SIGKILL a process dies at once unless it is stuck in the kernel; do not let such a
# one hold up discovery forever.
REAP_GRACE = 5.0

# Files that sit next to workflows (READMEs, notes, saved parameters) and are never one.
IGNORED_SUFFIXES = frozenset({".md", ".txt", ".json"})

# Ids name workflows on the command line and in the database; this keeps them plain words,
# so that an id like `../../bin/sh` or one with a newline can never appear. Use fullmatch:
# `$` alone would accept a trailing newline.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

FIELD_TYPES = frozenset({"text", "number", "file_path", "select", "phase_selector", "state_file"})


@dataclass(frozen=True)
class Catalog:
    """What a scan found: workflows by id, files skipped (with why), and id conflicts."""

    workflows: dict[str, Workflow]
    skipped: list[SkippedFile]
    conflicts: list[str]


def default_workflow_dirs() -> list[Path]:
    """The user's data dir, the original tool's directory, then the shipped examples."""
    return [
        data_dir() / "workflows",
        Path.home() / ".workflow-manager" / "workflows",
        EXAMPLES_DIR,
    ]


def create_user_dir() -> None:
    """Create the user's workflow directory (the first default one) if it is missing, so
    that there is a place to put a workflow that the daemon scans. A failure is logged:
    the directory is a convenience, and discovery copes with a missing one."""
    directory = default_workflow_dirs()[0]
    if directory.is_dir():
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("could not create the workflow directory %s: %s", directory, exc)
    else:
        log.info("created the workflow directory %s", directory)


async def discover(dirs: Sequence[Path], *, probe_timeout: float) -> Catalog:
    """Scan `dirs` in order (missing ones are fine) and probe every candidate file.

    Files are taken in directory order, then by name; probes run concurrently but the result
    does not depend on which finishes first: for a duplicate id the earlier file wins.

    Cancellation: running probes are killed (their process groups) and reaped before the
    cancellation propagates; nothing is left running.
    """
    entries: list[tuple[Path, str | None]] = []
    for directory in dirs:
        entries += await trio.to_thread.run_sync(_scan_dir, Path(directory))

    results: list[Workflow | str] = [reason or "" for _, reason in entries]
    limiter = trio.CapacityLimiter(PROBE_CONCURRENCY)

    async def probe_into(index: int, path: Path) -> None:
        async with limiter:
            results[index] = await probe(path, probe_timeout=probe_timeout)

    async with trio.open_nursery() as nursery:
        for index, (path, reason) in enumerate(entries):
            if reason is None:
                nursery.start_soon(probe_into, index, path)

    workflows: dict[str, Workflow] = {}
    skipped: list[SkippedFile] = []
    conflicts: list[str] = []
    for (path, _), result in zip(entries, results, strict=True):
        if isinstance(result, str):
            skipped.append(SkippedFile(path=str(path), reason=result))
        elif (kept := workflows.get(result.id)) is not None:
            conflicts.append(
                f"workflow id {result.id!r} in {result.path} also defined by {kept.path} (kept)"
            )
        else:
            workflows[result.id] = result
    return Catalog(workflows=workflows, skipped=skipped, conflicts=conflicts)


def _scan_dir(directory: Path) -> list[tuple[Path, str | None]]:
    """The candidate files of `directory` by name, each with a reason to skip it or None.

    Blocking (listdir, stat): run in a thread.
    """
    directory = Path(os.path.abspath(directory))
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except OSError as exc:
        return [(directory, f"could not read directory: {exc.strerror or exc}")]

    entries: list[tuple[Path, str | None]] = []
    for name in names:
        if name.startswith(".") or os.path.splitext(name)[1].lower() in IGNORED_SUFFIXES:
            continue
        path = directory / name
        try:
            mode = os.stat(path).st_mode  # follows symlinks
        except FileNotFoundError:
            if path.is_symlink():
                entries.append((path, "broken symbolic link"))
            continue  # removed while we looked
        except OSError as exc:
            entries.append((path, f"could not stat: {exc.strerror or exc}"))
            continue
        if not stat.S_ISREG(mode):
            continue
        entries.append((path, None if os.access(path, os.X_OK) else "not executable"))
    return entries


async def probe(path: Path, *, probe_timeout: float) -> Workflow | str:
    """Ask the executable at `path` for its metadata: the workflow, or why it is skipped.

    The workflow's `path` is set to `path` as given (`discover` passes absolute paths),
    whatever the metadata says.

    Cancellation: as for `_run_probe`, the probe's process group is killed and reaped.
    """
    try:
        outcome = await _run_probe(path, probe_timeout=probe_timeout)
    except OSError as exc:
        return f"could not execute: {exc.strerror or exc}"
    if isinstance(outcome, str):
        return outcome
    returncode, stdout, stderr = outcome
    if returncode != 0:
        return _exit_reason(returncode, stderr)
    try:
        return parse_metadata(stdout, path=str(path))
    except MetadataError as exc:
        return f"invalid metadata: {exc}"


async def _run_probe(path: Path, *, probe_timeout: float) -> tuple[int, bytes, bytes] | str:
    """Run the probe in a box of its own; its exit status, stdout and stderr, or a reason it
    gave none.

    Once the probe has exited, whatever it started goes too: after DRAIN_GRACE at most,
    everything left in its box is killed, so a process it left holding its stdout cannot
    hold up the reading either.

    Cancellation (and every other exit): everything in the probe's box gets SIGKILL, then
    the probe is reaped under a shield, bounded by REAP_GRACE.
    """
    probe_id = uuid.uuid4().hex
    box = await containment.open_box(f"probe-{probe_id}", containment.PROBE_ENV, probe_id)
    try:
        probe = await box.spawn(
            [os.fspath(path), METADATA_FLAG],
            env=dict(os.environ, **{containment.PROBE_ENV: probe_id}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except BaseException:
        await box.close()
        raise
    assert probe.stdout is not None and probe.stderr is not None
    stdout, stderr = bytearray(), bytearray()
    too_long = False
    try:
        with trio.move_on_after(probe_timeout) as deadline:
            async with trio.open_nursery() as nursery:

                async def read_stdout() -> None:
                    nonlocal too_long
                    assert probe.stdout is not None
                    if not await _read_bounded(probe.stdout, stdout, MAX_METADATA_BYTES):
                        too_long = True
                        nursery.cancel_scope.cancel()

                async def read_both() -> None:
                    assert probe.stderr is not None
                    async with trio.open_nursery() as reads:
                        reads.start_soon(read_stdout)
                        reads.start_soon(
                            _read_bounded, probe.stderr, stderr, MAX_STDERR_BYTES, True
                        )
                    nursery.cancel_scope.cancel()  # both at EOF: no strays to wait for

                async def end_strays() -> None:
                    await probe.wait()
                    await trio.sleep(DRAIN_GRACE)
                    await box.kill(within=REAP_GRACE)  # their pipes close: EOF

                nursery.start_soon(read_both)
                nursery.start_soon(end_strays)
            if not too_long:
                await probe.wait()
        if too_long:
            return f"printed more than {MAX_METADATA_BYTES} bytes of metadata"
        if deadline.cancelled_caught:
            return f"timed out after {float(probe_timeout)} s"
        assert probe.returncode is not None
        return probe.returncode, bytes(stdout), bytes(stderr)
    finally:
        # Also on success: whatever the probe started goes with it.
        await process.kill_and_reap(probe, within=REAP_GRACE)
        with trio.CancelScope(shield=True):
            await box.kill(within=REAP_GRACE)
            await box.close()
            await probe.stdout.aclose()
            await probe.stderr.aclose()


async def _read_bounded(
    stream: trio.abc.ReceiveStream, into: bytearray, limit: int, drain: bool = False
) -> bool:
    """Append `stream`'s bytes to `into` until EOF; False if there were more than `limit`.

    Past the limit it stops reading, or with `drain` reads on to EOF and discards.
    """
    fits = True
    while chunk := await stream.receive_some(READ_CHUNK):
        room = limit - len(into)
        if len(chunk) > room:
            into += chunk[: max(room, 0)]
            fits = False
            if not drain:
                break
        else:
            into += chunk
    return fits


def _exit_reason(returncode: int, stderr: bytes) -> str:
    """`exited with status 3: <first stderr line>`, or `killed by signal 11 (SIGSEGV): ...`."""
    what = process.describe_exit(returncode)
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return f"{what}: {lines[0].strip()[:MAX_REASON_LINE]}" if lines else what


class MetadataError(Exception):
    """Metadata that cannot be used; the message says what is wrong with it."""


def parse_metadata(data: bytes, *, path: str) -> Workflow:
    """The workflow described by the JSON `data`, with its `path` set; raises MetadataError.

    Metadata in the wild has numbers and booleans as field defaults; those become text, as
    parameter values do. Anything else must match the protocol's `Workflow` exactly.
    """
    try:
        raw: object = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise MetadataError(str(exc)) from None
    try:
        workflow = msgspec.convert(_defaults_as_text(raw), type=Workflow)
    except msgspec.ValidationError as exc:
        raise MetadataError(str(exc)) from None
    problems = _problems(workflow)
    if problems:
        raise MetadataError("; ".join(problems))
    return msgspec.structs.replace(workflow, path=path)


def _defaults_as_text(raw: object) -> object:
    """`raw` with each field's scalar `default` turned into text (in place: it is ours)."""
    fields = raw.get("fields") if isinstance(raw, dict) else None
    for field in fields if isinstance(fields, list) else []:
        if isinstance(field, dict):
            default = field.get("default")
            if isinstance(default, bool | int | float):
                field["default"] = scalar_text(default)
    return raw


def _problems(workflow: Workflow) -> list[str]:
    """What makes well-typed metadata unusable anyway."""
    problems = []
    if len(workflow.id) > MAX_NAME:  # checked first: such an id is not quoted back
        problems.append(f"id is {len(workflow.id)} characters long (at most {MAX_NAME})")
    elif not ID_PATTERN.fullmatch(workflow.id):
        problems.append(
            f"id {workflow.id!r} is not valid (letters, digits, '_', '.' and '-', "
            "starting with a letter or digit)"
        )
    seen: set[str] = set()
    for field in workflow.fields:
        kind = field.field_type
        if not field.name:
            problems.append("a field has an empty name")
        elif len(field.name) > MAX_NAME:
            problems.append(
                f"a field name is {len(field.name)} characters long (at most {MAX_NAME})"
            )
        elif field.name in seen:
            problems.append(f"field name {field.name!r} is used more than once")
        seen.add(field.name)
        if kind.type not in FIELD_TYPES:
            problems.append(
                f"field {field.name!r} has unknown type {kind.type!r} "
                f"(expected one of {', '.join(sorted(FIELD_TYPES))})"
            )
        elif kind.type == "select" and not kind.options:
            problems.append(f"select field {field.name!r} has no options")
        elif (
            kind.type == "number"
            and kind.min is not None
            and kind.max is not None
            and kind.min > kind.max
        ):
            problems.append(f"number field {field.name!r} has min {kind.min} > max {kind.max}")
    return problems
