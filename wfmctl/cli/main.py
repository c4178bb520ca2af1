"""`wfmctl`: the command-line client of wfmd.

This module owns the command line (argparse), the argument parsers that need testing on
their own (times, durations, parameters), the exit codes and the top-level error handling.
The commands themselves live in `wfmctl.commands`, the formatting in `wfmctl.render`.

argparse is imported only when the parser is built: the commonest command lines,
`COMMAND HANDLE`, are parsed without it (`parse_simple`), which saves such a run ~5 ms.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TextIO

from wfmctl import __version__, paths, protocol
from wfmctl.client import DISCONNECTED, UNREACHABLE, WfmError
from wfmctl.protocol import ErrorCode, Execution

if TYPE_CHECKING:
    import argparse

# The parsed command line: argparse's attributes, on a SimpleNamespace rather than argparse's
# own Namespace (which is no more than that) so that `parse_simple` needs no argparse.
Args = SimpleNamespace

# --------------------------------------------------------------------------- exit codes

EXIT_OK = 0
EXIT_ERROR = 1  # any other error reported by the daemon (or the connection)
EXIT_USAGE = 2  # bad command line (argparse's own code)
EXIT_DATAERR = 65  # EX_DATAERR: the workflow rejected the parameters
EXIT_NOINPUT = 66  # EX_NOINPUT: no such execution/workflow, or an ambiguous handle prefix
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: wfmd not reachable, gone mid-request, or stopping
EXIT_TIMEOUT = 124  # the workflow hit its timeout (the code timeout(1) uses)
EXIT_FAILED = 125  # the workflow failed with no exit code: spawn error, daemon died, ...
EXIT_SIGNAL_BASE = 128  # + N: the workflow was killed by signal N (the shell's convention)
EXIT_CANCELLED = 130  # the execution was cancelled, or wfmctl got Ctrl-C (128 + SIGINT)
EXIT_BROKEN_PIPE = 141  # stdout closed early (`wfmctl logs X | head`): 128 + SIGPIPE

# The daemon's `reason` for an execution stopped by its timeout starts with this.
TIMED_OUT_PREFIX = "timed out"

ERROR_EXIT_CODES: dict[str, int] = {
    ErrorCode.INVALID_PARAMS: EXIT_DATAERR,
    ErrorCode.NOT_FOUND: EXIT_NOINPUT,
    ErrorCode.AMBIGUOUS: EXIT_NOINPUT,
    ErrorCode.SHUTTING_DOWN: EXIT_UNAVAILABLE,
    UNREACHABLE: EXIT_UNAVAILABLE,
    DISCONNECTED: EXIT_UNAVAILABLE,
}


def exit_code_for(execution: Execution) -> int:
    """The exit code of `run --follow`, `run --wait` and `wait`: the workflow's own if it
    exited, else one that says how it ended. The one place that interprets `reason`."""
    match execution.status:
        case "Completed":
            return EXIT_OK
        case "Cancelled":
            return EXIT_CANCELLED
        case "Failed":
            # Checked before the signal: a timed-out workflow is also killed by a signal.
            if (execution.reason or "").startswith(TIMED_OUT_PREFIX):
                return EXIT_TIMEOUT
            if execution.signal is not None:
                return EXIT_SIGNAL_BASE + execution.signal
            if execution.exit_code is not None and 0 < execution.exit_code < 256:
                return execution.exit_code
            return EXIT_FAILED
        case _:  # not ended: the daemon answered Wait/Follow early, which it should not
            return EXIT_ERROR


def error_exit_code(error: WfmError) -> int:
    return ERROR_EXIT_CODES.get(error.code, EXIT_ERROR)


EPILOG = f"""\
handles:
  A unique prefix of a handle is accepted wherever a handle is.

times (--since, --until):
  ISO-8601 dates or date-times in local time (2026-11-26, 2026-11-26T14:03,
  "2026-11-26 14:03:07", or with an offset such as +01:00), "today", "yesterday",
  or an age: 30s, 30m, 2h, 3d, 1w (that long before now).

json (--json):
  One JSON document per command; streams (run --follow, logs -f) print JSON lines:
  log entries (objects with "seq"), then {{"type": "finished", "execution": ...}}.
  Errors also print {{"type": "error", "code": ..., "message": ...}} on stdout.

exit codes:
  {EXIT_OK:<6}success
  N     run --follow, run --wait and wait: the workflow's own exit status
  {EXIT_ERROR:<6}other error reported by wfmd
  {EXIT_USAGE:<6}bad command line
  {EXIT_DATAERR:<6}invalid workflow parameters
  {EXIT_NOINPUT:<6}no such execution or workflow, or ambiguous handle prefix
  {EXIT_UNAVAILABLE:<6}wfmd not reachable (start it with: wfmd), lost, or shutting down
  {EXIT_TIMEOUT:<6}the workflow timed out
  {EXIT_FAILED:<6}the workflow failed without an exit status (spawn error, daemon died)
  128+N the workflow was killed by signal N
  {EXIT_CANCELLED:<6}the execution was cancelled, or Ctrl-C (the execution keeps running)
  {EXIT_BROKEN_PIPE:<6}stdout was closed early (e.g. piped into head)

environment:
  {paths.SOCKET_ENV}  the socket's path, when --socket is not given
"""


# --------------------------------------------------------------------------- argument types

# A number and an optional unit. Kept as text and compiled on first use (`re` caches it):
# compiling it at import cost every `wfmctl` start ~0.5 ms, for two commands' options.
_AGE = r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$"
UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _match_age(text: str) -> re.Match[str] | None:
    return re.match(_AGE, text, re.IGNORECASE)


def parse_duration(text: str) -> float:
    """`90`, `90s`, `1.5m`, `2h`, `3d`, `1w` -> seconds. Raises ValueError."""
    match = _match_age(text)
    if not match:
        raise ValueError(f"invalid duration {text!r} (examples: 90, 90s, 30m, 2h, 3d)")
    return float(match.group(1)) * UNIT_SECONDS[match.group(2).lower()]


def parse_time(text: str, now: float | None = None) -> float:
    """A point in time as seconds since the epoch; see the `times` section of --help.

    Naive dates and date-times are local time. Raises ValueError.
    """
    now = time.time() if now is None else now
    word = text.strip().lower()
    if word in ("today", "yesterday"):
        midnight = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
        if word == "yesterday":
            midnight -= timedelta(days=1)
        return midnight.timestamp()
    if _match_age(text) and not text.strip().isdigit():
        return now - parse_duration(text)
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ValueError(
            f"invalid time {text!r} (examples: 2026-11-26, 2026-11-26T14:03, 2h, 3d)"
        ) from None


def parse_param(text: str) -> tuple[str, str]:
    """`NAME=VALUE` -> (name, value); the value may contain `=` and may be empty."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"invalid parameter {text!r}: expected NAME=VALUE")
    return name.strip(), value


def parse_params_json(text: str) -> dict[str, Any]:
    import json  # here, not at the top: only `run --params-json` needs it (~1.5 ms a start)

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid --params-json: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("invalid --params-json: expected a JSON object")
    return value


def merge_params(
    from_json: dict[str, Any] | None, pairs: Sequence[tuple[str, str]] | None
) -> dict[str, Any]:
    """--params-json first, then each -p in order: -p wins, and the last -p of a name wins."""
    merged = dict(from_json or {})
    merged.update(pairs or ())
    return merged


def parse_status(text: str) -> str:
    for status in protocol.ALL_STATUSES:
        if status.lower() == text.strip().lower():
            return status
    raise ValueError(f"invalid status {text!r} (one of: {', '.join(protocol.ALL_STATUSES)})")


def _arg_type(fn: Any, name: str) -> Any:
    """Wrap a parser so argparse reports its ValueError message as a usage error."""

    def convert(text: str) -> Any:
        import argparse  # already loaded: only argparse calls this

        try:
            return fn(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name
    return convert


def _count(minimum: int) -> Any:
    def convert(text: str) -> int:
        import argparse  # already loaded: only argparse calls this

        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return convert


# --------------------------------------------------------------------------- parser

# Help text columns when neither $COLUMNS nor a terminal on stdout says (shutil's fallback).
FALLBACK_COLUMNS = 80


def help_width() -> int:
    """The width argparse's formatter picks by itself, without `shutil.get_terminal_size()`.

    argparse builds a formatter for every argument added (to check its metavar), and left to
    pick its width, each imports shutil (with zlib, bz2, lzma: ~2 ms of a `wfmctl` start) and
    asks the terminal. Same rule as shutil: $COLUMNS if a positive integer, else the
    terminal on stdout, else 80; minus 2 as argparse does.
    """
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    stdout = sys.__stdout__
    if columns <= 0 and stdout is not None:
        try:
            columns = os.get_terminal_size(stdout.fileno()).columns
        except (ValueError, OSError):
            columns = 0
    return (columns if columns > 0 else FALLBACK_COLUMNS) - 2


def build_parser() -> argparse.ArgumentParser:
    import argparse  # here: `parse_simple` command lines never need it

    # argparse's formatters, given the width once so that they never import shutil.
    width = help_width()
    formatter = functools.partial(argparse.HelpFormatter, width=width)
    raw_formatter = functools.partial(argparse.RawDescriptionHelpFormatter, width=width)

    # Global options live on a parent parser shared by the top level and every subcommand,
    # so they work on either side of the command. SUPPRESS keeps a subcommand that did not
    # see the option from overwriting the value the top level parsed.
    common = argparse.ArgumentParser(add_help=False, formatter_class=formatter)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    common.add_argument(
        "--socket", metavar="PATH", default=argparse.SUPPRESS, help="wfmd's socket ($WFM_SOCKET)"
    )

    parser = argparse.ArgumentParser(
        prog="wfmctl",
        description="Run workflows under wfmd and query their history.",
        epilog=EPILOG,
        formatter_class=raw_formatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"wfmctl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=help, description=help, parents=[common], formatter_class=formatter
        )

    add("ping", "check that wfmd is running and show its state")

    p = add("workflows", "list the workflows wfmd knows, or show one in detail")
    p.add_argument("id", nargs="?", metavar="ID", help="show this workflow's fields")
    p.add_argument("--rescan", action="store_true", help="rescan the workflow directories first")

    p = add("run", "start a workflow and print its handle")
    p.add_argument("workflow", metavar="WORKFLOW")
    p.add_argument(
        "-p",
        "--param",
        dest="params",
        action="append",
        metavar="NAME=VALUE",
        type=_arg_type(parse_param, "parameter"),
        help="a parameter (repeatable; wins over --params-json)",
    )
    p.add_argument(
        "--params-json",
        metavar="JSON",
        type=_arg_type(parse_params_json, "JSON"),
        help="parameters as a JSON object, e.g. '{\"count\": 3}'",
    )
    p.add_argument(
        "--timeout",
        metavar="S",
        type=_arg_type(parse_duration, "duration"),
        help="stop it after this long (seconds, or 30m, 2h)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-f", "--follow", action="store_true", help="stream its logs until it ends")
    mode.add_argument("-w", "--wait", action="store_true", help="wait until it ends")

    p = add("status", "show an execution")
    p.add_argument("handle", metavar="HANDLE")

    p = add("logs", "print an execution's log")
    p.add_argument("handle", metavar="HANDLE")
    which = p.add_mutually_exclusive_group()
    which.add_argument("-n", "--tail", metavar="N", type=_count(1), help="only the last N entries")
    which.add_argument(
        "--after", metavar="SEQ", type=_count(-1), help="only the entries after sequence SEQ"
    )
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until it ends")

    p = add("wait", "wait until an execution ends; exit with its exit status")
    p.add_argument("handle", metavar="HANDLE")

    p = add("cancel", "stop an execution")
    p.add_argument("handle", metavar="HANDLE")

    p = add("history", "list executions, newest first")
    p.add_argument("--limit", metavar="N", type=_count(1), default=50, help="at most N (50)")
    p.add_argument("--offset", metavar="N", type=_count(0), default=0, help="skip the first N")
    p.add_argument("--before", metavar="HANDLE", help="continue a listing after this handle")
    p.add_argument("--workflow", metavar="ID", help="only this workflow")
    p.add_argument("--status", metavar="S", type=_arg_type(parse_status, "status"))
    p.add_argument(
        "--since", metavar="T", type=_arg_type(parse_time, "time"), help="created at/after"
    )
    p.add_argument(
        "--until", metavar="T", type=_arg_type(parse_time, "time"), help="created before"
    )

    p = add("params", "show the parameters an execution was given")
    p.add_argument("handle", metavar="HANDLE")

    return parser


# --------------------------------------------------------------------------- main


def one_line(text: str) -> str:
    """A multi-line message on one line: `a:\nb\nc` -> `a: b; c`."""
    out = ""
    for part in (p.strip() for p in text.splitlines()):
        if part:
            out += part if not out else (" " if out.endswith(":") else "; ") + part
    return out


# Commands that take a handle and nothing else.
HANDLE_COMMANDS = ("status", "wait", "cancel", "params")


def parse_simple(argv: Sequence[str]) -> Args | None:
    """`COMMAND HANDLE` for one of HANDLE_COMMANDS, parsed as argparse would, without it.

    Importing argparse and building the parser is ~5 ms, a tenth of such a run, and these are
    the command lines scripts run most. Anything else (an option, `--help`, another shape)
    returns None and goes through argparse, which also reports every usage error. The tests
    check that both give the same attributes.
    """
    if len(argv) == 2 and argv[0] in HANDLE_COMMANDS and not argv[1].startswith("-"):
        return Args(command=argv[0], handle=argv[1])
    return None


def main(argv: list[str] | None = None) -> int:
    """Run wfmctl; returns the exit code (the console script passes it to sys.exit)."""
    if argv is None:
        argv = sys.argv[1:]
    args = parse_simple(argv)
    if args is None:
        try:
            args = build_parser().parse_args(argv, namespace=Args())
        except SystemExit as exc:  # --help, --version, usage errors: argparse already printed
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    as_json = bool(getattr(args, "json", False))
    socket_path: str | None = getattr(args, "socket", None)
    _replace_unencodable(sys.stdout)

    # Imported here, not at the top: commands imports this module (exit codes), and
    # `--help` needs none of it.
    from wfmctl.cli import commands

    try:
        return commands.execute(args, socket_path, commands.View(as_json, sys.stdout, sys.stderr))
    except WfmError as err:
        if as_json:
            _print_json_error(err, sys.stdout)
        print(f"wfmctl: error: {one_line(err.message)}", file=sys.stderr)
        return error_exit_code(err)
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # a bug: still one line, never a traceback
        print(f"wfmctl: error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _print_json_error(err: WfmError, out: TextIO) -> None:
    import json  # only errors with --json get here

    with contextlib.suppress(OSError):
        doc = protocol.to_builtins(protocol.Error(code=err.code, message=err.message))
        out.write(json.dumps(doc) + "\n")
        out.flush()


def _replace_unencodable(stream: TextIO) -> None:
    """A workflow's output may not fit the terminal's encoding: replace, do not crash."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(Exception):
            reconfigure(errors="replace")


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush stays quiet."""
    with contextlib.suppress(Exception):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
