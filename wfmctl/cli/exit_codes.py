"""wfmctl's exit codes, and how an ended execution or an error maps to one.

The `exit codes` section of `wfmctl --help` lists them for users (see `parser.EPILOG`).
"""

from __future__ import annotations

from wfmctl.client import DISCONNECTED, UNREACHABLE, WfmError
from wfmctl.protocol import ErrorCode, Execution

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

# Exit codes of the endings that are not the workflow's own doing, by `Execution.ended_by`.
# The others ("exit", "signal", and words added later) give the workflow's own exit status or
# signal, when it has one.
ENDED_BY_EXIT_CODES: dict[str, int] = {
    "timeout": EXIT_TIMEOUT,
    "cancelled": EXIT_CANCELLED,
    "daemon_died": EXIT_FAILED,
    "spawn_error": EXIT_FAILED,
    "storage": EXIT_FAILED,  # wfmd killed it: its signal is wfmd's, not the workflow's
    "internal": EXIT_FAILED,
}

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
    exited, else one that says how it ended (`ended_by`)."""
    match execution.status:
        case "Completed":
            return EXIT_OK
        case "Cancelled":
            return EXIT_CANCELLED
        case "Failed":
            ended_by = execution.ended_by or ended_by_from_reason(execution)
            if ended_by in ENDED_BY_EXIT_CODES:
                return ENDED_BY_EXIT_CODES[ended_by]
            if execution.signal is not None:
                return EXIT_SIGNAL_BASE + execution.signal
            if execution.exit_code is not None and 0 < execution.exit_code < 256:
                return execution.exit_code
            return EXIT_FAILED
        case _:  # not ended: the daemon answered Wait/Follow early, which it should not
            return EXIT_ERROR


# Daemons older than `ended_by` say how an execution ended only in its human `reason`.
def ended_by_from_reason(execution: Execution) -> str | None:
    """The word "timeout" if the reason says so; else None: the exit code or signal tells."""
    return "timeout" if (execution.reason or "").startswith("timed out") else None


def error_exit_code(error: WfmError) -> int:
    """The exit code for an error from wfmd or the connection; EXIT_ERROR if not listed."""
    return ERROR_EXIT_CODES.get(error.code, EXIT_ERROR)


# What each exit code means, for the `exit codes` section of every subcommand's --help.
EXIT_CODE_MEANINGS: dict[str, str] = {
    str(EXIT_OK): "success",
    "N": "the workflow's own exit status (run: with --wait or --follow)",
    str(EXIT_ERROR): "other error reported by wfmd",
    str(EXIT_USAGE): "bad command line",
    str(EXIT_DATAERR): "invalid workflow parameters",
    str(EXIT_NOINPUT): "no such execution or workflow, or ambiguous handle prefix",
    str(EXIT_UNAVAILABLE): "wfmd not reachable (start it with: wfmd), lost, or shutting down",
    str(EXIT_TIMEOUT): "the workflow timed out",
    str(EXIT_FAILED): "the workflow failed without an exit status",
    "128+N": "the workflow was killed by signal N",
    str(EXIT_CANCELLED): "the execution was cancelled",
    "130 ": "Ctrl-C: wfmctl stops watching, the execution keeps running",
    str(EXIT_BROKEN_PIPE): "stdout was closed early (e.g. piped into head)",
}
_DAEMON = ("0", "1", "2", "69")  # every command that talks to wfmd
_ENDED = ("N", "124", "125", "128+N", "130", "130 ")  # commands that wait for an ending
COMMAND_EXIT_CODES: dict[str, tuple[str, ...]] = {
    "ping": _DAEMON,
    "workflows": (*_DAEMON, "66"),
    "run": (*_DAEMON, "65", "66", *_ENDED, "141"),
    "rerun": (*_DAEMON, "65", "66", *_ENDED, "141"),
    "status": (*_DAEMON, "66"),
    "logs": (*_DAEMON, "66", "130 ", "141"),
    "wait": (*_DAEMON, "66", *_ENDED),
    "cancel": (*_DAEMON, "66"),
    "history": (*_DAEMON, "66", "141"),
    "params": (*_DAEMON, "66"),
    "mcp": ("0", "2"),
    "shutdown": _DAEMON,
    "service": ("0", "1", "2"),
    "completion": ("0", "2"),
    "search": (*_DAEMON, "66", "141"),
    "stats": (*_DAEMON, "141"),
    "import": (*_DAEMON, "66"),
    "prune": (*_DAEMON, "66", "141"),
    "delete": (*_DAEMON, "66"),
    "info": _DAEMON,
    "export": (*_DAEMON, "66", "141"),
    "tui": ("0", "2"),
}


def exit_codes_epilog(command: str) -> str:
    """The `exit codes` section of a subcommand's --help, in the order of `wfmctl --help`."""
    codes = COMMAND_EXIT_CODES[command]
    rows = [
        f"  {code.strip():<6}{text}" for code, text in EXIT_CODE_MEANINGS.items() if code in codes
    ]
    return "exit codes:\n" + "\n".join(rows)
