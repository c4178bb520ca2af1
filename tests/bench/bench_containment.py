"""Containment benchmark: what a cgroup per execution costs, against the process scan.

    python tests/bench/bench_containment.py             # 200 runs per daemon, N up to 1,000
    python tests/bench/bench_containment.py --quick     # seconds: proves the benchmark works
    python tests/bench/bench_containment.py --baseline /path/to/older/checkout

- Start-to-end of a trivial run (`/bin/sh` exiting 0), accepted to ending committed, as the
  client sees it: one daemon with cgroup containment, one with WFM_CONTAINMENT=process-scan
  (and one running the code at --baseline, if given), runs interleaved one by one so that
  both see the same machine; medians and p90.
- Ending a box holding N sleeping processes that left the session: cgroup.kill and waiting
  for `populated 0`, against the tag scan repeated until it finds nothing, in this process.

Needs root or a delegated cgroup for the cgroup figures; prints what it could measure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from wfmctl import Client, DaemonUnreachable
from wfmd.runs import containment, process

TRIVIAL = """#!/bin/sh
if [ "$1" = --workflow-metadata ]; then
  echo '{"id": "trivial", "name": "trivial", "description": "", "fields": []}'
  exit 0
fi
exit 0
"""

WFMD = str(Path(sys.executable).parent / "wfmd")


def start_daemon(root: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    root.mkdir(parents=True)
    workflows = root / "workflows"
    workflows.mkdir()
    (workflows / "trivial").write_text(TRIVIAL)
    (workflows / "trivial").chmod(0o755)
    (root / "config.toml").touch()
    socket = root / "wfmd.sock"
    env = dict(os.environ, WFM_CONFIG=str(root / "config.toml"), **env_extra)
    argv = [WFMD, "--database", str(root / "wfm.db"), "--socket", str(socket)]
    argv += ["--workflow-dir", str(workflows)]
    with (root / "wfmd.log").open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while True:
        try:
            with Client(socket, timeout=5) as client:
                client.ping()
            return proc, socket
        except DaemonUnreachable:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError((root / "wfmd.log").read_text()) from None
            time.sleep(0.02)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def bench_runs(runs: int, baseline: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="wfm-bench-containment-") as tmp:
        setups = {
            "cgroup": {},
            "process-scan": {containment.CONTAINMENT_ENV: containment.PROCESS_SCAN},
        }
        if baseline:
            setups["baseline"] = {"PYTHONPATH": baseline}
        daemons = {name: start_daemon(Path(tmp) / name, env) for name, env in setups.items()}
        try:
            clients = {name: Client(socket, timeout=30) for name, (_, socket) in daemons.items()}
            for name, client in clients.items():
                print(f"{name}: ping says containment={client.ping().containment}")
            times: dict[str, list[float]] = {name: [] for name in clients}
            for i in range(runs + 5):
                for name, client in clients.items():
                    started = time.perf_counter()
                    ended = client.wait(client.run("trivial").handle)
                    took = time.perf_counter() - started
                    assert ended.status == "Completed", ended
                    if i >= 5:  # the first few warm the page cache and the interpreter
                        times[name].append(took * 1000)
            print(f"\nstart-to-end of a trivial run, {runs} interleaved runs per daemon:")
            for name, values in times.items():
                print(
                    f"  {name:13} median {statistics.median(values):6.2f} ms"
                    f"   p90 {percentile(values, 0.9):6.2f} ms"
                )
            for client in clients.values():
                client.close()
        finally:
            for proc, _ in daemons.values():
                proc.terminate()
                proc.wait(30)


async def spawn_sleepers(count: int, box: containment.Box, tag_env: str, tag: str) -> None:
    """A shell in `box` that starts `count` sleepers in new sessions, then exits."""
    script = f"for i in $(seq {count}); do setsid sleep 1000 & done"
    env = dict(os.environ, **{tag_env: tag})
    proc = await box.spawn(
        ["/bin/sh", "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    await proc.wait()


async def all_started(needle: bytes, count: int) -> None:
    """Until `count` processes carry `needle` (their shell waited for none of them)."""
    while True:
        found = await trio.to_thread.run_sync(process.tagged_processes, needle)
        if len(found) >= count:
            return
        await trio.sleep(0.01)


async def bench_kill(sizes: list[int], rounds: int) -> None:
    found = await containment.current()
    print(
        f"\nending a box of N sleepers that left the session ({rounds} rounds each), "
        f"this process: {found.mode} ({found.detail})"
    )
    scan = containment.Containment(containment.PROCESS_SCAN, "benchmark", None)
    for count in sizes:
        figures: dict[str, list[float]] = {"cgroup": [], "process-scan": []}
        for round_ in range(rounds):
            for name, where in (("cgroup", found), ("process-scan", scan)):
                if name == "cgroup" and found.cgroups is None:
                    continue
                tag = f"bench-{count}-{round_}-{name}"
                box = where.open_box(f"bench-{tag}", "WFM_BENCH_TAG", tag)
                await spawn_sleepers(count, box, "WFM_BENCH_TAG", tag)
                needle = process.tag_of("WFM_BENCH_TAG", tag)
                await all_started(needle, count)
                started = time.perf_counter()
                await box.kill()
                figures[name].append((time.perf_counter() - started) * 1000)
                await box.close()
                left = await trio.to_thread.run_sync(process.tagged_processes, needle)
                assert not left, (name, left)
        for name, values in figures.items():
            if values:
                print(f"  N={count:5} {name:13} median {statistics.median(values):8.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--baseline", help="PYTHONPATH of older wfm code to compare against")
    args = parser.parse_args()
    bench_runs(20 if args.quick else 200, args.baseline)
    sizes = [1, 10] if args.quick else [1, 10, 100, 1000]
    trio.run(bench_kill, sizes, 2 if args.quick else 5)


if __name__ == "__main__":
    main()
