"""The compiled redaction policy: per-table plans, cached per column set.

Resolution for one column of one table (done once per ``(table, column set)`` and cached):

1. the table's policy (the first ``tables:`` entry whose glob matches) drops the column when it
   has an allow-list that does not list it (fail closed);
2. otherwise the first rule whose table glob and column name/glob/regex match applies its
   strategy;
3. otherwise, on a table with ``scan: true``, the content detectors scan the value;
4. otherwise the value passes unchanged.

The same resolution applies to ``before``, ``after`` and ``key``. On the key, a treatment
that is not key-safe (a drop, or a strategy outside
:data:`~cdcflow.transforms.redact.strategies.KEY_SAFE`) makes the event fail with a
:class:`RedactionError` (the step dead-letters it, redacted), as does a detection inside a key
value when the detect strategy is not key-safe.

Cost contract (outputs are the same as redacting value by value): a row image is copied only
when one of its values changes, and an event with nothing to change is returned as is; a value
an event carries in several images (same column, an equal ``str``/``int`` or the same object)
goes through a deterministic strategy once; digests are memoised per batch
(:class:`BatchMemo`, emptied by :meth:`Policy.end_batch`); tables whose rules all name exact
columns (no allow-list, no scanning) skip the per-column-set plans.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable
from typing import Any, Final

import msgspec

from cdcflow.schemas.model import ChangeEvent, Column, TableId, TableSchema
from cdcflow.transforms.redact.config import (
    DetectOptions,
    RedactConfig,
    RuleConfig,
    StrategyOptions,
    TableConfig,
)
from cdcflow.transforms.redact.detectors import Detector, build_detectors, find_all, luhn_valid
from cdcflow.transforms.redact.strategies import (
    DETERMINISTIC,
    DROP,
    KEY_SAFE,
    MEMOISED,
    TEXT_OUTPUT,
    RedactionError,
    TextFn,
    ValueFn,
    compile_text_fn,
    generalizer,
)

#: Upper bound of cached row plans per table (schemaless sources may vary column sets).
MAX_ROW_PLANS = 4096
#: Counter cells: ``(table, column, action) -> [count]``.
Cells = dict[tuple[str, str, str], list[int]]
#: Detection counter cells of one column: ``detector -> [count]``.
HitCells = dict[str, list[int]]


def _secret_bytes(own: Any, default: Any) -> bytes | None:
    secret = own if own is not None else default
    return None if secret is None else secret.get_secret_value().encode("utf-8")


def compile_value_fn(
    options: StrategyOptions,
    where: str,
    salt: Any = None,
    key: Any = None,
    memos: list[BatchMemo] | None = None,
) -> ValueFn | Any:
    """Compile ``options`` into ``value -> value`` (or :data:`DROP`).

    With ``memos``, a strategy that is both deterministic and memoised
    (:data:`~cdcflow.transforms.redact.strategies.DETERMINISTIC`,
    :data:`~cdcflow.transforms.redact.strategies.MEMOISED`) is wrapped in a
    :class:`BatchMemo`, which is appended to ``memos`` so that its owner can empty it after
    every batch (:meth:`Policy.end_batch`). Without ``memos`` nothing is memoised.
    """
    strategy = options.strategy
    if strategy == "drop":
        return DROP
    if strategy == "null":
        return lambda _value: None
    if strategy == "generalize":
        return generalizer(options.granularity, options.bucket, where)
    text_fn = _text_fn(options, salt, key)
    if memos is not None and strategy in MEMOISED and strategy in DETERMINISTIC:
        memo = BatchMemo(text_fn)
        memos.append(memo)
        return memo.apply
    return text_fn


#: Entries one :class:`BatchMemo` holds at most (per rule, per batch).
MEMO_SIZE = 16384
#: Lookups after which a :class:`BatchMemo` checks that it pays off (per batch).
MEMO_PROBE = 256
#: A memo whose hits are fewer than 1 in this many lookups at the probe is switched off for the
#: rest of the batch: a miss costs a probe and an insert (about a sixth of a digest), so with
#: fewer hits than that it costs more than it saves.
MEMO_MIN_HIT_RATIO = 8


class BatchMemo:
    """A bounded memo of one deterministic strategy's results, emptied after every batch.

    ``apply`` is the memoised function. Change streams repeat values inside a batch (keys
    recur, the same customer in many orders), and a digest costs more than a dictionary probe.
    Contract:

    * only ``str`` and ``int`` inputs (exact types) are remembered: ``1`` and ``"1"`` are
      distinct keys, and ``True``, ``1.0`` or ``Decimal("1")`` (equal to ``1`` but with another
      canonical text) always call the function;
    * at most ``size`` entries are held: once full, further new values are computed without
      being remembered (what is already held keeps being reused);
    * after ``probe`` lookups in a batch, a memo with fewer than one hit in ``min_hit_ratio``
      lookups empties itself and calls the function directly for the rest of the batch (on a
      batch of distinct values it would only add cost);
    * :meth:`clear` forgets everything and switches the memo back on; the redact step calls
      it after each batch and after each dead letter it redacts, so no clear value outlives
      the batch that carried it;
    * only wrap functions whose output depends on nothing but their input (the caller decides:
      :func:`compile_value_fn` wraps only :data:`DETERMINISTIC` strategies); a call that raises
      is not remembered (the next call raises again). The output is the same with or without
      the memo.
    """

    __slots__ = ("_cache", "_reset", "_stats", "apply", "size")

    def __init__(
        self,
        fn: ValueFn,
        size: int = MEMO_SIZE,
        probe: int = MEMO_PROBE,
        min_hit_ratio: int = MEMO_MIN_HIT_RATIO,
    ) -> None:
        cache: dict[str | int, Any] = {}
        get = cache.get
        self._cache = cache
        self.size = size
        on = True
        lookups = hits = 0

        def apply(value: Any) -> Any:
            nonlocal on, lookups, hits
            kind = type(value)
            if not on or (kind is not str and kind is not int):
                return fn(value)
            out = get(value)
            lookups += 1
            if out is not None:
                hits += 1
                return out
            out = fn(value)
            if len(cache) < size:
                cache[value] = out
            if lookups == probe and hits * min_hit_ratio < lookups:
                on = False
                cache.clear()
            return out

        def reset() -> None:
            nonlocal on, lookups, hits
            cache.clear()
            on = True
            lookups = hits = 0

        def stats() -> tuple[bool, int, int]:
            return on, lookups, hits

        self.apply: ValueFn = apply
        self._reset = reset
        self._stats = stats

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def active(self) -> bool:
        """False once the memo has switched itself off for the rest of the batch."""
        return self._stats()[0]

    @property
    def lookups(self) -> int:
        """Lookups of ``str``/``int`` values in this batch so far (while active)."""
        return self._stats()[1]

    @property
    def hits(self) -> int:
        """Lookups answered from the memo in this batch so far."""
        return self._stats()[2]

    def clear(self) -> None:
        """Forget every remembered result, reset the statistics and switch the memo on."""
        self._reset()


def _text_fn(options: StrategyOptions, salt: Any, key: Any) -> TextFn:
    return compile_text_fn(
        options.strategy,
        replacement=options.replacement,
        keep_first=options.keep_first,
        keep_last=options.keep_last,
        mask_char=options.mask_char,
        keep_domain=options.keep_domain,
        length=options.length,
        salt=_secret_bytes(options.salt, salt),
        key=_secret_bytes(options.key, key),
        token_format=options.format,
    )


class CompiledRule:
    """One column rule, compiled (its memo, if any, is appended to ``memos``)."""

    def __init__(
        self,
        index: int,
        rule: RuleConfig,
        salt: Any,
        key: Any,
        memos: list[BatchMemo] | None = None,
    ) -> None:
        self.index = index
        self.rule = rule
        self.strategy = rule.strategy
        self.key_safe = rule.strategy in KEY_SAFE
        self.deterministic = rule.strategy in DETERMINISTIC
        self.fn = compile_value_fn(rule, f"rules[{index}]", salt, key, memos)

    def applies_to_table(self, name: str) -> bool:
        """True when the rule's table globs match ``name``."""
        return any(fnmatch.fnmatchcase(name, p) for p in self.rule.table_patterns)


class Scanner:
    """Content detection for one table policy, with the detect strategy compiled."""

    def __init__(
        self,
        options: DetectOptions,
        detectors: list[Detector],
        salt: Any,
        key: Any,
        memos: list[BatchMemo] | None = None,
    ) -> None:
        self.detectors = detectors
        self.has_card = any(d.name == "card" for d in detectors)
        self.strategy = options.strategy
        self.key_safe = options.strategy in KEY_SAFE
        #: True when scanning the same text twice gives the same output (and findings).
        self.deterministic = options.strategy in DETERMINISTIC
        self.whole_value = options.whole_value
        self.value_fn: ValueFn | Any = compile_value_fn(options, "detect", salt, key, memos)
        self.sub_fns: dict[str, TextFn] = {}
        if not self.whole_value:
            if options.strategy == "redact" and options.replacement and "{detector}" in (
                options.replacement
            ):
                for detector in detectors:
                    label = options.replacement.replace("{detector}", detector.name.upper())
                    self.sub_fns[detector.name] = _text_fn(
                        options.model_copy(update={"replacement": label}), salt, key
                    )
            else:
                shared = _text_fn(options, salt, key)
                self.sub_fns = {d.name: shared for d in detectors}

    def detect(self, value: Any) -> list[str]:
        """The detector names that fire anywhere in ``value`` (walking lists and dicts)."""
        if isinstance(value, str):
            return [name for _, _, name in find_all(value, self.detectors)]
        if isinstance(value, dict):
            return [n for item in value.items() for part in item for n in self.detect(part)]
        if isinstance(value, (list, tuple)):
            return [n for v in value for n in self.detect(v)]
        if type(value) is int and value >= 10**12 and self.has_card:
            text = str(value)
            return ["card"] if len(text) <= 19 and luhn_valid(text) else []
        return []

    def scan(self, value: Any, hits: list[str]) -> Any:
        """Return ``value`` with detected parts replaced; detector names go to ``hits``.

        Returns :data:`DROP` when the column must be removed.
        """
        if self.whole_value:
            found = self.detect(value)
            if not found:
                return value
            hits.extend(found)
            return self.value_fn if self.value_fn is DROP else self.value_fn(value)
        return self._scan_parts(value, hits)

    def _scan_text(self, value: str, hits: list[str]) -> str:
        spans = find_all(value, self.detectors)
        if not spans:
            return value
        pieces = []
        last = 0
        for start, end, name in spans:
            pieces.append(value[last:start])
            pieces.append(self.sub_fns[name](value[start:end]))
            hits.append(name)
            last = end
        pieces.append(value[last:])
        return "".join(pieces)

    def _scan_parts(self, value: Any, hits: list[str]) -> Any:
        if type(value) is str or isinstance(value, str):
            return self._scan_text(value, hits)
        if isinstance(value, dict):
            return self._scan_dict(value, hits)
        if isinstance(value, (list, tuple)):
            return [self._scan_parts(v, hits) for v in value]
        if type(value) is int and value >= 10**12:
            text = str(value)
            if len(text) <= 19 and luhn_valid(text) and self.has_card:
                hits.append("card")
                return None  # a number cannot hold a replacement text: it becomes null
        return value

    def _scan_dict(self, value: dict[Any, Any], hits: list[str]) -> dict[Any, Any]:
        """Scan keys and values of an object (docs/redaction.md, "Objects").

        A key with findings is rewritten like a value. Keys left unchanged keep their names;
        a rewritten key that equals a name already taken gets ``#2``, ``#3``, ... (the first
        free one, in the object's order), so no two entries collapse into one.
        """
        renamed: dict[str, str] = {}
        for key in value:
            if type(key) is str:
                new = self._scan_text(key, hits)
                if new != key:
                    renamed[key] = new
        if not renamed:
            return {k: self._scan_parts(v, hits) for k, v in value.items()}
        taken = {k for k in value if k not in renamed}
        out: dict[Any, Any] = {}
        for key, item in value.items():
            name = renamed.get(key)
            if name is None:
                name = key
            else:
                base, suffix = name, 2
                while name in taken:
                    name = f"{base}#{suffix}"
                    suffix += 1
                taken.add(name)
            out[name] = self._scan_parts(item, hits)
        return out


#: Marks a column the other image of an event does not have.
_ABSENT: Final = object()
#: Scanned values of an event's images: ``column -> (input, output, findings)``.
Scanned = dict[str, tuple[Any, Any, list[str]]]


class RowPlan:
    """The resolved treatment of one column set of one table.

    ``drops`` are removed, ``ops`` rewritten (``(column, fn, cell, reusable)``, where
    ``reusable`` marks a deterministic strategy), ``scans`` scanned. ``unsafe_key`` lists the
    columns whose treatment is not key-safe, with the reason (used when the row is a key).

    Copies: a row image is copied only when a value in it changes (a drop, or a strategy or
    scan whose output is not the input object itself); otherwise the input dict is returned as
    is. Inputs are never modified.
    """

    __slots__ = (
        "drops",
        "identity",
        "ops",
        "scanner",
        "scans",
        "strategies",
        "table",
        "unsafe_key",
    )

    def __init__(
        self,
        table: str,
        drops: list[tuple[str, list[int]]],
        ops: list[tuple[str, ValueFn, list[int], str]],
        scans: list[tuple[str, HitCells]],
        scanner: Scanner | None,
        unsafe_key: list[str],
    ) -> None:
        self.table = table
        self.drops = tuple(drops)
        self.ops = tuple(
            (column, fn, cell, strategy in DETERMINISTIC) for column, fn, cell, strategy in ops
        )
        self.strategies = {column: strategy for column, _, _, strategy in ops}
        self.scans = tuple(scans)
        self.scanner = scanner
        self.unsafe_key = tuple(unsafe_key)
        self.identity = not drops and not ops and not scans

    def apply(self, row: dict[str, Any]) -> dict[str, Any]:
        """Redact ``row``; raises :class:`RedactionError` naming rule and column.

        The result is ``row`` itself when nothing in it changes, else a new dict.
        """
        if self.identity:
            return row
        return self.redact(row)

    def apply_key(self, key: dict[str, Any]) -> dict[str, Any]:
        """Redact a key: like :meth:`apply`, but every treatment must be key-safe."""
        self.check_key()
        if self.identity:
            return key
        return self.redact(key, is_key=True)

    def check_key(self) -> None:
        """Raise :class:`RedactionError` when a key with these columns cannot be redacted."""
        if self.unsafe_key:
            raise RedactionError(
                f"table {self.table}: key column(s) {list(self.unsafe_key)} would be dropped or "
                "masked with a strategy that is not key-safe (upserts would stop matching); "
                "give them a hash-sha256, hmac-sha256 or tokenize rule, or allow them"
            )

    def redact(
        self,
        row: dict[str, Any],
        prev: dict[str, Any] | None = None,
        prev_out: dict[str, Any] | None = None,
        scanned: Scanned | None = None,
        is_key: bool = False,
    ) -> dict[str, Any]:
        """``row`` with the drops, column ops and scans applied (``row`` when none changes it).

        ``prev`` is another image of the same event (its key or ``before``) that a plan of the
        same table has already redacted into ``prev_out``: a column op with a deterministic
        strategy whose value ``prev`` holds in the same column (the same object, or an equal
        ``str`` or ``int``) takes ``prev_out``'s value instead of calling the strategy again.
        ``scanned`` does the same for scanned ``str`` and ``int`` values across the images of
        one event (pass the same dict for all of them; it is filled here). Counters count every
        value, computed or reused, so they do not depend on this. With ``is_key``, a detection
        the detect strategy cannot handle key-safely raises. A strategy that fails raises
        :class:`RedactionError` naming table, column and strategy (never the value).
        """
        out: dict[str, Any] | None = None
        if self.drops:
            out = row.copy()
            for column, cell in self.drops:
                del out[column]
                cell[0] += 1
        for column, fn, cell, reusable in self.ops:
            value = row[column]
            if value is None:
                continue
            if prev is not None and reusable:
                old = prev.get(column, _ABSENT)
                kind = type(value)
                if old is value or (
                    (kind is str or kind is int) and type(old) is kind and old == value
                ):
                    assert prev_out is not None
                    new = prev_out[column]
                    cell[0] += 1
                    if new is old:  # unchanged there, so unchanged here
                        continue
                    if out is None:
                        out = row.copy()
                    out[column] = new
                    continue
            try:
                new = fn(value)
            except Exception as exc:  # reported without the value
                if isinstance(exc, RedactionError):
                    raise
                raise RedactionError(
                    f"table {self.table} column {column}: strategy "
                    f"{self.strategies[column]} failed ({type(exc).__name__})"
                ) from None
            cell[0] += 1
            if new is not value:
                if out is None:
                    out = row.copy()
                out[column] = new
        if self.scans:
            if out is None:
                return self._scan(row, False, is_key, scanned)
            return self._scan(out, True, is_key, scanned)
        return row if out is None else out

    def apply_lenient(self, row: dict[str, Any]) -> dict[str, Any]:
        """Redact for a dead letter (a new dict): never raises; what cannot be redacted is null."""
        out = row.copy()
        for column, cell in self.drops:
            del out[column]
            cell[0] += 1
        for column, fn, cell, _ in self.ops:
            value = out[column]
            if value is not None:
                try:
                    out[column] = fn(value)
                except Exception:  # noqa: BLE001 - fail closed: the value is withheld
                    out[column] = None
                cell[0] += 1
        scanner = self.scanner
        if scanner is not None:
            for column, cells in self.scans:
                value = out[column]
                if value is None:
                    continue
                hits: list[str] = []
                try:
                    new = scanner.scan(value, hits)
                except Exception:  # noqa: BLE001 - fail closed: the value is withheld
                    new = None
                if new is DROP:
                    del out[column]
                else:
                    out[column] = new
                _count_hits(cells, hits)
        return out

    def _scan(
        self, row: dict[str, Any], owned: bool, is_key: bool, scanned: Scanned | None
    ) -> dict[str, Any]:
        """Scan the scanned columns of ``row``, copying it at the first change unless ``owned``."""
        scanner = self.scanner
        assert scanner is not None
        for column, cells in self.scans:
            value = row[column]
            if value is None:
                continue
            kind = type(value)
            entry = scanned.get(column) if scanned is not None else None
            if entry is not None and type(entry[0]) is kind and entry[0] == value:
                new, hits = entry[1], entry[2]  # only str/int values are recorded
            else:
                hits = []
                new = scanner.scan(value, hits)
                if scanned is not None and scanner.deterministic and (kind is str or kind is int):
                    scanned[column] = (value, new, hits)
            if not hits:
                continue
            if is_key and not scanner.key_safe:
                raise RedactionError(
                    f"table {self.table}: detector(s) {sorted(set(hits))} fired in key column "
                    f"{column} but the detect strategy {scanner.strategy} is not key-safe; give "
                    "the column a hash-sha256, hmac-sha256 or tokenize rule"
                )
            if not owned:
                row = row.copy()
                owned = True
            if new is DROP:
                del row[column]
            else:
                row[column] = new
            _count_hits(cells, hits)
        return row


def _count_hits(cells: HitCells, hits: list[str]) -> None:
    for name in hits:
        cells[name][0] += 1


class TablePlan:
    """Everything about one table: its rules, its policy, and cached row plans."""

    def __init__(
        self,
        name: str,
        rules: list[CompiledRule],
        policy: TableConfig | None,
        scanner: Scanner | None,
        cells: Cells,
    ) -> None:
        self.name = name
        self.rules = rules
        self.policy = policy
        self.scanner = scanner
        self.cells = cells
        self.identity = not rules and policy is None
        self._rows: dict[tuple[str, ...], RowPlan] = {}
        self._columns: dict[str, tuple[str, CompiledRule | None]] = {}
        self._schemas: dict[str, TableSchema] = {}
        #: Rows of a table with only exact-name rules (no allow-list, no scanning, no glob or
        #: regex) need no per-column-set plan: their treatment is a lookup of those names.
        self._named: tuple[tuple[str, ValueFn | Any, list[int], bool, bool], ...] | None = None
        if not self.identity and policy is None and scanner is None:
            self._named = self._named_ops()

    def _named_ops(self) -> tuple[tuple[str, ValueFn | Any, list[int], bool, bool], ...] | None:
        """``(column, fn or DROP, cell, reusable, key_safe)`` per named column.

        None unless every rule of the table names its columns exactly (no glob, no regex).
        """
        names: list[str] = []
        for rule in self.rules:
            if rule.rule.column_regex is not None:
                return None
            for column in rule.rule.columns:
                if any(c in column for c in "*?["):
                    return None
                if column not in names:
                    names.append(column)
        ops = []
        for column in names:
            kind, found = self.treatment(column)
            assert kind == "rule" and found is not None
            action = "drop" if found.fn is DROP else found.strategy
            ops.append(
                (column, found.fn, self._cell(column, action), found.deterministic, found.key_safe)
            )
        return tuple(ops)

    def _redact_named(
        self,
        row: dict[str, Any],
        prev: dict[str, Any] | None,
        prev_out: dict[str, Any] | None,
        is_key: bool = False,
    ) -> dict[str, Any]:
        """:meth:`RowPlan.redact` for a table with ``_named`` ops, without a :class:`RowPlan`.

        The same result and counts (with ``is_key``, those of :meth:`RowPlan.apply_key`). When
        a strategy fails, or a key holds a column whose rule is not key-safe, the counts of this
        row are taken back and the row goes through its :class:`RowPlan`, which raises the
        error the column order of the row gives.
        """
        assert self._named is not None
        out: dict[str, Any] | None = None
        done = 0
        try:
            for column, fn, cell, reusable, key_safe in self._named:
                value = row.get(column, _ABSENT)
                if value is _ABSENT:
                    done += 1
                    continue
                if is_key and not key_safe:
                    raise RedactionError("not key-safe")  # raised again below, with the columns
                if fn is DROP:
                    if out is None:
                        out = row.copy()
                    del out[column]
                    cell[0] += 1
                    done += 1
                    continue
                if value is None:
                    done += 1
                    continue
                if prev is not None and reusable:
                    old = prev.get(column, _ABSENT)
                    kind = type(value)
                    if old is value or (
                        (kind is str or kind is int) and type(old) is kind and old == value
                    ):
                        assert prev_out is not None
                        new = prev_out[column]
                        cell[0] += 1
                        done += 1
                        if new is old:  # unchanged there, so unchanged here
                            continue
                        if out is None:
                            out = row.copy()
                        out[column] = new
                        continue
                new = fn(value)
                cell[0] += 1
                done += 1
                if new is not value:
                    if out is None:
                        out = row.copy()
                    out[column] = new
        except Exception:  # noqa: BLE001, S110 - redone below, in the row's column order
            pass
        else:
            return row if out is None else out
        for column, fn, cell, _, _ in self._named[:done]:
            value = row.get(column, _ABSENT)
            if value is not _ABSENT and (fn is DROP or value is not None):
                cell[0] -= 1
        plan = self.row_plan(tuple(row))
        if is_key:
            return plan.apply_key(row)
        return plan.redact(row, prev, prev_out)

    def _cell(self, column: str, action: str) -> list[int]:
        return self.cells.setdefault((self.name, column, action), [0])

    def treatment(self, column: str) -> tuple[str, CompiledRule | None]:
        """How ``column`` is treated: ``drop`` (allow-list), ``rule``, ``scan`` or ``keep``."""
        found = self._columns.get(column)
        if found is None:
            if self.policy is not None and not self.policy.allows(column):
                found = ("drop", None)
            else:
                rule = next((r for r in self.rules if r.rule.matches_column(column)), None)
                if rule is not None:
                    found = ("rule", rule)
                elif self.scanner is not None:
                    found = ("scan", None)
                else:
                    found = ("keep", None)
            self._columns[column] = found
        return found

    def dropped(self, column: str) -> bool:
        """True when ``column`` never reaches the output."""
        kind, rule = self.treatment(column)
        return kind == "drop" or (rule is not None and rule.fn is DROP)

    def row_plan(self, columns: tuple[str, ...]) -> RowPlan:
        """The cached plan for rows with exactly these columns."""
        plan = self._rows.get(columns)
        if plan is not None:
            return plan
        drops: list[tuple[str, list[int]]] = []
        ops: list[tuple[str, ValueFn, list[int], str]] = []
        scans: list[tuple[str, HitCells]] = []
        unsafe: list[str] = []
        for column in columns:
            kind, rule = self.treatment(column)
            if kind == "drop":
                drops.append((column, self._cell(column, "not-allowed")))
                unsafe.append(column)
            elif kind == "rule":
                assert rule is not None
                if rule.fn is DROP:
                    drops.append((column, self._cell(column, "drop")))
                else:
                    ops.append((column, rule.fn, self._cell(column, rule.strategy), rule.strategy))
                if not rule.key_safe:
                    unsafe.append(column)
            elif kind == "scan":
                assert self.scanner is not None
                cells: HitCells = {
                    d.name: self._cell(column, f"detect:{d.name}")
                    for d in self.scanner.detectors
                }
                scans.append((column, cells))
        plan = RowPlan(self.name, drops, ops, scans, self.scanner, unsafe)
        if len(self._rows) >= MAX_ROW_PLANS:
            self._rows.clear()
        self._rows[columns] = plan
        return plan

    def schema(self, schema: TableSchema) -> TableSchema:
        """``schema`` without dropped columns, and retyped where a strategy changes the type."""
        cached = self._schemas.get(schema.fingerprint)
        if cached is not None:
            return cached
        columns: list[Column] = []
        for column in schema.columns:
            kind, rule = self.treatment(column.name)
            if kind == "drop" or (rule is not None and rule.fn is DROP):
                continue
            if rule is not None and rule.strategy in TEXT_OUTPUT:
                columns.append(Column(name=column.name, type="string", optional=column.optional))
            elif (rule is not None and rule.strategy == "null") or kind == "scan":
                columns.append(msgspec.structs.replace(column, optional=True))
            else:
                columns.append(column)
        signature = ",".join(f"{c.name}:{c.type}:{c.logical}:{c.optional}" for c in columns)
        digest = hashlib.sha256(signature.encode("utf-8")).hexdigest()[:16]
        fingerprint = f"{schema.fingerprint}+redacted:{digest}"
        out = msgspec.structs.replace(schema, columns=tuple(columns), fingerprint=fingerprint)
        self._schemas[schema.fingerprint] = out
        return out

    def unavailable(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """``names`` without dropped columns."""
        return tuple(n for n in names if not self.dropped(n))

    def redact_event(self, event: ChangeEvent) -> ChangeEvent:
        """``event`` redacted; raises :class:`RedactionError` (no values inside).

        ``event`` itself when nothing changes (no row image, key, ``unavailable`` or schema
        to rewrite); otherwise a new event whose unchanged row images are the input's own
        dicts (see :class:`RowPlan`). A value an event carries in more than one image
        (``key``, ``before``, ``after``; same column, same value) goes through a deterministic
        strategy once.
        """
        rows = self._rows
        scanned: Scanned | None = {} if self.scanner is not None else None
        prev: dict[str, Any] | None = None
        prev_out: dict[str, Any] | None = None
        key = event.key
        if key and self._named is not None:
            out = self._redact_named(key, None, None, True)
            if out is not key:
                prev, prev_out, key = key, out, out
        elif key:
            columns = tuple(key)
            plan = rows.get(columns) or self.row_plan(columns)
            plan.check_key()
            if not plan.identity:
                prev = key
                key = prev_out = plan.redact(key, None, None, scanned, True)
        before = event.before
        after = event.after
        if self._named is not None:
            if before:
                out = self._redact_named(before, prev, prev_out)
                prev, prev_out, before = before, out, out
            if after:
                after = self._redact_named(after, prev, prev_out)
        else:
            if before:
                columns = tuple(before)
                plan = rows.get(columns) or self.row_plan(columns)
                if not plan.identity:
                    out = plan.redact(before, prev, prev_out, scanned)
                    prev, prev_out, before = before, out, out
            if after:
                columns = tuple(after)
                plan = rows.get(columns) or self.row_plan(columns)
                if not plan.identity:
                    after = plan.redact(after, prev, prev_out, scanned)
        schema = event.schema
        unavailable = event.unavailable
        if schema is None and not unavailable:
            if key is event.key and before is event.before and after is event.after:
                return event
            return msgspec.structs.replace(event, key=key, before=before, after=after)
        return msgspec.structs.replace(
            event,
            key=key,
            before=before,
            after=after,
            unavailable=self.unavailable(unavailable) if unavailable else (),
            schema=self.schema(schema) if schema is not None else None,
        )

    def redact_event_lenient(self, event: ChangeEvent) -> ChangeEvent:
        """A redacted copy for a dead letter: never raises, withholds what it cannot redact."""
        return msgspec.structs.replace(
            event,
            key=self.lenient(event.key),
            before=self.lenient(event.before),
            after=self.lenient(event.after),
            unavailable=self.unavailable(event.unavailable) if event.unavailable else (),
            schema=self.schema(event.schema) if event.schema is not None else None,
        )

    def lenient(self, row: Any) -> Any:
        """Lenient redaction of a row image (None and non-dicts pass through)."""
        if not isinstance(row, dict) or not row:
            return row
        return self.row_plan(tuple(row)).apply_lenient(row)


class Policy:
    """The compiled policy of one redact step: table plans by table, counter cells."""

    def __init__(self, config: RedactConfig) -> None:
        self.config = config
        #: The per-batch memos of the compiled strategies (emptied by :meth:`end_batch`).
        self.memos: list[BatchMemo] = []
        self.rules = [
            CompiledRule(i, rule, config.salt, config.key, self.memos)
            for i, rule in enumerate(config.rules)
        ]
        self._scanners: dict[int, Scanner] = {}
        for index, table in enumerate(config.tables):
            if table.scan:
                self._scanners[index] = Scanner(
                    table.detect,
                    build_detectors(table.detectors),
                    config.salt,
                    config.key,
                    self.memos,
                )
        self.all_detectors = build_detectors()
        self.cells: Cells = {}
        self._by_id: dict[TableId, TablePlan] = {}
        self._by_name: dict[str, TablePlan] = {}
        #: Indexes of the rules and ``tables:`` entries that matched a table seen so far.
        self.matched_rules: set[int] = set()
        self.matched_tables: set[int] = set()

    def unmatched(self) -> list[tuple[str, str]]:
        """``(where, pattern)`` of every rule/``tables:`` entry no table seen has matched."""
        found = [
            (f"rules[{r.index}]", ",".join(r.rule.table_patterns))
            for r in self.rules
            if r.index not in self.matched_rules
        ]
        found += [
            (f"tables[{i}]", ",".join(t.table_patterns))
            for i, t in enumerate(self.config.tables)
            if i not in self.matched_tables
        ]
        return found

    def for_table(self, table: TableId) -> TablePlan:
        """The plan of ``table`` (cached)."""
        plan = self._by_id.get(table)
        if plan is None:
            plan = self.for_name(str(table))
            self._by_id[table] = plan
        return plan

    def for_name(self, name: str) -> TablePlan:
        """The plan of the table called ``name`` (``db.schema.table``; cached)."""
        plan = self._by_name.get(name)
        if plan is None:
            rules = [r for r in self.rules if r.applies_to_table(name)]
            policy: TableConfig | None = None
            scanner: Scanner | None = None
            for index, table in enumerate(self.config.tables):
                if any(fnmatch.fnmatchcase(name, p) for p in table.table_patterns):
                    policy = table
                    scanner = self._scanners.get(index)
                    break
            plan = TablePlan(name, rules, policy, scanner, self.cells)
            self._by_name[name] = plan
            self.matched_rules.update(r.index for r in rules)
            self.matched_tables.update(
                i
                for i, t in enumerate(self.config.tables)
                if any(fnmatch.fnmatchcase(name, p) for p in t.table_patterns)
            )
        return plan

    def end_batch(self) -> None:
        """Empty every memo: remembered results never outlive the batch that computed them."""
        for memo in self.memos:
            memo.clear()

    def scrub_text(self, text: str, replacement: str = "[REDACTED]") -> str:
        """``text`` with every detector's findings replaced (for dead-letter reasons)."""
        spans = find_all(text, self.all_detectors)
        if not spans:
            return text
        pieces = []
        last = 0
        for start, end, _ in spans:
            pieces.append(text[last:start])
            pieces.append(replacement)
            last = end
        pieces.append(text[last:])
        return "".join(pieces)

    def drain_counts(self) -> Iterable[tuple[tuple[str, str, str], int]]:
        """Yield and reset the counts gathered since the last call."""
        for label, cell in self.cells.items():
            if cell[0]:
                count = cell[0]
                cell[0] = 0
                yield label, count

