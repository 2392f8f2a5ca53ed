"""The FnApiRunner adjustments in :mod:`cdcflow.beam.fnapi` (no servers)."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.metrics import Metrics
from apache_beam.runners.portability.fn_api_runner import FnApiRunner, fn_runner
from apache_beam.transforms.core import RestrictionProvider

from cdcflow.beam.fnapi import eager_metric_merges

#: Bundles in the test run; the metrics query below runs with this much recursion headroom
#: less than needed by Beam's lazy merge, so the bug shows without a 1,000-bundle run.
BUNDLES = 300


class _Steps(RestrictionProvider):  # type: ignore[misc]
    def initial_restriction(self, element: int) -> OffsetRange:
        return OffsetRange(0, BUNDLES)

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, element: int, restriction: OffsetRange) -> int:
        return int(restriction.size())

    def split(self, element: int, restriction: OffsetRange) -> Iterator[OffsetRange]:
        yield restriction


_TRACKER = beam.DoFn.RestrictionParam(_Steps())


class _OnePerBundle(beam.DoFn):  # type: ignore[misc]
    """Claims one offset, counts it, and checkpoints: one bundle per offset (like the reader)."""

    def __init__(self) -> None:
        self.claimed = Metrics.counter("test", "claimed")

    def process(self, element: int, tracker: Any = _TRACKER) -> Iterator[int]:
        position = tracker.current_restriction().start
        if tracker.try_claim(position):
            self.claimed.inc()
            yield position
            tracker.defer_remainder()


def _claimed(result: Any) -> int:
    """The counter, queried with less stack than ``BUNDLES`` nested generators need."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack(0)) + BUNDLES // 2)
    try:
        counters = result.metrics().query(beam.metrics.MetricsFilter().with_name("claimed"))
    finally:
        sys.setrecursionlimit(limit)
    return sum(c.committed for c in counters["counters"])


def test_metrics_of_many_bundles_merge_without_deep_recursion() -> None:
    # Regression (issue 10 item 1): Beam kept each stage's metrics as one lazy generator per
    # bundle, each wrapping the previous; the first query recursed once per bundle and a
    # streaming run died with RecursionError at its first epoch restart.
    pipeline = beam.Pipeline(runner=FnApiRunner())
    _ = pipeline | beam.Create([0]) | beam.ParDo(_OnePerBundle())
    with eager_metric_merges():
        result = pipeline.run()
        result.wait_until_finish()
    assert _claimed(result) == BUNDLES


def test_the_merge_is_restored_after_the_run() -> None:
    before = fn_runner.consolidate_monitoring_infos
    with eager_metric_merges():
        assert fn_runner.consolidate_monitoring_infos is not before
        assert isinstance(fn_runner.consolidate_monitoring_infos([]), list)
    assert fn_runner.consolidate_monitoring_infos is before
