"""Workflow discovery: probing executables for metadata, and reporting what cannot be used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from wfmd.workflows.discovery import (
    EXAMPLES_DIR,
    MAX_METADATA_BYTES,
    MetadataError,
    default_workflow_dirs,
    discover,
    parse_metadata,
)

DEADLINE = 30  # seconds: far above what any of these scans takes on a loaded machine
# Killed probes are reaped by us at once; their orphaned children are reaped by init, which
# can take a couple of seconds (some container inits poll). Well under the minute our test
# probes would otherwise sleep, so a probe that was not killed still fails the test.
KILL_DEADLINE = 10
PROBE_TIMEOUT = 5.0

EVENT_TYPES = {
    "phase_started",
    "phase_completed",
    "phase_failed",
    "task_started",
    "task_progress",
    "task_completed",
    "task_failed",
    "agent_started",
    "agent_message",
    "agent_completed",
    "agent_failed",
    "state_file_created",
}


def metadata(workflow_id: str, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": workflow_id,
        "name": workflow_id.title(),
        "description": "a test workflow",
        "fields": [
            {
                "name": "message",
                "field_type": {"type": "text"},
                "label": "Message",
                "description": "",
                "cli_arg": "--message",
                "required": True,
                "default": None,
                "required_for_phases": None,
            }
        ],
    }
    doc.update(extra)
    return doc


def write_exe(path: Path, body: str, mode: int = 0o755) -> Path:
    """An executable Python script at `path`, run by this interpreter."""
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(mode)
    return path


def write_workflow(path: Path, doc: dict[str, Any], mode: int = 0o755) -> Path:
    """A script answering `--workflow-metadata` with `doc`."""
    body = (
        f"import sys\nif sys.argv[1:] == ['--workflow-metadata']:\n    print({json.dumps(doc)!r})\n"
    )
    return write_exe(path, body, mode)


async def test_good_workflow(tmp_path: Path) -> None:
    doc = metadata("simple_echo")
    doc["fields"].append(
        {
            "name": "count",
            "field_type": {"type": "number", "min": 1, "max": 10},
            "cli_arg": "--count",
            "default": 2.0,  # numbers and booleans appear as defaults in the wild
        }
    )
    doc["fields"].append({"name": "loud", "field_type": {"type": "text"}, "default": True})
    exe = write_workflow(tmp_path / "simple_echo", doc)
    with trio.fail_after(DEADLINE):
        catalog = await discover([tmp_path], probe_timeout=PROBE_TIMEOUT)
    assert catalog.skipped == []
    assert catalog.conflicts == []
    workflow = catalog.workflows["simple_echo"]
    assert workflow.path == str(exe)
    assert workflow.name == "Simple_Echo"
    assert [f.name for f in workflow.fields] == ["message", "count", "loud"]
    assert workflow.fields[0].required
    assert workflow.fields[1].field_type.max == 10
    assert [f.default for f in workflow.fields] == [None, "2", "true"]


async def test_relative_dir_gives_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_workflow(tmp_path / "wf", metadata("wf"))
    monkeypatch.chdir(tmp_path.parent)
    with trio.fail_after(DEADLINE):
        catalog = await discover([Path(tmp_path.name)], probe_timeout=PROBE_TIMEOUT)
    assert catalog.workflows["wf"].path == str(tmp_path / "wf")


async def test_not_executable_reported_and_non_workflows_ignored(tmp_path: Path) -> None:
    write_workflow(tmp_path / "plain", metadata("plain"), mode=0o644)
    write_workflow(tmp_path / ".hidden", metadata("hidden"))
    write_workflow(tmp_path / "README.md", metadata("readme"))
    write_workflow(tmp_path / "notes.TXT", metadata("notes"))
    write_workflow(tmp_path / "saved.json", metadata("saved"))
    (tmp_path / "subdir").mkdir()
    with trio.fail_after(DEADLINE):
        catalog = await discover([tmp_path], probe_timeout=PROBE_TIMEOUT)
    assert catalog.workflows == {}
    assert [(s.path, s.reason) for s in catalog.skipped] == [
        (str(tmp_path / "plain"), "not executable")
    ]


async def test_missing_dir_ignored(tmp_path: Path) -> None:
    write_workflow(tmp_path / "wf", metadata("wf"))
    with trio.fail_after(DEADLINE):
        catalog = await discover([tmp_path / "nope", tmp_path], probe_timeout=PROBE_TIMEOUT)
    assert list(catalog.workflows) == ["wf"]
    assert catalog.skipped == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory")
async def test_unreadable_dir_reported(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o000)
    try:
        with trio.fail_after(DEADLINE):
            catalog = await discover([locked], probe_timeout=PROBE_TIMEOUT)
    finally:
        locked.chmod(0o700)
    assert [(s.path, s.reason) for s in catalog.skipped] == [
        (str(locked), "could not read directory: Permission denied")
    ]


async def test_symlinks_followed_and_broken_ones_reported(tmp_path: Path) -> None:
    target = write_workflow(tmp_path / "real", metadata("linked"))
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    (workflows / "link").symlink_to(target)
    (workflows / "broken").symlink_to(tmp_path / "missing")
    with trio.fail_after(DEADLINE):
        catalog = await discover([workflows], probe_timeout=PROBE_TIMEOUT)
    assert catalog.workflows["linked"].path == str(workflows / "link")
    assert [(s.path, s.reason) for s in catalog.skipped] == [
        (str(workflows / "broken"), "broken symbolic link")
    ]


async def test_timeout_kills_the_probe_and_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    write_exe(
        tmp_path / "sleepy",
        f"""import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open({str(pids)!r}, "w") as f:
    f.write(str(os.getpid()))
time.sleep(60)
""",
    )
    with trio.fail_after(DEADLINE):
        start = trio.current_time()
        catalog = await discover([tmp_path], probe_timeout=2.0)
        elapsed = trio.current_time() - start
    assert [s.reason for s in catalog.skipped] == ["timed out after 2.0 s"]
    assert elapsed < 10
    probe_pid = int(pids.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(probe_pid, 0)  # killed and reaped
    with trio.fail_after(KILL_DEADLINE):
        await wait_group_gone(probe_pid)  # the child too (it would sleep for a minute)


async def wait_group_gone(pgid: int) -> None:
    """Until nothing is left in the group, zombies included (init reaps them shortly)."""
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        await trio.sleep(0.01)


async def test_children_of_a_successful_probe_are_killed(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    doc = json.dumps(metadata("leaves_child"))
    write_exe(
        tmp_path / "leaves_child",
        f"""import os, subprocess, sys
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(60)"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
open({str(pids)!r}, "w").write(str(os.getpid()))
print({doc!r})
""",
    )
    with trio.fail_after(DEADLINE):
        catalog = await discover([tmp_path], probe_timeout=PROBE_TIMEOUT)
        assert list(catalog.workflows) == ["leaves_child"]
    probe_pid = int(pids.read_text())
    with trio.fail_after(KILL_DEADLINE):
        await wait_group_gone(probe_pid)  # the child too (it would sleep for a minute)


async def test_nonzero_exit_reports_first_stderr_line(tmp_path: Path) -> None:
    write_exe(
        tmp_path / "broken",
        "import sys\nprint('\\n  boom: no config  \\nsecond line', file=sys.stderr)\nsys.exit(3)\n",
    )
    write_exe(tmp_path / "quiet", "import sys\nsys.exit(4)\n")
    write_exe(tmp_path / "killed", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    with trio.fail_after(DEADLINE):
        catalog = await discover([tmp_path], probe_timeout=PROBE_TIMEOUT)
    assert [s.reason for s in catalog.skipped] == [
        "exited with status 3: boom: no config",
        "killed by signal 9 (SIGKILL)",
        "exited with status 4",
    ]


async def test_could_not_execute(tmp_path: Path) -> None:
    exe = tmp_path / "garbage"
    exe.write_bytes(b"\x00\x01\x02 not a program")
    exe.chmod(0o755)
    with trio.fail_after(DEADLINE):
        catalog = await discover([tmp_path], probe_timeout=PROBE_TIMEOUT)
    assert [s.reason for s in catalog.skipped] == ["could not execute: Exec format error"]


async def test_invalid_metadata(tmp_path: Path) -> None:
    write_exe(tmp_path / "a_not_json", "print('{not json')\n")
    write_exe(tmp_path / "b_wrong_shape", 'print(\'{"id": "x"}\')\n')
    write_workflow(tmp_path / "c_bad_id", metadata("../../bin/sh"))
    with trio.fail_after(DEADLINE):
        catalog = await discover([tmp_path], probe_timeout=PROBE_TIMEOUT)
    assert catalog.workflows == {}
    reasons = [s.reason for s in catalog.skipped]
    assert len(reasons) == 3
    assert all(r.startswith("invalid metadata: ") for r in reasons)
    assert "JSON" in reasons[0]
    assert reasons[1] == "invalid metadata: Object missing required field `name`"
    assert "id '../../bin/sh' is not valid" in reasons[2]


async def test_too_much_output_is_not_kept(tmp_path: Path) -> None:
    write_exe(
        tmp_path / "chatty",
        "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
    )
    with trio.fail_after(DEADLINE):
        catalog = await discover([tmp_path], probe_timeout=PROBE_TIMEOUT)
    assert [s.reason for s in catalog.skipped] == [
        f"printed more than {MAX_METADATA_BYTES} bytes of metadata"
    ]


async def test_duplicate_ids_first_directory_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    kept = write_workflow(first / "x", metadata("dup"))
    other = write_workflow(second / "x", metadata("dup"))
    with trio.fail_after(DEADLINE):
        catalog = await discover([first, second], probe_timeout=PROBE_TIMEOUT)
    assert catalog.workflows["dup"].path == str(kept)
    assert catalog.conflicts == [f"workflow id 'dup' in {other} also defined by {kept} (kept)"]
    assert catalog.skipped == []


async def test_duplicate_ids_in_one_dir_first_by_name_wins_however_slow(tmp_path: Path) -> None:
    doc = json.dumps(metadata("dup"))
    slow = write_exe(tmp_path / "a_slow", f"import time\ntime.sleep(0.5)\nprint({doc!r})\n")
    fast = write_workflow(tmp_path / "b_fast", metadata("dup"))
    with trio.fail_after(DEADLINE):
        catalog = await discover([tmp_path], probe_timeout=PROBE_TIMEOUT)
    assert catalog.workflows["dup"].path == str(slow)
    assert catalog.conflicts == [f"workflow id 'dup' in {fast} also defined by {slow} (kept)"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"id": ""}, "id '' is not valid"),
        ({"id": "ok\n"}, "id 'ok\\n' is not valid"),
        ({"id": "-rf"}, "id '-rf' is not valid"),
        ({"id": "a" * 201}, "id is 201 characters long (at most 200)"),
        (
            {"fields": [{"name": "f" * 201, "field_type": {"type": "text"}}]},
            "a field name is 201 characters long (at most 200)",
        ),
        (
            {"fields": [{"name": "a", "field_type": {"type": "text"}}] * 2},
            "field name 'a' is used more than once",
        ),
        ({"fields": [{"name": "", "field_type": {"type": "text"}}]}, "a field has an empty name"),
        (
            {"fields": [{"name": "a", "field_type": {"type": "colour"}}]},
            "field 'a' has unknown type 'colour'",
        ),
        (
            {"fields": [{"name": "a", "field_type": {"type": "select", "options": []}}]},
            "select field 'a' has no options",
        ),
        (
            {"fields": [{"name": "a", "field_type": {"type": "number", "min": 5, "max": 1}}]},
            "number field 'a' has min 5.0 > max 1.0",
        ),
        ({"fields": [{"name": "a"}]}, "Object missing required field `field_type`"),
        ({"fields": [{"name": "a", "field_type": {"type": "text"}, "default": [1]}]}, "default"),
    ],
)
def test_metadata_validation(change: dict[str, Any], problem: str) -> None:
    doc = metadata("wf")
    doc.update(change)
    with pytest.raises(MetadataError) as info:
        parse_metadata(json.dumps(doc).encode(), path="/x/wf")
    assert problem in str(info.value)


def test_metadata_path_always_set_by_us() -> None:
    doc = metadata("wf", path="/bin/sh")
    workflow = parse_metadata(json.dumps(doc).encode(), path="/x/wf")
    assert workflow.path == "/x/wf"


def test_default_dirs() -> None:
    dirs = default_workflow_dirs()
    assert dirs[1] == Path.home() / ".workflow-manager" / "workflows"
    assert dirs[0].name == "workflows"
    assert dirs[-1] == EXAMPLES_DIR


async def test_shipped_examples_are_discovered() -> None:
    with trio.fail_after(DEADLINE):
        catalog = await discover([EXAMPLES_DIR], probe_timeout=PROBE_TIMEOUT)
    assert catalog.skipped == []
    assert catalog.conflicts == []
    assert sorted(catalog.workflows) == ["always_fails", "echo_params", "multi_phase"]
    echo = catalog.workflows["echo_params"]
    assert [(f.name, f.field_type.type, f.required, f.default) for f in echo.fields] == [
        ("message", "text", True, None),
        ("count", "number", False, "1"),
    ]


async def test_multi_phase_emits_every_event_type_and_succeeds() -> None:
    with trio.fail_after(DEADLINE):
        result = await trio.run_process(
            [str(EXAMPLES_DIR / "multi_phase"), "--phases", "2", "--delay", "0"],
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 0
    stderr = result.stderr.decode().splitlines()
    events = [json.loads(line.split(":", 1)[1]) for line in stderr if line.startswith("__WF_")]
    assert {e["type"] for e in events} == EVENT_TYPES
    assert any(not line.startswith("__WF_EVENT__:") for line in stderr)  # raw stderr too
    assert result.stdout.decode().strip()


async def test_always_fails_exits_with_the_code() -> None:
    with trio.fail_after(DEADLINE):
        result = await trio.run_process(
            [str(EXAMPLES_DIR / "always_fails"), "--code", "7"],
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 7
    assert result.stdout and result.stderr


async def test_dir_that_is_a_file_reported(tmp_path: Path) -> None:
    not_a_dir = write_workflow(tmp_path / "wf", metadata("wf"))
    with trio.fail_after(DEADLINE):
        catalog = await discover([not_a_dir], probe_timeout=PROBE_TIMEOUT)
    assert [(s.path, s.reason) for s in catalog.skipped] == [
        (str(not_a_dir), "could not read directory: Not a directory")
    ]
