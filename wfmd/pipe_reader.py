"""The pipe reader: one OS thread that reads the stdout and stderr of every running child.

Why not one Trio task per pipe: with hundreds of quiet children every read is one line, and
each read then costs a task wake-up, an epoll re-registration and a channel hand-off in the
event loop (measured: 200 workflows printing 10 lines/s each took 23% of a core). This thread
keeps one level-triggered epoll over all pipes, reads whatever is ready, and hands everything
a round produced to Trio in one call. When no pipe was busy it waits a moment (COALESCE)
before polling again, so that quiet pipes are read a few lines at a time instead of one.

A chatty child gets a bigger pipe (GROWN_PIPE): it can keep writing while we sleep or while
the database is busy, and each read carries more. Back-pressure: the thread stops reading
while more than `budget` bytes are read but not yet committed; the pipes fill and the children
block in write(). Nothing is ever dropped.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from .ingest import Chunk, LineBuffer, now_ms

log = logging.getLogger(__name__)

# After a round in which no pipe was busy, wait this long before the next poll. Quiet pipes
# then deliver several lines per read and the event loop is woken a few hundred times a
# second at most; the cost is at most this much added to follow latency (bar: 60 ms p50).
COALESCE = 0.002

# A read that returns at least this share of the pipe's capacity marks the pipe busy: the
# next poll follows at once, and the pipe is grown.
BUSY_SHARE = 0.5

# The size a busy pipe is grown to (the Linux default ceiling, /proc/sys/fs/pipe-max-size):
# a child printing a line per write() fills it in ~5 ms, so COALESCE never stalls it.
GROWN_PIPE = 1024 * 1024

# Grown pipes at once. Pipe memory is charged to the user (fs/pipe-user-pages-soft, 64 MiB by
# default; past it every new pipe of theirs is cut to 8 KiB): 16 grown pipes stay well under.
MAX_GROWN = 16


@dataclass(eq=False)
class Pipe:
    """One child pipe. The reader thread owns the fd and closes it at EOF or abandon."""

    fd: int
    lines: LineBuffer
    # Set (in Trio) once every chunk of this pipe has been delivered and the fd is closed.
    finished: trio.Event = field(default_factory=trio.Event)
    # time.monotonic() of the last read with data (or of opening): written by the thread.
    last_data_at: float = field(default_factory=time.monotonic)
    capacity: int = 65536
    grown: bool = False
    closed: bool = False


# Commands to the thread, in order: open a pipe, abandon one, return budget, stop.
_Command = tuple[str, Pipe | int | None]

# What one round hands to Trio, in read order: chunks, and a Pipe once it has ended.
Delivery = list[Chunk | Pipe]


class PipeReader:
    def __init__(self, deliver: Callable[[Delivery], None], *, budget: int) -> None:
        """`deliver` runs in the Trio thread, in order, with each round's chunks and ends."""
        self._deliver = deliver
        self._budget = budget  # thread-only; `release` goes through the command queue
        self._commands: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._token = trio.lowlevel.current_trio_token()
        self._pipes: dict[int, Pipe] = {}
        self._grown = 0
        self._thread = threading.Thread(target=self._run, name="wfmd-pipes", daemon=True)
        # True while the thread is not reading because the writer is behind: a pipe that is
        # silent then is not a sign of an orphaned pipe.
        self.throttled = False

    def start(self) -> None:
        self._thread.start()

    def open(self, execution_id: int, stream: int, fd: int) -> Pipe:
        """Start reading `fd` (the read end of a child's pipe); the reader now owns it."""
        os.set_blocking(fd, False)
        pipe = Pipe(fd, LineBuffer(execution_id, stream))
        self._send(("open", pipe))
        return pipe

    def abandon(self, pipe: Pipe) -> None:
        """Stop reading a pipe (held open by a process we could not kill, or the run was
        stopped): its unterminated last line is kept, then `pipe.finished` is set."""
        self._send(("abandon", pipe))

    def release(self, nbytes: int) -> None:
        """`nbytes` of delivered chunk data are committed: the thread may read that much more."""
        self._send(("release", nbytes))

    def stop(self) -> None:
        """Close every pipe and end the thread (nothing more is delivered)."""
        self._send(("stop", None))
        self._thread.join()
        os.close(self._wake_fd)

    def _send(self, command: _Command) -> None:
        self._commands.put(command)
        os.eventfd_write(self._wake_fd, 1)

    # ----------------------------------------------------------------- the thread

    def _run(self) -> None:
        poll_all = select.epoll()
        poll_wake = select.epoll()  # while throttled: commands only
        for poller in (poll_all, poll_wake):
            poller.register(self._wake_fd, select.EPOLLIN)
        out: Delivery = []
        try:
            while self._apply_commands(poll_all, out):
                self.throttled = self._budget <= 0
                poller = poll_wake if self.throttled else poll_all
                busy = read_any = False
                for fd, _ in poller.poll():
                    if fd == self._wake_fd:
                        continue
                    pipe = self._pipes.get(fd)
                    if pipe is not None:
                        read_any = True
                        busy |= self._read(pipe, poll_all, out)
                if out:
                    self._hand_over(out)
                    out = []
                if read_any and not busy:
                    time.sleep(COALESCE)
        except trio.RunFinishedError:
            pass  # the daemon is gone; nobody is left to deliver to
        except BaseException:
            log.exception("the pipe reader failed")
            raise
        finally:
            for pipe in self._pipes.values():
                os.close(pipe.fd)
            self._pipes.clear()
            poll_all.close()
            poll_wake.close()

    def _apply_commands(self, poll_all: select.epoll, out: Delivery) -> bool:
        """Carry out queued commands; False once told to stop."""
        try:
            os.eventfd_read(self._wake_fd)
        except BlockingIOError:
            return True
        while True:
            try:
                what, arg = self._commands.get_nowait()
            except queue.Empty:
                return True
            if what == "open":
                assert isinstance(arg, Pipe)
                self._pipes[arg.fd] = arg
                poll_all.register(arg.fd, select.EPOLLIN)
            elif what == "abandon":
                assert isinstance(arg, Pipe)
                if not arg.closed:
                    self._end(arg, poll_all, out)
            elif what == "release":
                assert isinstance(arg, int)
                self._budget += arg
            else:
                if out:
                    self._hand_over(out)
                return False

    def _read(self, pipe: Pipe, poll_all: select.epoll, out: Delivery) -> bool:
        """Read what the pipe holds; True if it was busy (a large share of its capacity)."""
        try:
            data = os.read(pipe.fd, pipe.capacity)
        except BlockingIOError:
            return False
        except OSError as exc:  # not expected from a pipe; treat it as the end
            log.warning("reading a child's pipe failed: %s", exc)
            data = b""
        if not data:
            self._end(pipe, poll_all, out)
            return False
        pipe.last_data_at = time.monotonic()
        chunks = pipe.lines.take(data, now_ms())
        for chunk in chunks:
            self._budget -= len(chunk.data)
        out += chunks
        busy = len(data) >= pipe.capacity * BUSY_SHARE
        if busy and not pipe.grown and self._grown < MAX_GROWN:
            self._grow(pipe)
        return busy

    def _grow(self, pipe: Pipe) -> None:
        try:
            pipe.capacity = fcntl.fcntl(pipe.fd, fcntl.F_SETPIPE_SZ, GROWN_PIPE)
        except OSError:
            return  # over the user's pipe memory limit: the default size still works
        pipe.grown = True
        self._grown += 1

    def _end(self, pipe: Pipe, poll_all: select.epoll, out: Delivery) -> None:
        chunks = pipe.lines.flush(now_ms())
        for chunk in chunks:
            self._budget -= len(chunk.data)
        out += chunks
        poll_all.unregister(pipe.fd)
        os.close(pipe.fd)
        del self._pipes[pipe.fd]
        pipe.closed = True
        if pipe.grown:
            self._grown -= 1
        out.append(pipe)

    def _hand_over(self, out: Delivery) -> None:
        self._token.run_sync_soon(self._deliver, out)
