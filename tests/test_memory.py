"""wfmd gives back the memory that bursts of huge output take (wfmd/memory.py).

Found by the long event fuzz: runs printing lines of a few MiB, each read back, grew the
daemon past its 200 MiB bound after ~10,000 cases, while a single case stayed well under it.
glibc's rising mmap threshold moved the multi-MiB blocks into heap arenas that never shrink.
"""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
from conftest import MakeDaemon, metadata, proc_status, text_field, write_workflow

from wfmd.memory import pin_mmap_threshold

# Lines between 0.3 and 3.1 MiB, events and raw output on both streams, small lines between.
BURST = """
import random
r = random.Random(int(sys.argv[sys.argv.index("--seed") + 1]))
for i in range(8):
    size = r.choice([300_000, 700_000, 1_100_000, 2_300_000, 3_100_000])
    out = sys.stderr if r.random() < 0.5 else sys.stdout
    if r.random() < 0.5:
        message = "m" * size
        out.write('__WF_EVENT__:{"type": "task_progress", "task_id": "t", "message": "')
        out.write(message + '"}\\n')
    else:
        out.write("x" * size + "\\n")
    for j in range(r.randrange(50)):
        print("small line", j)
"""

RUNS = 30
# Measured over 30 runs: +10 to +16 MiB with the threshold pinned, +80 MiB without.
GROWTH_LIMIT = 48 * 1024 * 1024


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_the_threshold_is_pinned_on_glibc() -> None:
    assert pin_mmap_threshold()


def test_runs_with_multi_mib_lines_leave_the_daemon_its_size(
    make_daemon: MakeDaemon, workflow_dir: Path
) -> None:
    write_workflow(workflow_dir, "burst", BURST, metadata("burst", text_field("seed")))
    daemon = make_daemon().start()
    before = proc_status(daemon.pid, "VmRSS")
    with daemon.client() as client:
        for seed in range(RUNS):
            handle = client.run("burst", {"seed": str(seed)}).handle
            assert client.wait(handle).status == "Completed"
            entries = list(client.iter_logs(handle, limit=1_000))
            assert sum(len(e.line) for e in entries) > 1_000_000
            assert client.logs(handle, tail=1).entries == entries[-1:]
            assert list(client.follow(handle))[:-1] == entries
    growth = proc_status(daemon.pid, "VmRSS") - before
    assert growth < GROWTH_LIMIT, f"wfmd grew by {growth / 2**20:.1f} MiB over {RUNS} runs"
