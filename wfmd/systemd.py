"""What systemd hands wfmd, without libsystemd: the notify socket (sd_notify: READY, STATUS,
WATCHDOG, STOPPING), the listening sockets of socket activation (sd_listen_fds), and whether
stderr is the journal (for `<N>` priority prefixes).

`take_environment` reads them once, at start, and takes them out of the environment, so
that no workflow or probe inherits them (they copy `os.environ`): a child that found
NOTIFY_SOCKET could tell systemd that wfmd is ready or stopping, and one that found
LISTEN_FDS would look for descriptors that are not its own. JOURNAL_STREAM stays: it names a
file (device and inode), and a child's stderr is a pipe to wfmd, so a child that checks it
finds that it does not match, as sd-daemon(3) asks.

The protocols are small and stable (sd_notify(3), sd_listen_fds(3)); a dependency would only
wrap what is here.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field

import trio

log = logging.getLogger(__name__)

# The first descriptor passed by socket activation (SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3

# STATUS= is sent at most this often, when the summary changed: `systemctl status` is read by
# people, and each message wakes the service manager.
STATUS_INTERVAL = 1.0


# --------------------------------------------------------------------------- sd_notify


class Notifier:
    """Sends sd_notify(3) messages to $NOTIFY_SOCKET; does nothing without one.

    Sending never blocks the event loop: the socket is non-blocking, and a message that does
    not fit the manager's queue is dropped (logged once, until one goes through again).
    """

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._target: str | bytes = ""
        self._failing = False
        if not address:
            return
        if address.startswith("@"):  # an abstract socket name
            self._target = b"\0" + address[1:].encode()
        elif address.startswith("/"):
            self._target = address
        else:  # vsock: and the like, which a user service does not get
            log.warning("NOTIFY_SOCKET=%s is not a Unix socket: not notifying systemd", address)
            return
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *assignments: str) -> None:
        """One datagram of newline-separated assignments, such as "READY=1", "STATUS=..."."""
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(assignments).encode(), self._target)
        except OSError as exc:
            if not self._failing:
                self._failing = True
                why = "its queue is full" if exc.errno == errno.EAGAIN else str(exc)
                log.warning("could not notify systemd at %s: %s", self.address, why)
            return
        if self._failing:
            self._failing = False
            log.info("notifying systemd at %s again", self.address)

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def feed_watchdog(notifier: Notifier, limit: float) -> None:
    """WATCHDOG=1 every half `limit` (WATCHDOG_USEC, in seconds), from the event loop: a loop
    that is stuck sends none, and systemd kills and restarts wfmd. Runs until cancelled.

    Paced by a deadline rather than by sleeping a period after each ping, so that a busy
    loop's lateness does not add up.
    """
    period = limit / 2
    deadline = trio.current_time()
    while True:
        notifier.send("WATCHDOG=1")
        deadline = max(deadline + period, trio.current_time())
        await trio.sleep_until(deadline)


async def keep_status_current(notifier: Notifier, summary: Callable[[], str], sent: str) -> None:
    """STATUS=`summary()` whenever it changes, at most once every STATUS_INTERVAL. `sent` is the
    summary already sent. Runs until cancelled.

    Polled: the counts change in the supervisor, below the daemon, and one look a second is
    cheaper than a hook in every place they change.
    """
    while True:
        await trio.sleep(STATUS_INTERVAL)
        text = summary()
        if text != sent:
            notifier.status(text)
            sent = text


# --------------------------------------------------------------------------- socket activation


@dataclass(frozen=True)
class PassedFd:
    """A descriptor passed by socket activation, and its name (LISTEN_FDNAMES)."""

    fd: int
    name: str


class ActivationError(Exception):
    """The socket activation variables name descriptors that are not there."""


def take_listen_fds(environ: MutableMapping[str, str]) -> list[PassedFd]:
    """sd_listen_fds_with_names(unset_environment=1): the descriptors passed to this process.

    None unless LISTEN_PID is this process (the variables may have been meant for a parent).
    Each is made close-on-exec, so that no child inherits it. Raises ActivationError if one
    is not open.
    """
    pid_text = environ.pop("LISTEN_PID", None)
    count_text = environ.pop("LISTEN_FDS", None)
    names_text = environ.pop("LISTEN_FDNAMES", None)
    if pid_text is None or count_text is None:
        return []
    try:
        pid, count = int(pid_text), int(count_text)
    except ValueError:
        log.warning("ignoring LISTEN_PID=%r LISTEN_FDS=%r: not numbers", pid_text, count_text)
        return []
    if pid != os.getpid() or count < 1:
        return []
    names = names_text.split(":") if names_text else []
    if len(names) != count:  # absent or malformed: sd_listen_fds_with_names says "unknown"
        names = ["unknown"] * count
    passed = []
    for index, name in enumerate(names):
        fd = LISTEN_FDS_START + index
        try:
            os.set_inheritable(fd, False)
        except OSError as exc:
            raise ActivationError(
                f"socket activation passed {count} descriptor(s), but descriptor {fd} is "
                f"not open: {exc}"
            ) from None
        passed.append(PassedFd(fd, name))
    return passed


# --------------------------------------------------------------------------- the environment


@dataclass
class Systemd:
    """What the service manager handed wfmd at start. Empty when run by hand."""

    notifier: Notifier = field(default_factory=lambda: Notifier(None))
    watchdog: float | None = None  # WATCHDOG_USEC in seconds: ping at half of it
    listen_fds: list[PassedFd] = field(default_factory=list)


def take_environment(environ: MutableMapping[str, str] | None = None) -> Systemd:
    """Read NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID and the LISTEN_* variables, and take
    them out of `environ` (os.environ). Raises ActivationError."""
    env = os.environ if environ is None else environ
    notifier = Notifier(env.pop("NOTIFY_SOCKET", None))
    watchdog = _take_watchdog(env)
    return Systemd(notifier, watchdog if notifier.enabled else None, take_listen_fds(env))


def _take_watchdog(environ: MutableMapping[str, str]) -> float | None:
    """sd_watchdog_enabled(unset_environment=1), in seconds."""
    usec_text = environ.pop("WATCHDOG_USEC", None)
    pid_text = environ.pop("WATCHDOG_PID", None)
    if usec_text is None:
        return None
    try:
        usec = int(usec_text)
        if pid_text is not None and int(pid_text) != os.getpid():
            return None  # meant for another process
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r WATCHDOG_PID=%r: not numbers", usec_text, pid_text)
        return None
    return usec / 1e6 if usec > 0 else None


# --------------------------------------------------------------------------- journald


def stderr_is_journal(environ: MutableMapping[str, str] | None = None, fd: int = 2) -> bool:
    """True if stderr is the journal's stream: JOURNAL_STREAM names its device and inode.

    Only set is not enough (sd-daemon(3)): a parent may have redirected stderr since.
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        info = os.fstat(fd)
        return (info.st_dev, info.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


# syslog(3) priorities by logging level: journald reads them from a `<N>` line prefix.
_PRIORITIES = (
    (logging.CRITICAL, 2),  # LOG_CRIT
    (logging.ERROR, 3),  # LOG_ERR
    (logging.WARNING, 4),  # LOG_WARNING
    (logging.INFO, 6),  # LOG_INFO
)
_DEBUG = 7  # LOG_DEBUG


def priority(levelno: int) -> int:
    for level, value in _PRIORITIES:
        if levelno >= level:
            return value
    return _DEBUG


class JournalFormatter(logging.Formatter):
    """`<N>logger: message`, no time (the journal stamps each line). Every line of a record
    gets the prefix: journald takes each line of the stream as an entry of its own, and a
    traceback's lines must keep the error's priority."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())
