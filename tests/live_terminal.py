"""The real `wfmctl` on pseudo-terminals, watched while it runs (this file holds no tests).

stdout and stderr are each a pseudo-terminal in raw mode (the bytes read back are the bytes
written), of a given width; the test reads as output arrives, can signal wfmctl as a
terminal's Ctrl-C would (SIGINT), and collects everything once it exits.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
import tty
from pathlib import Path

from conftest import WFMCTL

TIMEOUT = 30.0
BLOCKED_READS = 3  # wait-channel reads in a row that must find wfmctl waiting on wfmd
BLOCKED_POLL = 0.05
UNKNOWN_WAIT = 3.0  # without wait channels: long enough for a loaded machine to get there


class LiveTerminal:
    def __init__(
        self,
        socket_path: Path | str,
        *args: str,
        columns: int = 100,
        env: dict[str, str] | None = None,
    ) -> None:
        environ = dict(os.environ, WFM_SOCKET=str(socket_path), PYTHONIOENCODING="utf-8")
        for name in ("COLUMNS", "NO_COLOR"):
            environ.pop(name, None)
        environ.update(env or {})
        self.out_master, out_slave = pty.openpty()
        self.err_master, err_slave = pty.openpty()
        for fd in (out_slave, err_slave):
            tty.setraw(fd)
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        try:
            self.proc = subprocess.Popen(
                [WFMCTL, *args],
                stdin=subprocess.DEVNULL,
                stdout=out_slave,
                stderr=err_slave,
                env=environ,
            )
        finally:
            os.close(out_slave)
            os.close(err_slave)
        self.data = {self.out_master: bytearray(), self.err_master: bytearray()}
        self.open = set(self.data)

    @property
    def stdout(self) -> str:
        return self.data[self.out_master].decode(errors="replace")

    @property
    def stderr(self) -> str:
        return self.data[self.err_master].decode(errors="replace")

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select(list(self.open), [], [], max(0.0, timeout))
        for fd in ready:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:  # EIO: the last slave end is closed
                chunk = b""
            if chunk:
                self.data[fd] += chunk
            else:
                self.open.discard(fd)

    def wait_for(self, text: str, *, stream: str = "stdout") -> None:
        """Read until `text` has appeared on `stream` ("stdout" or "stderr")."""
        deadline = time.monotonic() + TIMEOUT
        while text not in getattr(self, stream):
            if not self.open or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"no {text!r} on {stream}: {self.stdout!r} {self.stderr!r}")
            self._read(deadline - time.monotonic())

    def wait_blocked_on_wfmd(self) -> None:
        """Until wfmctl has sat waiting for a reply from wfmd for a while (its kernel wait
        channel, read three times 50 ms apart): a wait or follow in progress, not a start."""
        began = time.monotonic()
        deadline = began + TIMEOUT
        seen = 0
        named = False  # a wait channel was ever shown
        while seen < BLOCKED_READS:
            if time.monotonic() > deadline:
                raise AssertionError(f"wfmctl never waited on wfmd: {self.stderr!r}")
            try:
                wchan = Path(f"/proc/{self.proc.pid}/wchan").read_text()
            except OSError:
                wchan = ""
            named = named or wchan not in ("", "0")  # "0": running, or hidden by the kernel
            if not named and time.monotonic() - began > UNKNOWN_WAIT:
                return  # a kernel that hides wait channels: it had time to get there
            seen = seen + 1 if wchan.startswith("unix_stream_read") else 0
            self._read(BLOCKED_POLL)

    def interrupt(self) -> None:
        """What Ctrl-C on the terminal sends."""
        self.proc.send_signal(signal.SIGINT)

    def finish(self) -> int:
        """Read everything until wfmctl exits; its exit status."""
        deadline = time.monotonic() + TIMEOUT
        try:
            while self.open:
                if time.monotonic() > deadline:
                    self.proc.kill()
                    raise AssertionError(f"wfmctl still writing after {TIMEOUT}s")
                self._read(deadline - time.monotonic())
            return self.proc.wait(TIMEOUT)
        finally:
            os.close(self.out_master)
            os.close(self.err_master)
