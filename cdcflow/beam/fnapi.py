"""Adjustments to Beam's FnApiRunner for long runs: the one place cdcflow patches Beam.

Each adjustment is a context manager that changes one attribute of Beam for the duration of a
pipeline run and restores it afterwards. If Beam's code does not have the expected shape (an
upgrade renamed or fixed it), nothing is changed.

:func:`eager_metric_merges` (issue 10 item 1)
    ``FnApiRunner.run_stages`` (apache_beam 2.77, ``fn_runner.py``) keeps each stage's metrics as
    ``consolidate_monitoring_infos(chain(this_bundle, previous))``. ``consolidate`` is a
    *generator*, so the value is never computed: after N bundles a stage's metrics are N
    generators, each wrapping the previous one, holding the ``MonitoringInfo`` protos of every
    bundle of the run. Nothing reads them until ``result.metrics()``; iterating the outermost
    generator then recurses N frames deep. A streaming Kafka run makes a bundle per poll
    checkpoint (about two a second when partitions are idle), so at the first 10-minute epoch
    restart (about 1,200 bundles) the runner's metrics collection raised ``RecursionError:
    maximum recursion depth exceeded`` (Python's limit is 1,000 frames; measured: 1,200
    checkpointing bundles reproduce it in 10 s, 500 do not). The chain also made memory grow
    with every bundle. The fix makes the merge eager: the module-level alias ``fn_runner``
    calls is replaced by one that returns a list, so each stage keeps one merged value per
    metric, computed as the bundles finish (constant depth, constant memory).

:func:`short_state_sampling`
    Beam's per-bundle state sampler thread sleeps up to 200 ms between samples and every bundle
    end joins it; see its docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

#: Beam's state-sampler period while a pipeline runs (ms; Beam's default is 200).
STATE_SAMPLING_PERIOD_MS = 10


@contextmanager
def eager_metric_merges() -> Iterator[None]:
    """While a pipeline runs, merge each bundle's metrics into a list at once (see above)."""
    try:
        from apache_beam.runners.portability.fn_api_runner import fn_runner as module

        runner: Any = module
        lazy: Callable[[Iterable[Any]], Iterable[Any]] = runner.consolidate_monitoring_infos
    except (ImportError, AttributeError):
        yield
        return

    def consolidate_now(metrics: Iterable[Any]) -> list[Any]:
        return list(lazy(metrics))

    runner.consolidate_monitoring_infos = consolidate_now
    try:
        yield
    finally:
        runner.consolidate_monitoring_infos = lazy


@contextmanager
def short_state_sampling(period_ms: int = STATE_SAMPLING_PERIOD_MS) -> Iterator[None]:
    """Make Beam's per-bundle state sampler wake every ``period_ms`` instead of 200 ms.

    Every bundle starts a sampling thread that sleeps up to the sampling period between
    samples; ending the bundle joins it, so each bundle end waited up to 200 ms (measured:
    ~0.1-0.2 s of a 2 s Kafka run). The sampler only feeds Beam's per-step timing counters,
    which cdcflow does not use. The period is a constructor default in Beam, so it is
    swapped for the run and restored afterwards; if Beam's code has another shape, nothing
    is changed.
    """
    try:
        from apache_beam.runners.worker import statesampler

        init = statesampler.StateSampler.__init__
        defaults = init.__defaults__
    except (ImportError, AttributeError):
        defaults = None
    if not defaults or type(defaults[-1]) is not int:
        yield
        return
    init.__defaults__ = (*defaults[:-1], period_ms)
    try:
        yield
    finally:
        init.__defaults__ = defaults
