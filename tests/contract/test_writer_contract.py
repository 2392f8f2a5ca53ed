"""The writer contract (cdcflow.core.writer.Writer), run against every sink.

Each case writes through the Writer API and checks the destination through the sink's own
client: a replayed batch changes nothing; unavailable (TOAST) columns keep their stored value;
deletes remove the row; a truncate empties the table; rejected rows reach the dead letters
before the position commits; a failed batch leaves no position behind.
"""

from __future__ import annotations

import pytest

from cdcflow.schemas.model import DeadLetter
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
