"""Planning: building a pipeline's components and working out where each partition resumes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest

from cdcflow.core.components import BuildContext, ComponentConfig, ComponentError
from cdcflow.core.source import PartitionKey
from cdcflow.errors import ConfigError
from cdcflow.io.files import DeadLetterFileWriter, FileSource
from cdcflow.io.null import NullWriter
from cdcflow.io.sqlite import SqliteWriter
from cdcflow.pipelines import registry
from cdcflow.pipelines.config import load_pipeline
from cdcflow.pipelines.plan import (
    ResumePoints,
    caught_up,
    plan_pipeline,
    resume_offsets,
    resume_points,
)
from cdcflow.schemas.model import (
    ChangeEvent,
    EventBatch,
    Op,
    Position,
    RawBatch,
    RawRecord,
    TableId,
)
from cdcflow.testing import MemoryWriter
from cdcflow.transforms.decode import DecodeStep

PIPELINE = """\
pipeline: shop
source:
  type: file
  path: data/*.jsonl
  key_separator: "\\t"
sinks:
  - {name: mirror, type: sqlite, path: out/shop.sqlite}
  - {name: devnull, type: "null"}
"""


class FailingTransformConfig(ComponentConfig):
    """A transform whose build fails, keyed or not."""

    type: Literal["failing"]
    keyed: bool = False

    def build(self, context: BuildContext) -> Any:
        if self.keyed:
            raise ComponentError("rules", "expected at least one rule")
        raise ConfigError("cannot reach the policy server")


class UntypedSourceConfig(ComponentConfig):
    """A source model that does not derive from SourceConfig (so it cannot describe decoding)."""

    type: Literal["untyped"]

    def build(self, context: BuildContext) -> Any:
        return FileSource([], key_separator=None)


def _project(tmp_path: Path, text: str = PIPELINE) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders.jsonl").write_text("{}\n")
    (tmp_path / "data" / "customers.jsonl").write_text("{}\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_plan_builds_every_component(tmp_path: Path) -> None:
    plan = plan_pipeline(load_pipeline(_project(tmp_path)))
    assert isinstance(plan.source, FileSource)
    assert plan.source.partitions() == [("customers.jsonl", 0), ("orders.jsonl", 0)]
    assert plan.source.key_separator == b"\t"
    assert isinstance(plan.decode, DecodeStep)
    assert plan.steps == []
    mirror, devnull = plan.writers
    assert isinstance(mirror, SqliteWriter)
    assert (mirror.name, mirror.pipeline, mirror.path) == (
        "mirror",
        "shop",
        tmp_path / "out" / "shop.sqlite",
    )
    assert isinstance(devnull, NullWriter)
    assert not (tmp_path / "out").exists(), "planning must not open sinks"


def test_default_dead_letters_go_next_to_the_pipeline(tmp_path: Path) -> None:
    plan = plan_pipeline(load_pipeline(_project(tmp_path)))
    assert isinstance(plan.dead_letters, DeadLetterFileWriter)
    assert plan.dead_letters.path == tmp_path / "dead-letters" / "shop.jsonl"


def test_configured_dead_letters(tmp_path: Path) -> None:
    path = _project(tmp_path, PIPELINE + "dead_letter: {type: file, path: out/dlq.jsonl}\n")
    plan = plan_pipeline(load_pipeline(path))
    assert isinstance(plan.dead_letters, DeadLetterFileWriter)
    assert plan.dead_letters.path == tmp_path / "out" / "dlq.jsonl"


def test_a_sources_list_of_one_is_planned(tmp_path: Path) -> None:
    text = PIPELINE.replace(
        'source:\n  type: file\n  path: data/*.jsonl\n  key_separator: "\\t"\n',
        "sources:\n  - type: file\n    path: data/orders.jsonl\n",
    )
    plan = plan_pipeline(load_pipeline(_project(tmp_path, text)))
    assert plan.source.partitions() == [("orders.jsonl", 0)]


def _two_sources(tmp_path: Path, second: str = "data/customers.jsonl", names: str = "") -> Path:
    first_name, second_name = names.split(",") if names else ("", "")
    text = PIPELINE.replace(
        'source:\n  type: file\n  path: data/*.jsonl\n  key_separator: "\\t"\n',
        "sources:\n"
        f"  - {{type: file, path: data/orders.jsonl{', name: ' + first_name if first_name else ''}"
        ", key_columns: {shop.public.orders: [id]}}\n"
        f"  - {{type: file, path: {second}{', name: ' + second_name if second_name else ''}}}\n",
    )
    return _project(tmp_path, text)


def test_several_named_sources_are_planned_each_with_its_decode_step(tmp_path: Path) -> None:
    plan = plan_pipeline(load_pipeline(_two_sources(tmp_path, names="orders,people")))
    assert [(i.name, i.loc) for i in plan.inputs] == [
        ("orders", ("sources", 0)), ("people", ("sources", 1)),
    ]
    assert [i.source.partitions() for i in plan.inputs] == [
        [("orders.jsonl", 0)], [("customers.jsonl", 0)],
    ]
    # each source decodes with its own spec
    assert [i.decode.key_columns for i in plan.inputs] == [{"shop.public.orders": ["id"]}, {}]
    routed = plan.routed_decode([i.source.partitions() for i in plan.inputs])
    assert routed.routes == {"orders.jsonl": 0, "customers.jsonl": 1}

    def keyless_create(stream: str) -> RawBatch:
        value = (
            b'{"op": "c", "after": {"id": 7}, '
            b'"source": {"db": "shop", "schema": "public", "table": "orders"}}'
        )
        return RawBatch(stream, 0, [RawRecord(None, value, Position(stream, 0, 0))], 0)

    (mine,) = routed.process(keyless_create("orders.jsonl")).batch.events
    assert mine.key == {"id": 7}  # the first source's key_columns
    (theirs,) = routed.process(keyless_create("customers.jsonl")).batch.events
    assert theirs.key is None  # the second source has none
    with pytest.raises(RuntimeError, match="no source of this pipeline lists stream 'x'"):
        routed.process(RawBatch("x", 0, [], 0))


def test_unnamed_sources_are_named_by_their_place(tmp_path: Path) -> None:
    plan = plan_pipeline(load_pipeline(_two_sources(tmp_path)))
    assert [i.name for i in plan.inputs] == ["sources[0]", "sources[1]"]
    (tmp_path / "one").mkdir()
    single = plan_pipeline(load_pipeline(_project(tmp_path / "one")))
    assert [i.name for i in single.inputs] == ["source"]
    assert single.routed_decode([single.source.partitions()]) is single.decode


def test_two_sources_with_one_name_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="two sources are named 'shop'"):
        plan_pipeline(load_pipeline(_two_sources(tmp_path, names="shop,shop")))


def test_two_sources_reading_one_stream_are_refused(tmp_path: Path) -> None:
    plan = plan_pipeline(
        load_pipeline(_two_sources(tmp_path, second="data/orders.jsonl", names="a,b"))
    )
    with pytest.raises(ConfigError, match=r"sources 'a' and 'b' both read stream 'orders\.jsonl'"):
        plan.routed_decode([i.source.partitions() for i in plan.inputs])


def test_build_errors_in_a_sources_list_are_located(tmp_path: Path) -> None:
    text = PIPELINE.replace(
        'source:\n  type: file\n  path: data/*.jsonl\n  key_separator: "\\t"\n',
        "sources:\n  - type: file\n    path: data/none-*.jsonl\n",
    )
    path = _project(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        plan_pipeline(load_pipeline(path))
    assert str(info.value).startswith(f"{path}:4: sources[0].path: no file matches")


@pytest.mark.parametrize(
    ("keyed", "expected"),
    [
        (True, ":7: transforms[0].rules: expected at least one rule"),
        (False, ":7: transforms[0]: cannot reach the policy server"),
    ],
)
def test_transform_build_errors_are_located(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keyed: bool, expected: str
) -> None:
    monkeypatch.setattr(registry, "_extra", {})
    registry.register("transform", "failing", f"{__name__}:FailingTransformConfig")
    text = PIPELINE.replace(
        "sinks:", f"transforms:\n  - type: failing\n    keyed: {str(keyed).lower()}\nsinks:"
    )
    path = _project(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        plan_pipeline(load_pipeline(path))
    assert str(info.value) == f"{path}{expected}"


def test_the_decode_step_is_built_from_the_sources_decoding(tmp_path: Path) -> None:
    plan = plan_pipeline(load_pipeline(_project(tmp_path)))
    assert isinstance(plan.decode, DecodeStep)
    # A file source's positions name files, not topics; its format is the default JSON one.
    assert plan.decode.stream_is_topic is False
    assert plan.decode.format == "debezium-json"


def test_a_source_model_without_the_source_base_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "_extra", {})
    registry.register("source", "untyped", f"{__name__}:UntypedSourceConfig")
    text = PIPELINE.replace(
        'source:\n  type: file\n  path: data/*.jsonl\n  key_separator: "\\t"\n',
        "source:\n  type: untyped\n",
    )
    path = _project(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        plan_pipeline(load_pipeline(path))
    assert str(info.value) == (
        f"{path}:2: source: the 'untyped' source model must subclass "
        "cdcflow.core.components.SourceConfig"
    )


# -- resume offsets --------------------------------------------------------------------------


PARTS: list[tuple[str, int | str]] = [("orders", 0), ("orders", 1), ("customers", 0)]


def test_resume_from_the_lowest_committed_position() -> None:
    a = MemoryWriter(positions={("orders", "0"): 10, ("orders", "1"): 3, ("customers", "0"): 7})
    b = MemoryWriter(positions={("orders", "0"): 12, ("orders", "1"): 5, ("customers", "0"): 7})
    assert resume_offsets([a, b], PARTS) == {
        ("orders", "0"): 11,
        ("orders", "1"): 4,
        ("customers", "0"): 8,
    }
    assert a.calls == ["open", "committed", "close"]


def test_partition_unknown_to_any_keeping_sink_starts_at_the_default() -> None:
    a = MemoryWriter(positions={("orders", "0"): 10, ("orders", "1"): 3})
    b = MemoryWriter(positions={("orders", "0"): 12})
    assert resume_offsets([a, b], PARTS) == {("orders", "0"): 11}


def test_a_sink_without_a_position_puts_the_partition_in_the_backfill() -> None:
    # The documented rule (docs/sinks.md, "Adding a sink"): a position-keeping sink with no
    # position for a partition makes it start from the source's start:, not from the others.
    old = MemoryWriter(positions={("orders", "0"): 10, ("orders", "1"): 3, ("customers", "0"): 7})
    new = MemoryWriter(positions={("orders", "0"): 4})
    other = MemoryWriter(keeps_positions=False)
    points = resume_points([old, new, other], PARTS)
    assert points == ResumePoints(
        offsets={("orders", "0"): 5},
        backfill=frozenset({("orders", "1"), ("customers", "0")}),
        positionless=True,
    )


def test_without_position_keeping_sinks_nothing_is_backfilled() -> None:
    points = resume_points([MemoryWriter(keeps_positions=False)], PARTS)
    assert points == ResumePoints(offsets={}, backfill=frozenset(), positionless=True)
    # a fresh position-keeping sink backfills every partition
    fresh = resume_points([MemoryWriter()], PARTS)
    assert fresh.backfill == {("orders", "0"), ("orders", "1"), ("customers", "0")}
    assert not fresh.positionless


def test_caught_up_needs_every_keeping_sink_at_each_end() -> None:
    # The --until-caught-up measure on Flink: the resume rule starts each partition at its end.
    a = MemoryWriter(positions={("orders", "0"): 10, ("orders", "1"): 3})
    b = MemoryWriter(positions={("orders", "0"): 12})
    other = MemoryWriter(keeps_positions=False)
    assert caught_up([a, b, other], {("orders", "0"): 11})
    assert not caught_up([a, b, other], {("orders", "0"): 12})
    # a sink without a position for a partition has nothing of it yet
    assert not caught_up([a, b, other], {("orders", "0"): 11, ("orders", "1"): 4})
    assert caught_up([a], {("orders", "0"): 11, ("orders", "1"): 4})
    # without a position-keeping sink nothing can tell (the Flink run refuses that case)
    assert not caught_up([other], {("orders", "0"): 1})
    assert caught_up([a, b], {})


def test_sinks_without_positions_are_ignored() -> None:
    keeping = MemoryWriter(positions={("orders", "0"): 10})
    other = MemoryWriter(keeps_positions=False)
    assert resume_offsets([keeping, other], PARTS) == {("orders", "0"): 11}
    assert other.calls == []
    assert resume_offsets([other], PARTS) == {}


def test_writer_is_closed_when_reading_positions_fails() -> None:
    class Broken(MemoryWriter):
        def committed_positions(self) -> dict[PartitionKey, int]:
            raise RuntimeError("db gone")

    broken = Broken()
    with pytest.raises(RuntimeError, match="db gone"):
        resume_offsets([broken], PARTS)
    assert broken.calls == ["open", "close"]


def test_resume_from_a_real_sqlite_sink(tmp_path: Path) -> None:
    writer = SqliteWriter(name="mirror", path=tmp_path / "m.sqlite", pipeline="shop")
    event = ChangeEvent(
        op=Op.CREATE,
        table=TableId(table="orders"),
        position=Position("orders.jsonl", 0, 4),
        key={"id": 1},
        after={"id": 1},
    )
    writer.write(EventBatch(stream="orders.jsonl", partition=0, last_offset=6, events=[event]))
    writer.close()
    fresh = SqliteWriter(name="mirror", path=tmp_path / "m.sqlite", pipeline="shop")
    assert resume_offsets([fresh], [("orders.jsonl", 0), ("customers.jsonl", 0)]) == {
        ("orders.jsonl", "0"): 7
    }


def test_null_sink_counts_and_keeps_no_positions(tmp_path: Path) -> None:
    plan = plan_pipeline(load_pipeline(_project(tmp_path)))
    devnull = plan.writers[1]
    assert isinstance(devnull, NullWriter)
    assert devnull.name == "devnull"
    assert devnull.keeps_positions is False
    event = ChangeEvent(
        op=Op.CREATE,
        table=TableId(table="t"),
        position=Position("s", 0, 0),
        key={"id": 1},
        after={"id": 1},
    )
    batch = EventBatch(stream="s", partition=0, last_offset=3, events=[event, event])
    assert devnull.write(batch).rejected == []
    assert devnull.write(batch).rejected == []
    assert devnull.events == 4
    assert devnull.committed_positions() == {}
