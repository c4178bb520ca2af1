"""Workflow parameters: check them against the workflow's metadata, then turn them into argv.

Parameters reach a workflow only as argv (`cli_arg value` pairs, in field order), never
through a shell, so a value is always exactly one argv element whatever it contains:
newlines, quotes, `;`, or a leading `-`. Validation happens before anything is spawned, and
reports every problem at once so that a caller can fix them in one go.

Requests carry JSON, so values may be strings, numbers, booleans or
null. Numbers and booleans are converted to text (the original tool silently dropped them);
null means "not given"; lists and objects are refused.

A number field's value, sent as text, must be written as JSON writes numbers (`NUMBER`):
it reaches the workflow verbatim, and that one grammar is read alike by every language's
number parser. Python's `float()` would also take " 5 ", "1_000", "+5", "007", "5." or
Arabic-Indic digits, which a workflow's own parser may refuse or read differently ("010" is
8 to C's strtol in base 0 and to shell arithmetic).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from wfmctl.protocol import ErrorCode, Field, Workflow
from wfmd.errors import Refused

# A JSON number (RFC 8259): no leading '+', no leading zeros, ASCII digits only (unlike `\d`).
NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


class ParamError(Refused):
    """The parameters do not fit the workflow. The message lists every problem."""

    def __init__(self, workflow_id: str, problems: list[str]) -> None:
        self.workflow_id = workflow_id
        self.problems = problems
        message = f"invalid parameters for workflow {workflow_id!r}: " + "; ".join(problems)
        super().__init__(ErrorCode.INVALID_PARAMS, message)


def scalar_text(value: str | bool | int | float) -> str:
    """The text form of a JSON scalar: booleans as `true`/`false`, whole floats without `.0`.

    `2.0` becomes `"2"` because a workflow doing `int(value)` would choke on `"2.0"`, and
    JSON does not distinguish 2 from 2.0 anyway. Other floats use Python's shortest
    round-tripping form (`0.1`, not `0.1000000000000000055`).
    """
    if isinstance(value, bool):  # before int: bool is a subclass of int
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def cli_flag(field: Field) -> str:
    """The argv flag for a field: its `cli_arg`, or `--<name>` with `_` turned into `-`.

    Workflows for the original tool parse their arguments with clap, whose derived long
    options are the field names in kebab case (`max_depth` -> `--max-depth`); an empty
    `cli_arg` in their metadata relies on that convention.
    """
    return field.cli_arg or "--" + field.name.replace("_", "-")


def validate_params(workflow: Workflow, params: Mapping[str, object]) -> dict[str, str]:
    """The parameters as text, checked against `workflow`'s fields; raises ParamError.

    The result holds the given fields plus required fields filled in from their `default`.
    A non-required field's default is left out: the workflow applies its own defaults, and
    passing them would make the recorded parameters claim the caller chose them.
    `required_for_phases` is not enforced: which phases run is the workflow's business.
    """
    fields = {f.name: f for f in workflow.fields}
    problems: list[str] = []
    for name in params:
        if name not in fields:
            known = ", ".join(fields) or "none"
            problems.append(f"unknown parameter {name!r} (known: {known})")

    result: dict[str, str] = {}
    for field in workflow.fields:
        value = params.get(field.name)
        source = "value"
        if value is None and field.required and field.default is not None:
            value, source = field.default, "default"
        if value is None:
            if field.required:
                problems.append(f"missing required field {field.name!r}")
            continue
        text, problem = _check_value(field, value)
        if problem is not None:
            problems.append(f"field {field.name!r}: {source} {problem}")
        else:
            result[field.name] = text

    if problems:
        raise ParamError(workflow.id, problems)
    return result


def build_argv(workflow: Workflow, params: Mapping[str, str]) -> list[str]:
    """`[path, flag, value, ...]` for the given fields, in the workflow's field order.

    `params` should come from `validate_params`; a name the workflow does not know is a
    ParamError rather than being silently dropped.
    """
    known = {f.name for f in workflow.fields}
    unknown = [name for name in params if name not in known]
    if unknown:
        raise ParamError(workflow.id, [f"unknown parameter {name!r}" for name in unknown])
    argv = [workflow.path]
    for field in workflow.fields:
        if field.name in params:
            argv += [cli_flag(field), params[field.name]]
    return argv


def positioned(workflow: Workflow, params: Mapping[str, str]) -> list[tuple[int, str, str]]:
    """`(position, name, value)` of the given fields, position being the field's index in
    the workflow's metadata: the order they are stored and shown in."""
    return [(i, f.name, params[f.name]) for i, f in enumerate(workflow.fields) if f.name in params]


def _check_value(field: Field, value: object) -> tuple[str, str | None]:
    """The value's text and, if it is not acceptable for `field`, what is wrong with it."""
    if not isinstance(value, str | bool | int | float):
        if isinstance(value, Mapping):
            kind = "an object"
        elif isinstance(value, list | tuple):
            kind = "a list"
        else:
            kind = type(value).__name__
        return "", f"must be a string, number or boolean, not {kind}"
    text = scalar_text(value)
    if "\0" in text:  # the kernel's argv is NUL-terminated strings: it cannot be passed
        return text, "contains a NUL character, which cannot be passed as an argument"
    field_type = field.field_type
    if field_type.type == "number":
        return text, _number_problem(text, field_type.min, field_type.max)
    if field_type.type == "select":
        options = field_type.options or []
        if text not in options:
            return text, f"{text!r} is not one of the options ({', '.join(options)})"
    # text, file_path, state_file and phase_selector values are passed as they are: the
    # `pattern` of a path field is a file-picker hint (a glob), not a constraint.
    return text, None


def _number_problem(text: str, low: float | None, high: float | None) -> str | None:
    try:
        number = float(text)
    except ValueError:
        return f"{text!r} is not a number"
    if not math.isfinite(number):  # "nan", "inf", or too large for a double ("1e999")
        return f"{text!r} is not a finite number"
    if NUMBER.fullmatch(text) is None:  # fullmatch: `$` would let a trailing newline through
        return (
            f"{text!r} is not a number as JSON writes it (digits 0-9 with an optional '-', "
            "fraction and exponent; no spaces, '+', '_' or leading zeros: e.g. 5, -2.5, 1e3)"
        )
    if low is not None and number < low:
        return f"{text} is below the minimum of {scalar_text(low)}"
    if high is not None and number > high:
        return f"{text} is above the maximum of {scalar_text(high)}"
    return None
