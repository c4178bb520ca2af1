"""Parameter validation and argv building."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import trio

from wfmctl.protocol import Field, FieldType, Workflow
from wfmd.workflows.discovery import EXAMPLES_DIR, probe
from wfmd.workflows.params import ParamError, build_argv, validate_params

DEADLINE = 30  # seconds

WORKFLOW = Workflow(
    id="wf",
    name="Test",
    path="/opt/wf",
    fields=[
        Field(
            name="message", field_type=FieldType(type="text"), cli_arg="--message", required=True
        ),
        Field(
            name="count",
            field_type=FieldType(type="number", min=1, max=10),
            cli_arg="--count",
            default="1",
        ),
        Field(
            name="mode",
            field_type=FieldType(type="select", options=["fast", "slow", "2"]),
            cli_arg="-m",
        ),
        Field(name="dry_run_flag", field_type=FieldType(type="text")),  # no cli_arg
        Field(
            name="level",
            field_type=FieldType(type="number", min=0),
            cli_arg="--level",
            required=True,
            default="5",
        ),
    ],
)


def problems(params: dict[str, object]) -> list[str]:
    with pytest.raises(ParamError) as info:
        validate_params(WORKFLOW, params)
    assert str(info.value).startswith("invalid parameters for workflow 'wf': ")
    return info.value.problems


def test_valid_params() -> None:
    assert validate_params(WORKFLOW, {"message": "hi", "count": "3", "mode": "slow"}) == {
        "message": "hi",
        "count": "3",
        "mode": "slow",
        "level": "5",  # required with a default: the default is used
    }


def test_optional_default_not_passed() -> None:
    assert "count" not in validate_params(WORKFLOW, {"message": "hi"})


def test_unknown_name() -> None:
    assert problems({"message": "hi", "colour": "red"}) == [
        "unknown parameter 'colour' (known: message, count, mode, dry_run_flag, level)"
    ]


def test_missing_required() -> None:
    assert problems({"count": 2}) == ["missing required field 'message'"]


def test_all_problems_listed() -> None:
    found = problems({"colour": "red", "count": 11, "mode": "medium"})
    assert found == [
        "unknown parameter 'colour' (known: message, count, mode, dry_run_flag, level)",
        "missing required field 'message'",
        "field 'count': value 11 is above the maximum of 10",
        "field 'mode': value 'medium' is not one of the options (fast, slow, 2)",
    ]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (0, "value 0 is below the minimum of 1"),
        ("0.5", "value 0.5 is below the minimum of 1"),
        (10.5, "value 10.5 is above the maximum of 10"),
        ("ten", "value 'ten' is not a number"),
        ("", "value '' is not a number"),
        ("nan", "value 'nan' is not a finite number"),
        (True, "value 'true' is not a number"),
        ([1, 2], "value must be a string, number or boolean, not a list"),
        ({"a": 1}, "value must be a string, number or boolean, not an object"),
    ],
)
def test_bad_numbers(value: object, problem: str) -> None:
    assert problems({"message": "hi", "count": value}) == [f"field 'count': {problem}"]


@pytest.mark.parametrize(("value", "text"), [(1, "1"), (10, "10"), ("1", "1"), (2.0, "2")])
def test_range_is_inclusive_and_numbers_become_text(value: object, text: str) -> None:
    assert validate_params(WORKFLOW, {"message": "hi", "count": value})["count"] == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "true"), (False, "false"), (2, "2"), (2.0, "2"), (2.5, "2.5"), (0.1, "0.1")],
)
def test_scalars_converted_to_text(value: object, text: str) -> None:
    assert validate_params(WORKFLOW, {"message": value})["message"] == text


def test_select() -> None:
    assert validate_params(WORKFLOW, {"message": "x", "mode": "fast"})["mode"] == "fast"
    assert validate_params(WORKFLOW, {"message": "x", "mode": 2})["mode"] == "2"
    assert problems({"message": "x", "mode": "FAST"}) == [
        "field 'mode': value 'FAST' is not one of the options (fast, slow, 2)"
    ]


def test_null_means_not_given() -> None:
    assert validate_params(WORKFLOW, {"message": "hi", "count": None, "mode": None}) == {
        "message": "hi",
        "level": "5",
    }
    assert problems({"message": None}) == ["missing required field 'message'"]
    assert validate_params(WORKFLOW, {"message": "hi", "level": None})["level"] == "5"


def test_invalid_default_of_required_field_reported_as_default() -> None:
    workflow = Workflow(
        id="wf",
        name="",
        fields=[Field(name="n", field_type=FieldType(type="number"), required=True, default="x")],
    )
    with pytest.raises(ParamError, match="field 'n': default 'x' is not a number"):
        validate_params(workflow, {})


def test_argv_in_field_order() -> None:
    params = validate_params(
        WORKFLOW, {"level": 0, "dry_run_flag": "yes", "mode": "slow", "count": 3, "message": "m"}
    )
    assert build_argv(WORKFLOW, params) == [
        "/opt/wf",
        "--message",
        "m",
        "--count",
        "3",
        "-m",
        "slow",
        "--dry-run-flag",  # no cli_arg: --<name> with dashes, as clap derives it
        "yes",
        "--level",
        "0",
    ]


@pytest.mark.parametrize(
    "value",
    ["a; rm -rf /", "$(whoami) `id` | cat > /tmp/x", "line one\nline two", "-x", "--count", ""],
)
def test_values_passed_verbatim(value: str) -> None:
    argv = build_argv(WORKFLOW, validate_params(WORKFLOW, {"message": value}))
    assert argv == ["/opt/wf", "--message", value, "--level", "5"]


def test_build_argv_refuses_unknown_names() -> None:
    with pytest.raises(ParamError, match="unknown parameter 'colour'"):
        build_argv(WORKFLOW, {"message": "m", "colour": "red"})


async def test_echo_params_receives_values_verbatim() -> None:
    """End to end: the shipped example sees exactly one argv element per value."""
    message = "-n $(id); echo 'x' \"y\"\nsecond line"
    with trio.fail_after(DEADLINE):
        workflow = await probe(EXAMPLES_DIR / "echo_params", probe_timeout=5.0)
        assert isinstance(workflow, Workflow), workflow
        argv = build_argv(workflow, validate_params(workflow, {"message": message, "count": 2.0}))
        result = await trio.run_process(
            argv,
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            check=True,
            env={**os.environ, "WFM_EXECUTION_ID": "exec-123"},
        )
    lines = result.stdout.decode().splitlines()
    assert lines[:4] == [*message.splitlines(), *message.splitlines()]
    assert json.loads(lines[4].removeprefix("argv: ")) == argv
    assert lines[5] == "WFM_EXECUTION_ID: exec-123"
