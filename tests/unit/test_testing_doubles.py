"""The packaged test doubles (cdcflow.testing) and RedactStep.from_rules."""

from __future__ import annotations

import pickle

import pytest
from pydantic import ValidationError

from cdcflow.errors import SinkError, TransientSinkError
from cdcflow.schemas.model import ChangeEvent, DeadLetter, EventBatch, Op, Position, TableId
from cdcflow.testing import FaultyWriter, MemoryDeadLetterWriter, MemorySource, MemoryWriter
from cdcflow.transforms.decode import DecodeStep
from cdcflow.transforms.redact import RedactStep

TABLE = TableId("shop", "public", "users")


def ev(offset: int, op: Op = Op.CREATE, key: int | None = 1, **after: object) -> ChangeEvent:
    return ChangeEvent(
        op=op, table=TABLE, position=Position("users", 0, offset),
        key=None if key is None else {"id": key},
        after=None if op in (Op.DELETE, Op.TRUNCATE) else {"id": key, **after},
    )


def eb(*events: ChangeEvent, last: int | None = None) -> EventBatch:
    return EventBatch(
        stream="users", partition=0, events=list(events),
        last_offset=last if last is not None else events[-1].position.offset,
    )


def test_memory_source_batches_partitions_from_a_start_offset() -> None:
    source = MemorySource.from_values("users", [b"a", b"b", b"c", b"d", b"e"], batch_size=2)
    assert source.partitions() == [("users", 0)]
    batches = list(source.read("users", 0, None))
    assert [(b.last_offset, [r.value for r in b.records]) for b in batches] == [
        (1, [b"a", b"b"]), (3, [b"c", b"d"]), (4, [b"e"]),
    ]
    assert [b.last_offset for b in source.read("users", 0, 3)] == [4]
    assert list(source.read("other", 0, None)) == []
    with pytest.raises(ValueError, match="differ in length"):
        MemorySource.from_values("users", [b"a"], keys=[])
    with pytest.raises(ValueError, match="batch_size"):
        MemorySource([], batch_size=0)


def test_memory_source_feeds_the_decoder() -> None:
    value = b'{"op":"c","after":{"id":7},"source":{"db":"shop","schema":"public","table":"users"}}'
    source = MemorySource.from_values("shop.public.users", [value], keys=[b'{"id": 7}'])
    (raw,) = source.read("shop.public.users", 0, None)
    (event,) = DecodeStep().process(raw).batch.events
    assert event.after == {"id": 7} and event.key == {"id": 7}


def test_memory_writer_upserts_deletes_truncates_and_keeps_unavailable() -> None:
    writer = MemoryWriter()
    writer.write(eb(ev(0, name="ada", bio="long"), ev(1, key=2, name="bob")))
    toast = ChangeEvent(
        op=Op.UPDATE, table=TABLE, position=Position("users", 0, 2), key={"id": 1},
        after={"id": 1, "name": "Ada"}, unavailable=("bio",),
    )
    writer.write(eb(toast, ev(3, op=Op.DELETE, key=2)))
    assert writer.rows(str(TABLE)) == [{"id": 1, "name": "Ada", "bio": "long"}]
    assert writer.committed_positions() == {("users", "0"): 3}
    writer.write(eb(ev(4, op=Op.TRUNCATE, key=None)))
    assert writer.rows(str(TABLE)) == []
    ignoring = MemoryWriter(truncate="ignore")
    ignoring.write(eb(ev(0, name="x"), ev(1, op=Op.TRUNCATE, key=None)))
    assert len(ignoring.rows(str(TABLE))) == 1


def test_memory_writer_skips_replays_and_rejects_keyless_rows_before_committing() -> None:
    writer = MemoryWriter()
    seen: list[tuple[list[DeadLetter], dict[tuple[str, str], int]]] = []
    writer.write(eb(ev(0, name="a")))
    writer.write(
        eb(ev(1, key=None, name="no key"), ev(2, name="b")),
        reject=lambda letters: seen.append((letters, writer.committed_positions())),
    )
    ((letters, positions_then),) = seen
    assert [(d.step, d.error_type, d.position.offset) for d in letters if d.position] == [
        ("sink:memory", "RowRejectedError", 1)
    ]
    assert positions_then == {("users", "0"): 0}  # not yet committed when letters were handed
    before = writer.rows(str(TABLE))
    assert writer.write(eb(ev(1, name="replayed"), ev(2, name="again"))) == (0, [])
    assert writer.rows(str(TABLE)) == before == [{"id": 1, "name": "b"}]
    returned = MemoryWriter().write(eb(ev(0, key=None))).rejected
    assert [d.error_type for d in returned] == ["RowRejectedError"]


def test_memory_writer_is_picklable_and_logs_calls() -> None:
    writer = MemoryWriter(positions={("users", "0"): 5}, keeps_positions=False)
    writer.open()
    assert writer.committed_positions() == {}
    writer.close()
    assert pickle.loads(pickle.dumps(writer)).calls == ["open", "committed", "close"]


@pytest.mark.parametrize(
    ("error", "kind"), [("transient", TransientSinkError), ("terminal", SinkError)]
)
def test_faulty_writer_fails_the_nth_batch_without_a_position(error: str, kind: type) -> None:
    inner = MemoryWriter()
    writer = FaultyWriter(inner, fail_on=[2], error=error)  # type: ignore[arg-type]
    writer.write(eb(ev(0, name="a")))
    with pytest.raises(kind, match="injected failure of write #2") as info:
        writer.write(eb(ev(1, name="b")))
    assert isinstance(info.value, TransientSinkError) == (error == "transient")
    assert inner.committed_positions() == {("users", "0"): 0}
    assert inner.rows(str(TABLE)) == [{"id": 1, "name": "a"}]
    writer.write(eb(ev(1, name="b")))  # the retry goes through
    assert inner.committed_positions() == {("users", "0"): 1} and writer.failures == 1


def test_faulty_writer_rejects_chosen_rows_before_the_position_commits() -> None:
    inner = MemoryWriter()
    writer = FaultyWriter(inner, reject=lambda e: e.after is not None and e.after["name"] == "x")
    seen: list[dict[tuple[str, str], int]] = []
    out = writer.write(
        eb(ev(0, name="x"), ev(1, key=2, name="y")),
        reject=lambda letters: seen.append(inner.committed_positions()),
    )
    assert [d.position.offset for d in out.rejected if d.position] == [0]
    assert out.applied == 1 and seen == [{}]
    assert inner.rows(str(TABLE)) == [{"id": 2, "name": "y"}]
    again = writer.write(eb(ev(0, name="x"), ev(1, key=2, name="y"))).rejected
    assert again == []  # a replayed batch rejects nothing twice


def test_memory_dead_letter_writer() -> None:
    letters = MemoryDeadLetterWriter()
    letter = DeadLetter(step="s", reason="r", error_type="E", position=None)
    letters.write([letter])
    assert letters.letters == [letter]
    with pytest.raises(SinkError):
        MemoryDeadLetterWriter(fail=True).write([letter])


def test_redact_step_from_rules_without_yaml() -> None:
    step = RedactStep.from_rules(
        [{"columns": ["email"], "strategy": "drop"}], name="pii"
    )
    assert step.name == "pii"
    event = ChangeEvent(
        op=Op.CREATE, table=TABLE, position=Position("users", 0, 0), key={"id": 1},
        after={"id": 1, "email": "a@example.com"},
    )
    assert step.process(eb(event)).batch.events[0].after == {"id": 1}
    with pytest.raises(ValidationError, match="needs rules and/or tables"):
        RedactStep.from_rules([])
