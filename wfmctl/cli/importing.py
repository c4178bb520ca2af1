"""What `wfmctl import` shows and asks: the summary of an import, and the question."""

from __future__ import annotations

import sys

from wfmctl.protocol import ImportReport

# Where workflow-manager kept its history.
DEFAULT_SOURCE = "~/.workflow-manager/executions.db"

# How many of the executions that cannot be imported are listed by name.
SHOWN_UNMAPPED = 10


def confirm(question: str) -> bool:
    """Ask on stderr (stdout may be a pipe or --json), answer from stdin; no answer is no."""
    sys.stderr.write(question)
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def summary(report: ImportReport) -> str:
    """What an import did (or, on a dry run, would do), for people."""
    verb = "would import" if report.dry_run else "imported"
    lines = [
        f"{report.path}: {count_of(report.found, 'execution')}",
        f"  {verb} {count_of(report.imported, 'execution')}"
        f" with {count_of(report.log_entries, 'log entry', 'log entries')}",
    ]
    if report.already_present:
        lines.append(f"  already here (skipped): {report.already_present}")
    if report.unfinished:
        lines.append(
            f"  still running or not started there: {report.unfinished}, recorded as Failed"
        )
    if report.kept_as_raw:
        lines.append(f"  log entries that were not events, kept as text: {report.kept_as_raw}")
    if report.out_of_order:
        lines.append(
            f"  newer than this history's oldest execution: {report.out_of_order};"
            " `history` lists them below it"
        )
    if report.retention_removes:
        total = sum(report.retention_removes.values())
        worst = sorted(report.retention_removes.items(), key=lambda kv: -kv[1])
        verb = "would remove" if report.dry_run else "will remove"
        lines.append(
            f"  retention {verb} {count_of(total, 'of them', 'of them')} at its next run"
            " (they are older than its limits allow):"
        )
        lines.extend(f"    {workflow}: {n:,}" for workflow, n in worst[:SHOWN_UNMAPPED])
        lines.append(
            "  to keep them, give those workflows limits of their own in config.toml first"
            " (0 disables a limit), e.g.:"
        )
        lines.append(f"    [retention.workflows.{worst[0][0]}]")
        lines.append("    max_age_days = 0")
        lines.append("    max_executions = 0")
    if report.unmapped:
        lines.append(f"  cannot be imported: {len(report.unmapped)}")
        lines.extend(f"    {problem}" for problem in report.unmapped[:SHOWN_UNMAPPED])
        if len(report.unmapped) > SHOWN_UNMAPPED:
            lines.append(f"    ... and {len(report.unmapped) - SHOWN_UNMAPPED} more (see --json)")
    return "\n".join(lines)


def count_of(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else many or one + 's'}"
