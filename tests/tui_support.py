"""Helpers for the dashboard's tests (this file holds no tests): run `WfmApp` under Textual's
pilot against a real daemon, and wait for what the screen shows.

pytest runs async tests under trio here (trio_mode), and Textual runs on asyncio: each test
is a plain function that runs its scenario with `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from textual.pilot import Pilot

from wfmctl.tui.app import WfmApp
from wfmctl.tui.capture import screen_text

SIZE = (80, 24)  # the smallest terminal the dashboard is made for
POLL = 0.2  # the app's look at the daemon: tests wait for it, users need it less often
WAIT = 20.0  # seconds before a wait fails: generous for a loaded 2-core machine
STEP = 0.05

Scenario = Callable[[WfmApp, Pilot[None]], Awaitable[None]]


def run_app(socket: Path, scenario: Scenario, size: tuple[int, int] = SIZE) -> None:
    async def main() -> None:
        app = WfmApp(str(socket))
        app.poll = POLL
        async with app.run_test(size=size, notifications=True) as pilot:  # toasts on screen
            await scenario(app, pilot)

    asyncio.run(main())


async def until(
    pilot: Pilot[None], check: Callable[[], object], what: str, within: float = WAIT
) -> None:
    """Wait until `check()` is true, letting the app run; fail with the screen after
    `within` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within}s; screen:\n{screen(pilot)}")
        await pilot.pause(STEP)


async def until_shown(pilot: Pilot[None], needle: str, within: float = WAIT) -> str:
    """Wait until the screen shows `needle`; the screen's text."""
    await until(pilot, lambda: needle in screen(pilot), f"{needle!r} on screen", within)
    return screen(pilot)


def screen(pilot: Pilot[None]) -> str:
    return screen_text(pilot.app)
