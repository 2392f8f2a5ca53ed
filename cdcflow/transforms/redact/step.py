"""The redact step: a compiled policy applied to every event and carried dead letter.

Per batch:

* every row change is redacted (``key``, ``before``, ``after``; ``unavailable`` and the
  schema follow the dropped and retyped columns). An event that cannot be redacted safely
  (a value a strategy cannot handle, a key treatment that is not key-safe) becomes a dead
  letter whose ``event`` is itself redacted, with the failing values withheld (null);
* dead letters are redacted where they are stored (:meth:`RedactStep.redact_dead_letter`,
  applied by :class:`~cdcflow.transforms.redact.dead_letters.RedactingDeadLetterWriter`,
  which the planner puts in front of the dead-letter sink): letters carried in the batch pass
  through this step untouched;
* tombstone markers' keys are redacted with the plan of the table the stream is named after
  (Kafka topics ``server.schema.table``), leniently;
* nothing is copied that does not change: an event none of whose values is rewritten is passed
  on as the same object, a row image without changes as the same dict; a value carried in
  several images of one event is redacted once, and digests are memoised per batch (the memos
  are emptied after every batch and every dead letter).

Counters ``redacted_values{table,column,action}`` (``action`` is the strategy, ``drop``,
``not-allowed`` or ``detect:<detector>``) are kept in :attr:`RedactStep.metrics`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from cdcflow.core.step import Step, StepResult, now_ms
from cdcflow.metrics import Counters
from cdcflow.schemas.canonical import event_dict
from cdcflow.schemas.model import (
    ChangeEvent,
    DeadLetter,
    EventBatch,
    TableId,
    Tombstone,
)
from cdcflow.transforms.redact.config import RedactConfig, RuleConfig, TableConfig
from cdcflow.transforms.redact.policy import Policy
from cdcflow.transforms.redact.strategies import RedactionError

COUNTER = "redacted_values"
#: After this many batches, patterns that matched no table are logged once and counted.
WARN_AFTER_BATCHES = 10
log = logging.getLogger("cdcflow.transforms.redact")


class RedactStep(Step):
    """Redact personal data in event batches according to a :class:`RedactConfig`.

    The policy is compiled in :meth:`setup` (on the worker) and dropped when pickled; the
    step's repr and its dead letters never contain a secret or a redacted value.
    """

    def __init__(self, config: RedactConfig) -> None:
        self.config = config
        self.name = config.name
        self.metrics = Counters()
        self._policy: Policy | None = None
        self._batches = 0

    @classmethod
    def from_rules(
        cls,
        rules: Sequence[RuleConfig | Mapping[str, Any]] = (),
        tables: Sequence[TableConfig | Mapping[str, Any]] = (),
        **options: Any,
    ) -> RedactStep:
        """A redact step built in code, without YAML.

        ``rules`` and ``tables`` take the same shape as in YAML (mappings, or
        :class:`RuleConfig`/:class:`TableConfig` values); ``options`` are the other keys of
        ``type: redact`` (``name``, ``salt``, ``key``, ``raw_dead_letters``...). Raises
        :class:`pydantic.ValidationError` (a ``ValueError``) for an invalid policy::

            RedactStep.from_rules([{"columns": ["email"], "strategy": "hash-sha256"}],
                                  salt="a-long-enough-salt-value")
        """
        config = RedactConfig.model_validate(
            {"type": "redact", "rules": list(rules), "tables": list(tables), **options}
        )
        return cls(config)

    def __repr__(self) -> str:
        return (
            f"RedactStep(name={self.name!r}, rules={len(self.config.rules)}, "
            f"tables={len(self.config.tables)})"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_policy"] = None
        return state

    def setup(self) -> None:
        """Compile the policy (detectors, strategies, secrets as bytes)."""
        if self._policy is None:
            self._policy = Policy(self.config)

    @property
    def policy(self) -> Policy:
        """The compiled policy (compiled on first use)."""
        if self._policy is None:
            self.setup()
        assert self._policy is not None
        return self._policy

    def process(self, batch: EventBatch) -> StepResult:
        """Redact one batch; never raises for a bad event (it becomes a redacted dead letter).

        Events that need no change are passed on as the same objects; the strategies' memos
        are emptied when the batch is done (:meth:`Policy.end_batch`).
        """
        try:
            return self._process(batch)
        finally:
            self.policy.end_batch()

    def _process(self, batch: EventBatch) -> StepResult:
        policy = self.policy
        events: list[ChangeEvent] = []
        dead: list[DeadLetter] = []
        append = events.append
        last_table: TableId | None = None
        plan = None
        for event in batch.events:
            if event.table != last_table:  # batches are usually one table: skip the lookup
                last_table = event.table
                plan = policy.for_table(last_table)
            assert plan is not None
            if plan.identity:
                append(event)
                continue
            try:
                append(plan.redact_event(event))
            except RedactionError as exc:
                dead.append(self._dead_letter(plan.redact_event_lenient(event), exc))
        markers = batch.markers
        if markers and any(isinstance(m, Tombstone) and m.key for m in markers):
            markers = [self._tombstone(m, batch.stream) for m in markers]
        out = msgspec.structs.replace(batch, events=events, markers=markers)
        self._flush_counts()
        self._batches += 1
        if self._batches == WARN_AFTER_BATCHES:
            self._warn_unmatched()
        return StepResult(batch=out, dead_letters=dead)

    def _warn_unmatched(self) -> None:
        """Once, after the first batches: log and count every pattern that matched nothing."""
        for where, pattern in self.policy.unmatched():
            log.warning(
                "redact step %s: %s table pattern %r has matched no table in the first %d "
                "batches: its columns may pass unredacted (check the name; require_match: "
                "true makes this an error, docs/redaction.md)",
                self.name,
                where,
                pattern,
                WARN_AFTER_BATCHES,
            )
            self.metrics.inc("redact_unmatched_patterns", {"step": self.name, "rule": where})

    def _dead_letter(self, redacted: ChangeEvent, error: RedactionError) -> DeadLetter:
        return DeadLetter(
            step=self.name,
            reason=self.policy.scrub_text(str(error)),
            error_type=type(error).__name__,
            position=redacted.position,
            event=event_dict(redacted),
            failed_at_ms=now_ms(),
        )

    def _tombstone(self, marker: Any, stream: str) -> Any:
        if not isinstance(marker, Tombstone) or not marker.key:
            return marker
        plan = self.policy.for_table(TableId.parse(stream))
        if plan.identity:
            return marker
        return msgspec.structs.replace(marker, key=plan.lenient(marker.key))

    def redact_dead_letter(self, letter: DeadLetter, event: bool = True) -> DeadLetter:
        """``letter`` redacted for storage.

        With ``event`` (a letter produced before this step) its decoded event is redacted with
        this step's policy, leniently. Whatever its origin, the reason is scrubbed by the
        detectors (``scan_dead_letter_reasons``) and, with ``raw_dead_letters: drop``, the
        original bytes of an undecodable record are dropped.
        """
        policy = self.policy
        changes: dict[str, Any] = {}
        if self.config.scan_dead_letter_reasons and letter.reason:
            scrubbed = policy.scrub_text(letter.reason)
            if scrubbed != letter.reason:
                changes["reason"] = scrubbed
        if letter.event is not None:
            if event:
                changes["event"] = self._redact_event_dict(letter.event)
        elif self.config.raw_dead_letters == "drop" and (
            letter.value is not None or letter.key is not None
        ):
            changes["value"] = None
            changes["key"] = None
            changes["reason"] = (
                f"{letter.error_type} in step {letter.step}: reason and original bytes withheld "
                "(redact raw_dead_letters: drop)"
            )
        if changes:
            letter = msgspec.structs.replace(letter, **changes)
            self._flush_counts()
        policy.end_batch()
        return letter

    def _redact_event_dict(self, event: dict[str, Any]) -> dict[str, Any]:
        table = event.get("table")
        if not isinstance(table, str):
            return event
        plan = self.policy.for_name(table)
        if plan.identity:
            return event
        out = dict(event)
        for part in ("key", "before", "after"):
            out[part] = plan.lenient(event.get(part))
        unavailable = event.get("unavailable")
        if isinstance(unavailable, list):
            out["unavailable"] = list(plan.unavailable(tuple(unavailable)))
        return out

    def _flush_counts(self) -> None:
        for (table, column, action), count in self.policy.drain_counts():
            self.metrics.inc(
                COUNTER, (("table", table), ("column", column), ("action", action)), count
            )
