"""Archive before delete: what is archived equals what `export` printed before the deletion;
nothing is deleted unless its archive was written; a torn append is cut back."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from conftest import Daemon, MakeDaemon, metadata, write_workflow

BODY = r"""
sys.stdout.buffer.write(b"plain\n\xff not utf-8\n")
sys.stdout.flush()
sys.stderr.write('__WF_EVENT__:{"type": "phase_started", "phase": 1, "name": "P1",'
                 ' "total_phases": 2}\n')
for i in range(int(sys.argv[2]) if len(sys.argv) > 2 else 300):
    print(f"line {i}")
"""


def archived(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Every archived execution's lines (its header first), by handle."""
    out: dict[str, list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] = []
    for path in sorted(directory.glob("wfm-archive-*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                doc = json.loads(line)
                if doc.get("type") == "execution":
                    current = out.setdefault(doc["execution"]["handle"], [])
                current.append(doc)
    return out


def exported(d: Daemon, handle: str) -> list[dict[str, Any]]:
    out = d.wfmctl("export", handle)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def archiving_daemon(make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path) -> Daemon:
    write_workflow(workflow_dir, "mixed", BODY, metadata("mixed"))
    return make_daemon(
        ["--retention-interval", "0", "--archive", "--archive-dir", str(tmp_path / "arch")]
    ).start()


def test_the_archive_holds_what_export_printed_before_the_deletion(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    d = archiving_daemon(make_daemon, workflow_dir, tmp_path)
    handles = [d.run_and_wait("mixed") for _ in range(3)]
    before = {h: exported(d, h) for h in handles}
    with d.client() as client:
        reply = client.prune(keep=1)
        assert reply.executions_removed == 2
        assert len(client.history().executions) == 1
        client.delete([handles[2]])
    assert archived(tmp_path / "arch") == before
    [file] = (tmp_path / "arch").iterdir()
    assert file.name.startswith("wfm-archive-20") and file.stat().st_mode & 0o777 == 0o600


def test_nothing_is_deleted_when_the_archive_cannot_be_written(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "arch").write_text("a file where the directory should be")
    d = archiving_daemon(make_daemon, workflow_dir, tmp_path)
    handle = d.run_and_wait("mixed")
    out = d.wfmctl("prune", "--keep", "0")
    assert out.returncode != 0
    assert "cannot write the archive" in out.stderr and "nothing was deleted" in out.stderr
    out = d.wfmctl("delete", handle)
    assert out.returncode != 0 and "nothing was deleted" in out.stderr
    with d.client() as client:
        assert client.status(handle).status == "Completed"
        assert len(list(client.iter_logs(handle))) == 303


def test_an_append_whose_deletion_never_committed_is_cut_back(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    d = archiving_daemon(make_daemon, workflow_dir, tmp_path)
    first, second = d.run_and_wait("mixed"), d.run_and_wait("mixed")
    expected = {first: exported(d, first), second: exported(d, second)}
    with d.client() as client:
        client.delete([first])
    [file] = (tmp_path / "arch").iterdir()
    # What a crash between the archive's sync and the deletion's commit, or in the middle
    # of a write, leaves: bytes the database does not know of.
    with file.open("ab") as out:
        out.write(gzip.compress(b'{"type": "execution", "execution": {"handle": "ghost"}}\n'))
        out.write(b"\x1f\x8b\x08 torn")
    with d.client() as client:
        client.delete([second])
    assert archived(tmp_path / "arch") == expected
