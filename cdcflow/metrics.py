"""Engine-neutral counters, exportable to an engine's metrics and to Prometheus text.

A step that counts things owns a :class:`Counters` object as its ``metrics`` attribute. An
engine adapter calls :meth:`Counters.drain` after each batch and adds the deltas to its own
counters (the Beam adapter names them ``<name>{label=value,...}`` in the ``cdcflow``
namespace). :func:`prometheus_text` renders counters in the Prometheus text exposition format.

Label values are table and column names and the like; never put a data value or a secret in
a label.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from cdcflow.scrub import scrub

Labels = tuple[tuple[str, str], ...]


class Counters:
    """Monotonic counters keyed by ``(name, labels)``; thread-safe and picklable."""

    def __init__(self) -> None:
        self._totals: dict[tuple[str, Labels], int] = {}
        self._pending: dict[tuple[str, Labels], int] = {}
        self._lock = threading.Lock()

    def inc(self, name: str, labels: Mapping[str, str] | Labels = (), amount: int = 1) -> None:
        """Add ``amount`` to the counter ``name`` with ``labels``."""
        if amount < 0:
            raise ValueError(f"counters only go up (got amount={amount})")
        items = tuple(labels.items()) if isinstance(labels, Mapping) else tuple(labels)
        key = (name, items)
        with self._lock:
            self._totals[key] = self._totals.get(key, 0) + amount
            self._pending[key] = self._pending.get(key, 0) + amount

    def value(self, name: str, labels: Mapping[str, str] | Labels = ()) -> int:
        """The total of one counter (0 when never incremented)."""
        items = tuple(labels.items()) if isinstance(labels, Mapping) else tuple(labels)
        with self._lock:
            return self._totals.get((name, items), 0)

    def totals(self) -> dict[tuple[str, Labels], int]:
        """A copy of every counter's total."""
        with self._lock:
            return dict(self._totals)

    def drain(self) -> list[tuple[str, Labels, int]]:
        """The increments since the previous call (for engines that add deltas)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return [(name, labels, amount) for (name, labels), amount in pending.items()]

    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            return {"totals": dict(self._totals), "pending": dict(self._pending)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._totals = state["totals"]
        self._pending = state["pending"]
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Counters({len(self._totals)} series)"


def flat_name(name: str, labels: Labels) -> str:
    """One string for a labelled counter: ``name{k=v,k2=v2}`` (``name`` without labels)."""
    if not labels:
        return name
    return name + "{" + ",".join(f"{k}={v}" for k, v in labels) + "}"


def _escape(value: str) -> str:
    value = scrub(value)  # a label never carries a ${...} value or a DSN password
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(counters: Counters | Iterable[Counters], prefix: str = "cdcflow_") -> str:
    """Render counters in the Prometheus text format (``# TYPE x counter`` + samples).

    Counters with the same name from several sources are summed per label set.
    """
    sources = [counters] if isinstance(counters, Counters) else list(counters)
    merged: dict[str, dict[Labels, int]] = {}
    for source in sources:
        for (name, labels), value in source.totals().items():
            series = merged.setdefault(name, {})
            series[labels] = series.get(labels, 0) + value
    lines: list[str] = []
    for name in sorted(merged):
        metric = prefix + name.replace(".", "_").replace("-", "_") + "_total"
        lines.append(f"# TYPE {metric} counter")
        for labels, value in sorted(merged[name].items()):
            rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{metric}{{{rendered}}} {value}" if rendered else f"{metric} {value}")
    return "\n".join(lines) + ("\n" if lines else "")
