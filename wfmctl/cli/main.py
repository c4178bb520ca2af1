"""`wfmctl`: the command-line client of wfmd.

`main` parses the command line (`parser`), runs the command (`commands`), turns an error
into one line on stderr and an exit code (`exit_codes`), and copes with stdout: characters
the terminal cannot encode, and a reader that goes away early (`wfmctl logs X | head`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TextIO

from wfmctl import protocol
from wfmctl.cli.args import Args
from wfmctl.cli.exit_codes import (
    EXIT_BROKEN_PIPE,
    EXIT_CANCELLED,
    EXIT_ERROR,
    EXIT_USAGE,
    error_exit_code,
)
from wfmctl.cli.parser import build_parser, check_run, help_width, parse_simple, split_command
from wfmctl.client import WfmError


def main(argv: list[str] | None = None) -> int:
    """Run wfmctl; returns the exit code (the console script passes it to sys.exit)."""
    if argv is None:
        argv = sys.argv[1:]
    args = parse_simple(argv)
    if args is None:
        argv, command = split_command(argv)
        try:
            parser = build_parser()
            args = parser.parse_args(argv, namespace=Args(command_argv=command))
            check_run(parser, args)
        except SystemExit as exc:  # --help, --version, usage errors: argparse already printed
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    as_json = bool(getattr(args, "json", False))
    socket_path: str | None = getattr(args, "socket", None)
    raw = bool(getattr(args, "raw", False))
    escape_err = not raw and _isatty(sys.stderr)
    _replace_unencodable(sys.stdout)

    from wfmctl.cli import commands  # lazy: --help needs none of it; see test_help_stays_light
    from wfmctl.cli.view import View

    view = View(
        as_json,
        sys.stdout,
        sys.stderr,
        escape_out=not raw and _isatty(sys.stdout),
        escape_err=escape_err,
        width=help_width() + 2 if _isatty(sys.stdout) else None,
        color=_color(sys.stdout, args),
        color_err=_color(sys.stderr, args),
    )
    try:
        return commands.execute(args, socket_path, view)
    except WfmError as err:
        if as_json:
            _print_json_error(err, sys.stdout)
        # An ambiguous prefix's matches, one per line; any other message on one line.
        lines = err.message.splitlines() if err.code == protocol.ErrorCode.AMBIGUOUS else []
        _print_error("\n".join(lines) or one_line(err.message), escape_err)
        return error_exit_code(err)
    except KeyboardInterrupt:
        if view.watching is not None:
            # After the terminal's "^C": a line of its own, not the prompt's.
            prefix = "\n" if _isatty(sys.stderr) else ""
            with contextlib.suppress(OSError):
                view.note(prefix + commands.detached_hint(view.watching))
        return EXIT_CANCELLED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # a bug: still one line, never a traceback
        _print_error(f"unexpected {type(exc).__name__}: {exc}", escape_err)
        return EXIT_ERROR


def _color(stream: TextIO | None, args: Args) -> bool:
    """Colour on a terminal, unless NO_COLOR (not empty) or --no-color says otherwise."""
    no_color = bool(getattr(args, "no_color", False)) or bool(os.environ.get("NO_COLOR"))
    return not no_color and _isatty(stream)


def one_line(text: str) -> str:
    """A multi-line message on one line: `a:\nb\nc` -> `a: b; c`."""
    out = ""
    for part in (p.strip() for p in text.splitlines()):
        if part:
            out += part if not out else (" " if out.endswith(":") else "; ") + part
    return out


def _print_error(message: str, escape: bool) -> None:
    """`wfmctl: error: ...` on stderr. Messages may quote a workflow's text (a parameter's
    value, a pattern from its metadata): escaped, like all such text, on a terminal."""
    if escape:
        from wfmctl.cli import terminal

        message = terminal.escape(message)
    print(f"wfmctl: error: {message}", file=sys.stderr)


def _isatty(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):  # closed or detached
        return False


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
