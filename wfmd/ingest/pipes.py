"""The pipe reader: one OS thread that reads the stdout and stderr of every running child.

Why not one Trio task per pipe: with hundreds of quiet children every read is one line, and
each read then costs a task wake-up, an epoll re-registration and a channel hand-off in the
event loop (see tests/bench/RESULTS.md for what that cost). This thread
keeps one level-triggered epoll over all pipes and reads whatever is ready into a list that
the writer takes when it commits. Trio is woken only when that list stops being empty, when a
pipe ends, or when a batch's worth has piled up: waking the event loop from a thread is
costly, so it happens once per commit, not once per read. When no pipe was
busy the thread waits a moment (COALESCE) before polling again, so that quiet pipes are read
a few lines at a time instead of one, and less than that when a pipe fills faster.

A chatty child gets a bigger pipe (GROWN_PIPE): it can keep writing while we sleep or while
the database is busy, and each read carries more. Back-pressure: the thread stops reading
once `budget` bytes are read but not yet committed (overshooting by one read at most); the
pipes fill and the children block in write(). Nothing is ever dropped.

stdout and stderr are separate pipes, so their relative order is known only as precisely as
they are read: lines a child prints on both within one COALESCE pause are stored stdout
first or stderr first, by the order of the reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import queue
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from wfmd.ingest.lines import Chunk, LineBuffer
from wfmd.store import now_ms

log = logging.getLogger(__name__)

# After a round of reads, wait up to this long before the next poll, so that quiet pipes
# deliver several lines per read; it adds at most this much to follow latency and to noticing
# a child's EOF. Tuned with bench_scale's many-workflows CPU figure (tests/bench/RESULTS.md).
COALESCE = 0.020

# ... but no longer than a pipe read in this round takes to fill this share of its capacity
# at the rate it was filling: a fast child must never block on a full pipe while we sleep.
FILL_SHARE = 0.25

# Shorter pauses are not worth a sleep.
MIN_PAUSE = 0.0002

# A read that returns at least this share of the pipe's capacity means the child may already
# be waiting for us: poll again at once, and grow the pipe.
BUSY_SHARE = 0.5

# The size a busy pipe is grown to (the Linux default ceiling, /proc/sys/fs/pipe-max-size): a
# child printing a line per write() fills it in ~5 ms, so each read carries thousands of lines.
GROWN_PIPE = 1024 * 1024

# After the thread last stopped reading for want of budget, `holding_back` stays true this
# long: a saturated writer commits about every 40 ms, and the thread reads in between.
HELD_BACK_MEMORY = 0.1

# Grown pipes at once. Pipe memory is charged to the user (fs/pipe-user-pages-soft, 64 MiB by
# default; past it every new pipe of theirs is cut to 8 KiB): 16 grown pipes stay well under.
MAX_GROWN = 16


@dataclass(eq=False)
class Pipe:
    """One child pipe. The reader thread owns the fd and closes it at EOF or abandon."""

    fd: int
    lines: LineBuffer
    capacity: int  # bytes the pipe holds
    # Set (in Trio) once every chunk of this pipe has been delivered and the fd is closed.
    finished: trio.Event = field(default_factory=trio.Event)
    # time.monotonic() of the last read with data (or of opening): written by the thread.
    last_data_at: float = field(default_factory=time.monotonic)
    grown: bool = False


# Commands to the thread, in order: open a pipe, abandon one, return budget, stop.
_Command = tuple[str, Pipe | int | None]

# What the writer takes, in read order: chunks, and a Pipe once it has ended.
Delivery = list[Chunk | Pipe]


class PipeReader:
    def __init__(self, wake: Callable[[], None], *, budget: int, urgent_bytes: int) -> None:
        """`wake` runs in the Trio thread when there is something to `take`: the first chunk
        since the last take, a pipe's end, or `urgent_bytes` of chunk data."""
        self._wake = wake
        self._urgent_bytes = urgent_bytes
        self._budget = budget  # thread-only; `release` goes through the command queue
        self._lock = threading.Lock()
        self._ready: Delivery = []  # under _lock, like the two counters below
        self._ready_bytes = 0
        self._ready_ends = 0
        self._commands: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._stopped = False
        self._token = trio.lowlevel.current_trio_token()
        self._pipes: dict[int, Pipe] = {}
        self._grown = 0
        self._thread = threading.Thread(target=self._run, name="wfmd-pipes", daemon=True)
        # True while the thread is not reading because the writer is behind: a pipe that is
        # silent then is not a sign of an orphaned pipe.
        self.throttled = False
        self._held_back_at = -math.inf  # time.monotonic() when last throttled
        # Set if the thread died of a bug, once everything it had read has been handed over
        # and every pipe ended (see _fail): the writer commits that, then reports it.
        self.failure: BaseException | None = None
        self._dead = False  # under _lock: the thread no longer takes commands

    def start(self) -> None:
        self._thread.start()

    def open(self, execution_id: int, stream: int, fd: int) -> Pipe:
        """Start reading `fd` (the read end of a child's pipe); the reader now owns it.

        After a failure of the thread nothing reads it: it is closed at once and the pipe
        ends empty (the child gets EPIPE), so nobody waits for it."""
        os.set_blocking(fd, False)
        capacity = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
        pipe = Pipe(fd, LineBuffer(execution_id, stream), capacity)
        self._send(("open", pipe))
        return pipe

    def progress_states(self, execution_id: int) -> list[tuple[int, bytes]]:
        """(stream, latest state) of each of the execution's pipes holding a progress bar's
        unterminated line (see `LineBuffer.progress_state`), for followers who show it."""
        states = []
        for pipe in list(self._pipes.values()):  # a copy in one call: the thread edits it
            if pipe.lines.execution_id == execution_id:
                state = pipe.lines.progress_state()
                if state is not None:
                    states.append((pipe.lines.stream, state))
        return states

    def abandon(self, pipe: Pipe) -> None:
        """Stop reading a pipe (held open by a process we could not kill, or the run was
        stopped): what it holds and its unterminated last line are kept, then
        `pipe.finished` is set."""
        if self._stopped:  # a forced shutdown: nobody reads any more
            pipe.finished.set()
        else:
            self._send(("abandon", pipe))

    def take(self) -> Delivery:
        """Everything read since the last take, in order."""
        with self._lock:
            ready, self._ready = self._ready, []
            self._ready_bytes = self._ready_ends = 0
        return ready

    def waiting(self) -> tuple[int, int]:
        """(bytes of chunk data, pipe ends) ready to take."""
        with self._lock:
            return self._ready_bytes, self._ready_ends

    def holding_back(self) -> bool:
        """Whether some child's output waits for the writer (the thread stopped reading for want
        of budget), now or within HELD_BACK_MEMORY. Callable from any thread."""
        return self.throttled or time.monotonic() - self._held_back_at < HELD_BACK_MEMORY

    def release(self, nbytes: int) -> None:
        """`nbytes` of delivered chunk data are committed: the thread may read that much more."""
        self._send(("release", nbytes))

    def poke(self) -> None:
        """Poll at once instead of finishing a pause: a child has exited, so its pipes' EOF
        (or last lines) are waiting to be read, and its ending waits for them."""
        if not self._stopped:
            os.eventfd_write(self._wake_fd, 1)

    def stop(self) -> None:
        """Close every pipe and end the thread (nothing more is delivered)."""
        if self._stopped:
            return
        self._send(("stop", None))
        self._stopped = True
        if self._thread.is_alive():
            self._thread.join()
        os.close(self._wake_fd)
        for pipe in self._pipes.values():  # the thread closed them; nobody waits in vain
            if self._dead:  # ... unless it failed (see _fail)
                os.close(pipe.fd)
            pipe.finished.set()

    def _send(self, command: _Command) -> None:
        if self._stopped:
            return
        with self._lock:
            if not self._dead:
                self._commands.put(command)
                os.eventfd_write(self._wake_fd, 1)
                return
        # The thread has failed: nobody reads any more. Called in the Trio thread.
        what, arg = command
        if isinstance(arg, Pipe):
            if what == "open":
                os.close(arg.fd)
            arg.finished.set()

    # ----------------------------------------------------------------- the thread

    def _run(self) -> None:
        poll_all = select.epoll()
        poll_wake = select.epoll()  # while throttled: commands only
        for poller in (poll_all, poll_wake):
            poller.register(self._wake_fd, select.EPOLLIN)
        out: Delivery = []
        try:
            while self._apply_commands(poll_all, out):
                if out:  # pipes ended by `abandon`
                    self._hand_over(out)
                    out = []
                self.throttled = self._budget <= 0
                if self.throttled:
                    self._held_back_at = time.monotonic()
                poller = poll_wake if self.throttled else poll_all
                pause = math.inf
                for fd, _ in poller.poll():
                    pipe = self._pipes.get(fd)
                    if pipe is not None and self._budget > 0:
                        pause = min(pause, COALESCE, self._read(pipe, poll_all, out))
                if out:
                    self._hand_over(out)
                    out = []
                if MIN_PAUSE <= pause < math.inf:
                    poll_wake.poll(pause)  # a command or `poke` ends the pause early
        except trio.RunFinishedError:
            pass  # the daemon is gone; nobody is left to deliver to
        except BaseException as exc:
            log.exception("the pipe reader failed")
            with contextlib.suppress(trio.RunFinishedError):
                self._fail(exc, out)
        finally:
            if not self._dead:  # after a failure `stop` closes them (see _fail)
                for pipe in self._pipes.values():
                    os.close(pipe.fd)
            poll_all.close()
            poll_wake.close()

    def _fail(self, exc: BaseException, out: Delivery) -> None:
        """After a bug in this thread: hand over everything read (the unterminated last lines
        too) and end every pipe, then set `failure` and wake the writer. What was read is then
        committed, and nobody waits for a pipe that will never be read again. Commands sent
        from now on are carried out by `_send`.

        The pipes' fds stay open until `stop`: a child that goes on printing blocks on its full
        pipe, rather than dying of SIGPIPE, until the daemon ends it and records why."""
        with self._lock:
            self._dead = True
        while True:  # commands sent before: pipes opened meanwhile end too
            try:
                what, arg = self._commands.get_nowait()
            except queue.Empty:
                break
            if what == "open" and isinstance(arg, Pipe):
                self._pipes[arg.fd] = arg
        for pipe in self._pipes.values():
            try:
                out += pipe.lines.flush(now_ms())
            except Exception:  # the bug may be there: the pipe must still end
                log.exception("could not keep the last line of a pipe")
            out.append(pipe)  # its fd stays open until `stop`
        try:
            self._hand_over(out)
        finally:
            # Only now: a writer that sees `failure` and then takes, takes everything.
            self.failure = exc
            self._token.run_sync_soon(self._wake)

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
                if self._pipes.get(arg.fd) is arg:  # else it has ended already
                    self._drain(arg, out)
                    self._end(arg, poll_all, out)
            elif what == "release":
                assert isinstance(arg, int)
                self._budget += arg
            else:
                return False

    def _read(self, pipe: Pipe, poll_all: select.epoll, out: Delivery) -> float:
        """Read what the pipe holds; returns how long it may be left before the next read."""
        try:
            data = os.read(pipe.fd, pipe.capacity)
        except BlockingIOError:
            return math.inf
        except OSError as exc:  # not expected from a pipe; treat it as the end
            log.warning("reading a child's pipe failed: %s", exc)
            data = b""
        if not data:
            self._end(pipe, poll_all, out)
            return math.inf
        now = time.monotonic()
        filling_for, pipe.last_data_at = now - pipe.last_data_at, now
        self._add(out, pipe.lines.take(data, now_ms()))
        if len(data) >= pipe.capacity * BUSY_SHARE:
            if not pipe.grown and self._grown < MAX_GROWN:
                self._grow(pipe)
            return 0.0
        return pipe.capacity * FILL_SHARE * filling_for / len(data)

    def _grow(self, pipe: Pipe) -> None:
        try:
            pipe.capacity = fcntl.fcntl(pipe.fd, fcntl.F_SETPIPE_SZ, GROWN_PIPE)
        except OSError:
            return  # over the user's pipe memory limit: the default size still works
        pipe.grown = True
        self._grown += 1

    def _drain(self, pipe: Pipe, out: Delivery) -> None:
        """Keep what an abandoned pipe still holds (a killed child's last output), ignoring
        the budget: bounded by the pipe's size, as a writer still holding it can refill it."""
        try:
            data = os.read(pipe.fd, pipe.capacity)
        except OSError:  # BlockingIOError: empty
            return
        self._add(out, pipe.lines.take(data, now_ms()))

    def _end(self, pipe: Pipe, poll_all: select.epoll, out: Delivery) -> None:
        self._add(out, pipe.lines.flush(now_ms()))
        poll_all.unregister(pipe.fd)
        os.close(pipe.fd)
        del self._pipes[pipe.fd]
        if pipe.grown:
            self._grown -= 1
        out.append(pipe)

    def _add(self, out: Delivery, chunks: list[Chunk]) -> None:
        for chunk in chunks:
            self._budget -= len(chunk.data)
        out += chunks

    def _hand_over(self, out: Delivery) -> None:
        nbytes = ends = 0
        for item in out:
            if isinstance(item, Chunk):
                nbytes += len(item.data)
            else:
                ends += 1
        with self._lock:
            was_empty = not self._ready
            before = self._ready_bytes
            self._ready += out
            self._ready_bytes += nbytes
            self._ready_ends += ends
        if was_empty or ends or before < self._urgent_bytes <= before + nbytes:
            self._token.run_sync_soon(self._wake)
