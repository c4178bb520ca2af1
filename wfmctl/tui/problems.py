"""The daemon's `invalid_params` message, split into the problems of each field.

The daemon checks parameters (wfmd/workflows/params.py) and reports every problem in one
message: `invalid parameters for workflow 'w': <problem>; <problem>`, each problem naming
its field as `field 'name': ...`, `missing required field 'name'` or
`unknown parameter 'name' (...)`. The form shows each problem under its field; anything it
cannot place is shown above the buttons, so nothing the daemon said is lost. Field names
are matched against the form's own (the names are quoted with Python's repr).
"""

from __future__ import annotations

from collections.abc import Iterable

GENERAL = ""  # the key of problems that belong to no field


def split_problems(message: str, field_names: Iterable[str]) -> dict[str, list[str]]:
    """{field name or GENERAL: [problem, ...]} from an invalid_params message."""
    _, sep, body = message.partition(": ")
    if not sep:
        return {GENERAL: [message]}
    names = sorted(field_names, key=len, reverse=True)  # the longest quoted name first
    starts = ("field ", "missing required field ", "unknown parameter ")
    problems: list[str] = []
    for part in body.split("; "):
        # A value quoted in a problem may itself hold "; ": glue such pieces back on.
        if problems and not part.startswith(starts):
            problems[-1] += "; " + part
        else:
            problems.append(part)
    found: dict[str, list[str]] = {}
    for problem in problems:
        owner = GENERAL
        for name in names:
            quoted = repr(name)
            if problem.startswith(
                (f"field {quoted}:", f"missing required field {quoted}")
            ) or problem.startswith(f"unknown parameter {quoted}"):
                owner = name
                break
        text = problem
        if owner != GENERAL and problem.startswith(f"field {owner!r}: "):
            text = problem[len(f"field {owner!r}: ") :]
        found.setdefault(owner, []).append(text)
    return found
