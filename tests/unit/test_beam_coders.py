"""The batch coders: lossless RawBatch round trip and cheap, proportional size estimates."""

from __future__ import annotations

from cdcflow.beam.coders import RawBatchCoder
from cdcflow.schemas.model import Position, RawBatch, RawRecord


def _batch(count: int, size: int) -> RawBatch:
    records = [
        RawRecord(b"k%d" % i, b"v" * size, Position("t", 0, i), 1, (("h", b"x"),))
        for i in range(count)
    ]
    return RawBatch("t", 0, records, count - 1)


def test_raw_batch_round_trips() -> None:
    coder = RawBatchCoder()
    batch = _batch(5, 10)
    assert coder.decode(coder.encode(batch)) == batch


def test_raw_batch_size_estimate_scales_with_records_and_sizes() -> None:
    coder = RawBatchCoder()
    assert coder.estimate_size(RawBatch("t", 0, [], -1)) == 64
    small = coder.estimate_size(_batch(3, 100))
    assert small == 64 + 3 * (100 + 2 + 48)
    big = coder.estimate_size(_batch(10_000, 700))
    assert 10_000 * 700 < big < 10_000 * 800
    assert coder.estimate_size("not a batch") == 64
