"""The writer contract (cdcflow.core.writer.Writer), run against every sink.

Each case writes through the Writer API and checks the destination through the sink's own
client: a replayed batch changes nothing; unavailable (TOAST) columns keep their stored value;
deletes remove the row; a truncate empties the table; rejected rows reach the dead letters
before the position commits; a failed batch leaves no position behind.
"""

from __future__ import annotations

import msgspec
import pytest

from cdcflow.schemas.model import DeadLetter, EventBatch, Position
from tests.contract.conftest import SinkUnderTest
from tests.integration.sinks.events import (
    batch,
    event,
    note_unsent,
    opening_orders,
    order_row,
)

STREAM = ("orders.jsonl", "0")
OPENED = {1: (5, "x"), 2: (2, "hello"), 3: (3, "hello")}


def _open(sink: SinkUnderTest) -> None:
    writer = sink.make()
    try:
        assert writer.keeps_positions
        assert writer.write(batch(opening_orders())).rejected == []
    finally:
        writer.close()
    assert sink.state() == OPENED
    assert sink.positions() == {STREAM: 3}


def test_a_replayed_batch_changes_nothing(sink: SinkUnderTest) -> None:
    _open(sink)
    writer = sink.make()  # a restart: positions come from the destination
    try:
        assert writer.committed_positions() == {STREAM: 3}
        assert writer.write(batch(opening_orders())).rejected == []
        # a batch overlapping the stored position applies only what is new
        overlap = [*opening_orders()[2:], event("c", 4, 4, after=order_row(4))]
        assert writer.write(batch(overlap)).rejected == []
    finally:
        writer.close()
    assert sink.state() == {**OPENED, 4: (4, "hello")}
    assert sink.positions() == {STREAM: 4}


def test_unavailable_columns_keep_their_stored_value(sink: SinkUnderTest) -> None:
    _open(sink)
    writer = sink.make()
    try:
        writer.write(batch([note_unsent("u", 4, 1, qty=6), note_unsent("u", 5, 2, qty=7)]))
    finally:
        writer.close()
    assert sink.state() == {1: (6, "x"), 2: (7, "hello"), 3: (3, "hello")}


def test_deletes_remove_the_row(sink: SinkUnderTest) -> None:
    _open(sink)
    writer = sink.make()
    try:
        writer.write(batch([event("d", 4, 2, before=order_row(2))]))
    finally:
        writer.close()
    assert sink.state() == {1: (5, "x"), 3: (3, "hello")}


def test_truncate_empties_the_table(sink: SinkUnderTest) -> None:
    _open(sink)
    writer = sink.make()
    try:
        writer.write(batch([event("t", 4), event("c", 5, 9, after=order_row(9))]))
    finally:
        writer.close()
    assert sink.state() == {9: (9, "hello")}
    assert sink.positions() == {STREAM: 5}


def test_rejected_rows_reach_the_dead_letters_before_the_position_commits(
    sink: SinkUnderTest,
) -> None:
    _open(sink)
    seen: list[tuple[list[DeadLetter], dict[tuple[str, str], int]]] = []
    writer = sink.make()
    try:
        result = writer.write(
            batch([event("c", 4, 4, after=order_row(4)), sink.rejected(5, 5)]),
            reject=lambda letters: seen.append((list(letters), sink.positions())),
        )
    finally:
        writer.close()
    ((letters, positions_then),) = seen
    assert result.rejected == letters and result.applied == 1
    assert [(d.position.offset if d.position else None) for d in letters] == [5]
    assert letters[0].step == "sink:contract" and letters[0].event is not None
    assert positions_then == {STREAM: 3}
    assert sink.positions() == {STREAM: 5}
    assert sink.state() == {**OPENED, 4: (4, "hello")}


def test_a_failed_batch_leaves_no_position_behind(sink: SinkUnderTest) -> None:
    _open(sink)

    def dead_letter_store_down(letters: list[DeadLetter]) -> None:
        raise RuntimeError("dead-letter store unavailable")

    writer = sink.make()
    try:
        with pytest.raises(Exception, match="dead-letter store unavailable"):
            writer.write(
                batch([event("c", 4, 4, after=order_row(4)), sink.rejected(5, 5)]),
                reject=dead_letter_store_down,
            )
    finally:
        writer.close()
    assert sink.positions() == {STREAM: 3}
    if sink.transactional:
        assert sink.state() == OPENED
    retry = sink.make()  # the batch is written again after the failure
    try:
        replayed = batch([event("c", 4, 4, after=order_row(4)), sink.rejected(5, 5)])
        letters = retry.write(replayed).rejected
    finally:
        retry.close()
    assert [d.position.offset for d in letters if d.position] == [5]
    assert sink.state() == {**OPENED, 4: (4, "hello")}
    assert sink.positions() == {STREAM: 5}


# -- positions of any size and shape ---------------------------------------------------------

#: A Kinesis-sized sequence number: 129 decimal digits, far beyond 64 bits.
HUGE = 10**128 + 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898
SHARD = ("shop-stream", "shardId-000000000001")


def _at(offset: int, ident: int | None = None, key: tuple[str, str] = SHARD) -> EventBatch:
    """A batch of ``key``'s partition up to ``offset``: one order created there, or no rows
    (only markers, tombstones or dead letters: the position moves all the same)."""
    events = []
    if ident is not None:
        created = event("c", offset, ident, after=order_row(ident))
        events = [msgspec.structs.replace(created, position=Position(*key, offset))]
    return EventBatch(stream=key[0], partition=key[1], last_offset=offset, events=events)


def test_a_129_digit_offset_and_a_string_partition_round_trip_exactly(
    sink: SinkUnderTest,
) -> None:
    assert len(str(HUGE)) == 129
    writer = sink.make()
    try:
        result = writer.write(_at(HUGE, ident=7))
    finally:
        writer.close()
    if sink.row_offsets_64bit:
        # The row's version is its offset in a UInt64 column: the row is refused, the
        # position is still stored exactly.
        assert result.applied == 0 and len(result.rejected) == 1
    else:
        assert result == (1, []) and sink.state() == {7: (7, "hello")}
    assert sink.positions() == {SHARD: HUGE}
    reopened = sink.make()  # a restart reads the exact position back
    try:
        assert reopened.committed_positions() == {SHARD: HUGE}
        assert reopened.write(_at(HUGE, ident=8)) == (0, [])  # a replay is skipped
        assert reopened.write(_at(HUGE + 1)) == (0, [])
        assert reopened.stored_positions() == {SHARD: HUGE + 1}
    finally:
        reopened.close()
    assert sink.positions() == {SHARD: HUGE + 1}


def test_offsets_are_ordered_numerically_not_as_text(sink: SinkUnderTest) -> None:
    lower, higher = 9 * 10**59, 10**60  # "9..." sorts after "1..." as text
    writer = sink.make()
    try:
        writer.write(_at(lower))
        writer.write(_at(higher))
    finally:
        writer.close()
    reopened = sink.make()
    try:
        assert reopened.committed_positions() == {SHARD: higher}
        # an event between the two is at or below the stored position: skipped
        assert reopened.write(_at(lower + 5, ident=9)) == (0, [])
    finally:
        reopened.close()
    assert sink.positions() == {SHARD: higher}


def test_positions_of_an_earlier_version_are_migrated_on_open(
    migrating_sink: SinkUnderTest,
) -> None:
    sink = migrating_sink
    assert sink.legacy_positions is not None
    sink.legacy_positions({STREAM: 3, SHARD: 2**63 - 1})
    writer = sink.make()  # opening migrates the table in place
    try:
        assert writer.committed_positions() == {STREAM: 3, SHARD: 2**63 - 1}
        assert writer.write(batch(opening_orders())) == (0, [])  # covered: skipped
        assert writer.write(_at(HUGE)) == (0, [])
    finally:
        writer.close()
    assert sink.positions() == {STREAM: 3, SHARD: HUGE}
    again = sink.make()  # a second open finds the new table and leaves it alone
    try:
        assert again.committed_positions() == {STREAM: 3, SHARD: HUGE}
    finally:
        again.close()
