"""Per-event steps: write one method, the base handles batches, dead letters and counters.

A custom transform usually looks at one row change at a time. Subclass :class:`EventStep` and
implement :meth:`EventStep.process_event`, which returns:

* the event itself, or a changed event (``msgspec.structs.replace(event, after=...)``);
* a list (or any iterable) of events, to split one change into several; an empty list drops
  it;
* ``None``, to drop the event deliberately.

The base runs it over every event of a batch, in order, and

* turns an exception raised for one event into a dead letter carrying the canonical event,
  the reason and the exception type (the rest of the batch goes on);
* turns a return value that is not an event (or an iterable of events) into a dead letter
  too (``error_type`` ``TypeError``), so a bug in a step never loses a row silently;
* passes markers (transactions, schema changes, tombstones, heartbeats), the dead letters
  carried in the batch and ``last_offset`` through untouched;
* counts, per step and table, in :attr:`EventStep.metrics` (exported by both engines):
  ``step_events{step,table,outcome}`` with ``outcome`` one of ``in`` (events seen), ``out``
  (events passed on, after splitting), ``dropped`` (deliberate drops: ``None`` or an empty
  iterable) and ``dead_letter``.

A deliberate drop is not a dead letter: the event is filtered out on purpose, and the
``dropped`` counter records how many. Raise an exception instead when an event is bad and
must be kept for inspection.

Like every step, an ``EventStep`` is pickled to the workers: open clients in
:meth:`~cdcflow.core.step.Step.setup`, never in ``__init__``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from cdcflow.core.step import Step, StepResult, event_dead_letter
from cdcflow.metrics import Counters
from cdcflow.schemas.model import ChangeEvent, DeadLetter, EventBatch

#: The counter every :class:`EventStep` keeps (labels ``step``, ``table``, ``outcome``).
COUNTER = "step_events"

#: What :meth:`EventStep.process_event` (and a ``type: python`` function) may return.
EventResult = ChangeEvent | Iterable[ChangeEvent] | None
EventFunction = Callable[[ChangeEvent], EventResult]


class EventStep(Step):
    """Base class for steps that transform one :class:`ChangeEvent` at a time.

    Subclasses implement :meth:`process_event` and may set :attr:`name` (the stable step id
    used in counters and dead letters) as a class attribute or pass ``name=`` to
    ``__init__``.
    """

    name: str = "event-step"

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = name
        self.metrics = Counters()

    def process_event(self, event: ChangeEvent) -> EventResult:
        """Transform one event: return it, a changed one, several, or ``None`` to drop it.

        Raise for an event that cannot be handled: it becomes a dead letter.
        """
        raise NotImplementedError

    def process(self, batch: EventBatch) -> StepResult:
        """Apply :meth:`process_event` to every event; never raises for a bad event."""
        if not hasattr(self, "metrics"):  # a subclass whose __init__ skipped ours
            self.metrics = Counters()
        events: list[ChangeEvent] = []
        dead: list[DeadLetter] = []
        counts: dict[tuple[str, str], int] = {}

        def count(table: str, outcome: str, amount: int = 1) -> None:
            counts[(table, outcome)] = counts.get((table, outcome), 0) + amount

        for event in batch.events:
            table = str(event.table)
            count(table, "in")
            try:
                produced = _as_events(self.process_event(event))
            except Exception as exc:  # noqa: BLE001 - every failure becomes a dead letter
                dead.append(event_dead_letter(self.name, event, exc))
                count(table, "dead_letter")
                continue
            if not produced:
                count(table, "dropped")
                continue
            events.extend(produced)
            count(table, "out", len(produced))
        for (table, outcome), amount in counts.items():
            self.metrics.inc(
                COUNTER, (("step", self.name), ("table", table), ("outcome", outcome)), amount
            )
        return StepResult(batch=msgspec.structs.replace(batch, events=events), dead_letters=dead)


class FunctionStep(EventStep):
    """An :class:`EventStep` around a plain function ``event -> event | list | None``.

    ``options`` are passed to the function as keyword arguments on every call
    (``function(event, **options)``); they must be picklable (YAML values are).
    """

    def __init__(
        self,
        function: EventFunction | Callable[..., EventResult],
        name: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        if not callable(function):
            raise TypeError(f"function must be callable (got {type(function).__name__})")
        super().__init__(name or getattr(function, "__name__", "function"))
        self.function = function
        self.options = dict(options or {})

    def __repr__(self) -> str:
        target = f"{getattr(self.function, '__module__', '?')}:"
        target += getattr(self.function, "__qualname__", type(self.function).__name__)
        options = sorted(self.options)
        return f"FunctionStep(name={self.name!r}, function={target}, options={options})"

    def process_event(self, event: ChangeEvent) -> EventResult:
        """Call the function with the event and the options."""
        return self.function(event, **self.options)


def _as_events(result: Any) -> list[ChangeEvent]:
    """The events a step returned, as a list; TypeError for anything else."""
    if isinstance(result, ChangeEvent):
        return [result]
    if result is None:
        return []
    if isinstance(result, (str, bytes, dict)) or not isinstance(result, Iterable):
        raise TypeError(
            f"a step must return a ChangeEvent, a list of ChangeEvent or None "
            f"(got {type(result).__name__})"
        )
    events = list(result)
    for item in events:
        if not isinstance(item, ChangeEvent):
            raise TypeError(
                f"a step returned a list containing {type(item).__name__}; "
                "expected only ChangeEvent values"
            )
    return events
