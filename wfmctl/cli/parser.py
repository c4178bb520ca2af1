"""The `wfmctl` command line: the argparse parser, and `parse_simple` for the command lines
that do not need it.

argparse is imported only when the parser is built: the commonest command lines,
`COMMAND HANDLE`, are parsed without it (see test_status_skips_argparse).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wfmctl import __version__, paths, protocol
from wfmctl.cli.args import (
    Args,
    parse_duration,
    parse_param,
    parse_params_json,
    parse_status,
    parse_time,
)
from wfmctl.cli.exit_codes import (
    EXIT_BROKEN_PIPE,
    EXIT_CANCELLED,
    EXIT_DATAERR,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_NOINPUT,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    exit_codes_epilog,
)

if TYPE_CHECKING:
    import argparse

EPILOG = f"""\
handles:
  A unique prefix of a handle is accepted wherever a handle is, and so are @last
  (the newest execution) and @last:WORKFLOW (the newest of that workflow). Tables
  show the first 8 characters (more where two rows would share them); --full and
  --json show whole handles.

times (--since, --until):
  ISO-8601 dates or date-times in local time (2026-11-26, 2026-11-26T14:03,
  "2026-11-26 14:03:07", or with an offset such as +01:00), "today", "yesterday",
  or an age: 30s, 30m, 2h, 3d, 1w (that long before now).

json (--json):
  One JSON document per command; streams (run --follow, logs -f) print JSON lines:
  log entries (objects with "seq"), then {{"type": "finished", "execution": ...}}.
  Errors also print {{"type": "error", "code": ..., "message": ...}} on stdout.

terminals (--raw):
  On a terminal, control characters in text from workflows (log lines, names,
  descriptions, parameter values, reasons) are shown escaped: \\x1b, \\r, \\u202e.
  --raw prints them as they are. Pipes and files always get the text as stored.

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


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """`run [options] -- CMD [ARG]...`: the command line before `--`, and the command after
    it (None if this is no such command line). Split before argparse, for which `--` only
    ends the options: `run -- ls` and `run ls` would look the same."""
    argv = list(argv)
    if "run" in argv and "--" in argv and argv.index("run") < argv.index("--"):
        at = argv.index("--")
        return argv[:at], argv[at + 1 :]
    return argv, None


def check_run(parser: argparse.ArgumentParser, args: Args) -> None:
    """A workflow, or a command: not both, not neither, each with its own options; and
    `completion` needs a shell. Exits with a usage error (2) as argparse does."""
    if args.command == "completion" and args.shell is None and args.list is None:
        parser.error("completion: give a shell: bash, zsh or fish")
    if args.command != "run":
        return
    command = args.command_argv
    if command is not None and args.workflow is not None:
        parser.error("run: give a WORKFLOW or `-- CMD [ARG]...`, not both")
    if command is None and args.workflow is None:
        parser.error("run: give a WORKFLOW, or a command after `--`")
    if command == []:
        parser.error("run: nothing after `--`: give a command")
    if command is not None and (args.params or args.params_json):
        parser.error("run: -p and --params-json are for workflows; a command takes arguments")
    if command is None and (args.cwd is not None or args.env):
        parser.error("run: --cwd and --env are for commands (`run -- CMD`)")


# Commands that take a handle and nothing else.
HANDLE_COMMANDS = ("status", "wait", "cancel", "params")


def parse_simple(argv: Sequence[str]) -> Args | None:
    """`COMMAND HANDLE` for one of HANDLE_COMMANDS, parsed as argparse would, without it.

    These are the command lines scripts run most, and argparse is a large share of such a
    run. Anything else (an option, `--help`, another shape) returns None and goes through
    argparse, which also reports every usage error. The tests check that both give the same
    attributes.
    """
    if len(argv) == 2 and argv[0] in HANDLE_COMMANDS and not argv[1].startswith("-"):
        return Args(command=argv[0], handle=argv[1])
    return None


# --------------------------------------------------------------------------- argument types


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
    pick its width, each imports shutil (with zlib, bz2 and lzma) and asks the terminal; see
    test_help_stays_light. Same rule as shutil: $COLUMNS if a positive integer, else the
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


def add_run_options(p: argparse.ArgumentParser, *, rerun: bool = False) -> None:
    """Parameters, timeout, and how to watch: what `run` and `rerun` share."""
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
        help="stop it after this long (seconds, or 30m, 2h)"
        + ("; the original's if not given" if rerun else ""),
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-f", "--follow", action="store_true", help="stream its logs until it ends")
    mode.add_argument("-w", "--wait", action="store_true", help="wait until it ends")


def build_parser() -> argparse.ArgumentParser:
    import argparse  # lazy: `parse_simple` command lines never need it

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
    common.add_argument(
        "--raw",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print workflows' text as is, even on a terminal",
    )

    common.add_argument(
        "--no-color",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no colour on a terminal (also: NO_COLOR set to anything)",
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

    def add_window(p: argparse.ArgumentParser) -> None:
        """--since and --until: executions by the time they were created."""
        p.add_argument(
            "--since", metavar="T", type=_arg_type(parse_time, "time"), help="created at/after"
        )
        p.add_argument(
            "--until", metavar="T", type=_arg_type(parse_time, "time"), help="created before"
        )

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=exit_codes_epilog(name),
            parents=[common],
            formatter_class=raw_formatter,
        )

    add("ping", "check that wfmd is running and show its state")

    p = add("workflows", "list the workflows wfmd knows, or show one in detail")
    p.add_argument("id", nargs="?", metavar="ID", help="show this workflow's fields")
    p.add_argument("--rescan", action="store_true", help="rescan the workflow directories first")

    p = add(
        "run",
        "start a workflow, or with `-- CMD [ARG]...` any command, and print its handle",
    )
    p.usage = "wfmctl run [options] WORKFLOW | wfmctl run [options] -- CMD [ARG]..."
    p.add_argument("workflow", metavar="WORKFLOW", nargs="?")
    add_run_options(p)
    p.add_argument(
        "--cwd",
        metavar="DIR",
        help="a command's working directory (default: the current one); recorded",
    )
    p.add_argument(
        "--env",
        dest="env",
        action="append",
        metavar="NAME=VALUE",
        type=_arg_type(parse_param, "variable"),
        help="a variable for the command, on top of wfmd's environment (repeatable); recorded",
    )

    p = add(
        "rerun",
        "run an execution's workflow again with the same parameters (-p overrides one) and "
        "print the new handle; its status names the execution it reran",
    )
    p.add_argument("handle", metavar="HANDLE")
    add_run_options(p, rerun=True)

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
    p.add_argument(
        "--status",
        metavar="S",
        type=_arg_type(parse_status, "status"),
        help=f"only this status: {', '.join(protocol.ALL_STATUSES)} (any case)",
    )
    p.add_argument("--full", action="store_true", help="whole handles, and workflows' names")
    add_window(p)

    p = add("params", "show the parameters an execution was given")
    p.add_argument("handle", metavar="HANDLE")

    p = add(
        "search",
        'find log lines: words (all in one line), "a phrase", prefix*; case and accents ignored',
    )
    p.add_argument("query", metavar="QUERY", nargs="?", help='e.g. timeout, "disk full", conn*')
    p.add_argument(
        "--regex",
        metavar="PATTERN",
        help="instead of QUERY, a Python regular expression, matched in wfmctl over the"
        " newest 200 selected executions (or --handle's), at most 256 MiB of logs",
    )
    p.add_argument("--workflow", metavar="ID", help="only this workflow's executions")
    p.add_argument(
        "--status",
        metavar="S",
        type=_arg_type(parse_status, "status"),
        help=f"only executions with this status: {', '.join(protocol.ALL_STATUSES)}",
    )
    add_window(p)
    p.add_argument("--handle", metavar="HANDLE", help="only this execution")
    p.add_argument(
        "-C", "--context", metavar="N", type=_count(0), default=0, help="N lines around each"
    )
    p.add_argument("--limit", metavar="N", type=_count(1), default=20, help="at most N (20)")
    p.add_argument("--before", metavar="CURSOR", type=int, help="continue a previous search")

    p = add("stats", "per workflow: runs, outcomes, success rate, durations, last failure")
    p.add_argument("--workflow", metavar="ID", help="only this workflow")
    p.add_argument(
        "--since",
        metavar="T",
        type=_arg_type(parse_time, "time"),
        help="only executions created at/after T, e.g. 30d (default: the whole history)",
    )

    p = add(
        "import",
        "copy the original workflow-manager's history into wfmd's (asks first; safe to repeat)",
    )
    p.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="its database (default: ~/.workflow-manager/executions.db); opened read-only",
    )
    p.add_argument("--dry-run", action="store_true", help="only say what would be imported")
    p.add_argument("-y", "--yes", action="store_true", help="import without asking")

    add("mcp", "serve wfmd's tools to Claude and other MCP clients on stdio (the mcp extra)")

    add("tui", "a live dashboard of workflows, runs and history in the terminal (the tui extra)")

    p = add(
        "shutdown",
        "stop wfmd as SIGTERM would: running executions are stopped and recorded as "
        "Cancelled; NotStarted runs start after the next start",
    )
    p.add_argument(
        "--no-wait", action="store_true", help="return at once instead of when wfmd has exited"
    )

    p = add(
        "completion",
        "print a completion script for your shell: source <(wfmctl completion bash), "
        "source <(wfmctl completion zsh), wfmctl completion fish | source",
    )
    p.add_argument("shell", metavar="SHELL", nargs="?", choices=("bash", "zsh", "fish"))
    # What the scripts ask for live (workflow ids, recent handles); not for people.
    p.add_argument("--list", choices=("workflows", "handles"), help=argparse.SUPPRESS)

    p = add("service", "install wfmd as a systemd user service, or show or remove it")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser(
        "install",
        help="write the units, reload systemd and enable them",
        description="Write wfmd.service and wfmd.socket into your systemd user directory, "
        "for the wfmd installed beside this wfmctl, run `systemctl --user daemon-reload` "
        "and enable both.",
        parents=[common],
        formatter_class=formatter,
    )
    p.add_argument("--now", action="store_true", help="also start them")
    actions.add_parser(
        "uninstall",
        help="stop and disable the units, and remove them",
        description="Stop and disable wfmd.service and wfmd.socket, and remove the files "
        "`service install` wrote.",
        parents=[common],
        formatter_class=formatter,
    )
    actions.add_parser(
        "status",
        help="whether the units are installed, enabled and running",
        description="Whether wfmd.service and wfmd.socket are installed, enabled and "
        "running, with wfmd's own status line.",
        parents=[common],
        formatter_class=formatter,
    )

    # --- retention: prune, delete, info
    p = add(
        "prune",
        "remove finished executions: by the daemon's retention policy, or by --older-than "
        "and --keep",
    )
    p.add_argument("--dry-run", action="store_true", help="only show what would be removed")
    p.add_argument(
        "--older-than",
        metavar="AGE",
        type=_arg_type(parse_duration, "duration"),
        help="those that ended longer ago than this (90m, 12h, 30d, 2w)",
    )
    p.add_argument(
        "--keep", metavar="N", type=_count(0), help="those older than the newest N executions"
    )
    p.add_argument("--workflow", metavar="ID", help="only this workflow's executions")

    p = add("delete", "remove finished executions (a running or queued one is refused)")
    p.add_argument("handles", nargs="+", metavar="HANDLE")

    add("info", "show the database's size, executions by status, and retention's last run")

    p = add(
        "export",
        "write one execution whole (metadata, parameters, every log entry) to a file or stdout",
    )
    p.add_argument("handle", metavar="HANDLE")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.add_argument(
        "--format",
        choices=("jsonl", "json", "text"),
        default="jsonl",
        help="JSON lines (the default), one JSON document, or text",
    )

    return parser
