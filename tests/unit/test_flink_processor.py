"""Flink window rows to raw batches (the Flink operator's conversion, without Flink)."""

from __future__ import annotations

import pytest

from cdcflow.flink.processor import raw_batch


def test_raw_batch_sorts_parallel_arrays_by_offset() -> None:
    batch = raw_batch("t", 3, [12, 10, 11], [b"k12", None, b"k11"], [b"v12", b"v10", None])
    assert [r.position.offset for r in batch.records] == [10, 11, 12]
    assert [(r.key, r.value) for r in batch.records] == [
        (None, b"v10"),
        (b"k11", None),
        (b"k12", b"v12"),
    ]
    assert batch.last_offset == 12 and batch.partition == 3 and batch.stream == "t"
    assert all(r.position.partition == 3 for r in batch.records)


def test_raw_batch_rejects_misaligned_or_empty_arrays() -> None:
    with pytest.raises(ValueError, match="2 offsets, 1 keys"):
        raw_batch("t", 0, [1, 2], [None], [None, None])
    with pytest.raises(ValueError, match="empty"):
        raw_batch("t", 0, [], [], [])


def test_raw_batch_in_order_keeps_values_and_converts_other_byte_types() -> None:
    keys = [b"a", None, b"c"]
    batch = raw_batch("t", 0, [5, 6, 7], keys, [bytearray(b"x"), memoryview(b"y"), None])
    assert [r.position.offset for r in batch.records] == [5, 6, 7]
    assert [r.key for r in batch.records] == keys
    assert [r.value for r in batch.records] == [b"x", b"y", None]
    assert all(type(r.value) is bytes for r in batch.records[:2])
    assert batch.last_offset == 7


def test_raw_batch_duplicate_offsets_sort_stably() -> None:
    batch = raw_batch("t", 0, [9, 8, 8], [b"k9", b"first", b"second"], [None, None, None])
    assert [(r.position.offset, r.key) for r in batch.records] == [
        (8, b"first"),
        (8, b"second"),
        (9, b"k9"),
    ]
    assert batch.last_offset == 9
