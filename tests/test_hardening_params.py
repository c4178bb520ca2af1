"""Number fields take JSON's number grammar only.

Before, a number field accepted whatever Python's `float()` tolerates and passed it to the
workflow verbatim: " 5 ", "1_000", Arabic-Indic digits, "5\\n", "+5". Numbers sent as JSON
numbers, and text written as JSON writes numbers, keep working.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import MakeDaemon, metadata, write_workflow

from wfmctl import WfmError
from wfmctl.protocol import Field, FieldType, Workflow
from wfmd.workflows.params import ParamError, validate_params

WORKFLOW = Workflow(
    id="wf",
    name="wf",
    fields=[Field(name="n", field_type=FieldType(type="number", min=-1000, max=1e6))],
)

JSON_HINT = "is not a number as JSON writes it"

TOLERATED_BY_FLOAT = [
    " 5 ",
    "5 ",
    "\t5",
    "5\n",
    "1_000",
    "\u0665",  # ARABIC-INDIC DIGIT FIVE
    "\u0661\u0662",
    "\uff15",  # FULLWIDTH DIGIT FIVE
    "+5",
    "007",
    "-01",
    "00",
    "5.",
    ".5",
    "-.5",
    "1.e3",
]

ACCEPTED = ["0", "-0", "5", "-5", "10", "0.5", "-2.25", "1e3", "1E3", "2.5e-2", "1e+2", "999999"]


def problem(value: object) -> str:
    with pytest.raises(ParamError) as info:
        validate_params(WORKFLOW, {"n": value})
    [found] = info.value.problems
    return found


@pytest.mark.parametrize("text", TOLERATED_BY_FLOAT)
def test_what_float_tolerates_but_json_does_not_is_refused(text: str) -> None:
    float(text)  # the premise: Python would have taken it
    found = problem(text)
    assert found.startswith(f"field 'n': value {text!r} {JSON_HINT}"), found
    assert "e.g. 5, -2.5, 1e3" in found


@pytest.mark.parametrize("text", ["five", "", "0x10", "1,000", "--5", "5-", "1e"])
def test_non_numbers_still_refused_plainly(text: str) -> None:
    assert problem(text) == f"field 'n': value {text!r} is not a number"


@pytest.mark.parametrize("text", ["nan", "inf", "-Infinity", "1e999"])
def test_non_finite_refused(text: str) -> None:
    assert problem(text) == f"field 'n': value {text!r} is not a finite number"


@pytest.mark.parametrize("text", ACCEPTED)
def test_json_numbers_as_text_pass_verbatim(text: str) -> None:
    assert validate_params(WORKFLOW, {"n": text}) == {"n": text}


@pytest.mark.parametrize(
    ("value", "text"), [(5, "5"), (-5, "-5"), (5.0, "5"), (2.5, "2.5"), (1e-5, "1e-05")]
)
def test_json_numbers_keep_working(value: float, text: str) -> None:
    assert validate_params(WORKFLOW, {"n": value}) == {"n": text}


def test_range_still_checked_after_the_grammar() -> None:
    assert problem("-1001") == "field 'n': value -1001 is below the minimum of -1000"
    assert problem("1e7") == "field 'n': value 1e7 is above the maximum of 1000000"


def test_a_required_fields_bad_default_is_reported_as_the_default() -> None:
    workflow = Workflow(
        id="wf",
        name="wf",
        fields=[Field(name="n", field_type=FieldType(type="number"), required=True, default="+5")],
    )
    with pytest.raises(ParamError, match=f"field 'n': default '\\+5' {JSON_HINT}"):
        validate_params(workflow, {})


NUMBER_FIELD = {
    "name": "n",
    "field_type": {"type": "number"},
    "label": "n",
    "description": "",
    "cli_arg": "--n",
    "required": False,
    "default": None,
    "required_for_phases": None,
}

PRINT_ARGV = "print(json.dumps(sys.argv[1:]))\n"


def test_through_the_daemon(make_daemon: MakeDaemon, workflow_dir: Path) -> None:
    """Refused with invalid_params before anything runs; good values reach argv verbatim."""
    write_workflow(workflow_dir, "numbers", PRINT_ARGV, metadata("numbers", NUMBER_FIELD))
    daemon = make_daemon().start()
    with daemon.client() as client:
        for text in [" 5 ", "1_000", "\u0665", "5\n", "+5"]:
            with pytest.raises(WfmError) as info:
                client.run("numbers", {"n": text})
            assert info.value.code == "invalid_params", info.value
            assert JSON_HINT in info.value.message, info.value.message
        assert client.history(limit=10).executions == []
    for value, text in [(5, "5"), (2.5, "2.5"), ("-0.5", "-0.5"), ("1e3", "1e3")]:
        ended, entries = daemon.run_to_end("numbers", {"n": value})
        assert ended.status == "Completed", ended
        assert json.loads(entries[0].line) == ["--n", text]
