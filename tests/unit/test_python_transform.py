"""``type: python``: a function or step class by import path, checked at validate time."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdcflow.core.components import BuildContext
from cdcflow.errors import ConfigError
from cdcflow.pipelines.config import PipelineConfig, parse_pipeline
from cdcflow.pipelines.plan import plan_pipeline
from cdcflow.schemas.model import ChangeEvent, EventBatch, Op, Position, TableId
from cdcflow.transforms import FunctionStep
from tests.unit.plugins.steps import Upper

PATH = Path("/pipelines/p.yaml")


def pipeline(transform: str) -> PipelineConfig:
    text = (
        "pipeline: p\n"
        "source: {type: file, path: in.jsonl}\n"
        "transforms:\n" + transform + "sinks:\n  - {name: n, type: 'null'}\n"
    )
    return parse_pipeline(text, PATH, env={})


def problems(transform: str) -> str:
    with pytest.raises(ConfigError) as info:
        pipeline(transform)
    return str(info.value)


def batch() -> EventBatch:
    event = ChangeEvent(
        op=Op.CREATE, table=TableId("shop", "public", "users"),
        position=Position("users", 0, 4), key={"id": 1}, after={"id": 1, "name": "ada"},
    )
    return EventBatch(stream="users", partition=0, last_offset=4, events=[event])


CONTEXT = BuildContext(pipeline="p", base_dir=Path("/pipelines"))


def test_a_function_with_options_builds_a_function_step() -> None:
    config = pipeline(
        "  - type: python\n"
        "    function: tests.unit.plugins.steps:add_region\n"
        "    options: {region: ap-south-1}\n"
    )
    step = config.transforms[0].build(CONTEXT)
    assert isinstance(step, FunctionStep) and step.name == "add_region"
    out = step.process(batch()).batch.events[0]
    assert out.after == {"id": 1, "name": "ada", "region": "ap-south-1"}


def test_a_step_class_is_built_with_options_and_named() -> None:
    config = pipeline(
        "  - type: python\n"
        "    name: shout\n"
        "    function: tests.unit.plugins.steps:Upper\n"
        "    options: {column: name}\n"
    )
    step = config.transforms[0].build(CONTEXT)
    assert isinstance(step, Upper) and step.name == "shout"
    assert step.process(batch()).batch.events[0].after == {"id": 1, "name": "ADA"}


def test_the_plan_builds_the_step(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("")
    text = (
        "pipeline: p\nsource: {type: file, path: in.jsonl}\n"
        "transforms:\n  - {type: python, function: 'tests.unit.plugins.steps:add_region'}\n"
        "sinks:\n  - {name: n, type: 'null'}\n"
    )
    plan = plan_pipeline(parse_pipeline(text, tmp_path / "p.yaml", env={}))
    assert [type(s).__name__ for s in plan.steps] == ["FunctionStep"]


@pytest.mark.parametrize(
    ("function", "options", "expected"),
    [
        (
            "no_such_pkg.enrich:add_region", "",
            "p.yaml:5: transforms[0].function: cannot import module 'no_such_pkg.enrich' "
            "(No module named 'no_such_pkg'); install the package that provides it or put its "
            "directory on PYTHONPATH",
        ),
        (
            "tests.unit.plugins.steps:add_regoin", "",
            "p.yaml:5: transforms[0].function: 'tests.unit.plugins.steps' has no attribute "
            "'add_regoin'; did you mean 'add_region'?",
        ),
        (
            "tests.unit.plugins.steps:NOT_CALLABLE", "",
            "p.yaml:5: transforms[0].function: tests.unit.plugins.steps:NOT_CALLABLE is a int, "
            "not a function or a step class",
        ),
        (
            "tests.unit.plugins.steps:NotAStep", "",
            "p.yaml:5: transforms[0].function: tests.unit.plugins.steps:NotAStep is a class but "
            "not a cdcflow step; subclass cdcflow.transforms.EventStep (or name a function)",
        ),
        (
            "tests.unit.plugins.steps.add_region", "",
            "p.yaml:5: transforms[0].function: String should match pattern",
        ),
        (
            "tests.unit.plugins.steps:no_arguments", "",
            "p.yaml:4: transforms[0].options: the function's signature () -> 'None' does not "
            "accept (event, **options) (no options given): too many positional arguments",
        ),
        (
            "tests.unit.plugins.steps:add_region", "    options: {zone: a}\n",
            "p.yaml:6: transforms[0].options: the function's signature (event: 'ChangeEvent', "
            "region: 'str' = 'eu-west-1') -> 'ChangeEvent' does not accept (event, **options) "
            "with options ['zone']",
        ),
        (
            "tests.unit.plugins.steps:Upper", "    options: {colum: x}\n",
            "p.yaml:6: transforms[0].options: Upper(column: 'str' = 'name') cannot be built from "
            "options ['colum']",
        ),
    ],
)
def test_bad_targets_are_located_errors(function: str, options: str, expected: str) -> None:
    text = problems(f"  - type: python\n    function: {function}\n{options}")
    assert f"{PATH}" in text
    assert expected.replace("p.yaml", str(PATH)) in text, text


def test_python_is_a_known_transform_type() -> None:
    from cdcflow.pipelines.registry import known_types

    assert "python" in known_types("transform")
