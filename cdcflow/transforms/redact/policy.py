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
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable
from typing import Any

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
    DROP,
    KEY_SAFE,
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
    options: StrategyOptions, where: str, salt: Any = None, key: Any = None
) -> ValueFn | Any:
    """Compile ``options`` into ``value -> value`` (or :data:`DROP`)."""
    strategy = options.strategy
    if strategy == "drop":
        return DROP
    if strategy == "null":
        return lambda _value: None
    if strategy == "generalize":
        return generalizer(options.granularity, options.bucket, where)
    text_fn = _text_fn(options, salt, key)
    if strategy in ("hash-sha256", "hmac-sha256", "tokenize"):
        return memoized(text_fn)
    return text_fn


#: Entries kept by :func:`memoized` before it starts over.
MEMO_SIZE = 16384


def memoized(fn: ValueFn, size: int = MEMO_SIZE) -> ValueFn:
    """Remember ``fn``'s results for string and integer inputs (bounded; cleared when full).

    Digests are the expensive part of redaction, and change streams repeat values (an update
    carries the unchanged columns in ``before`` and ``after``; keys recur). Only ``str`` and
    ``int`` inputs are cached (``1`` and ``"1"`` are distinct keys; ``1.0`` and ``True``, equal
    to ``1``, are never cached).
    """
    cache: dict[str | int, Any] = {}
    get = cache.get

    def apply(value: Any) -> Any:
        kind = type(value)
        if kind is not str and kind is not int:
            return fn(value)
        out = get(value)
        if out is None:
            if len(cache) >= size:
                cache.clear()
            out = cache[value] = fn(value)
        return out

    return apply


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
    """One column rule, compiled."""

    def __init__(self, index: int, rule: RuleConfig, salt: Any, key: Any) -> None:
        self.index = index
        self.rule = rule
        self.strategy = rule.strategy
        self.key_safe = rule.strategy in KEY_SAFE
        self.fn = compile_value_fn(rule, f"rules[{index}]", salt, key)

    def applies_to_table(self, name: str) -> bool:
        """True when the rule's table globs match ``name``."""
        return any(fnmatch.fnmatchcase(name, p) for p in self.rule.table_patterns)


class Scanner:
    """Content detection for one table policy, with the detect strategy compiled."""

    def __init__(self, options: DetectOptions, detectors: list[Detector], salt: Any, key: Any):
        self.detectors = detectors
        self.has_card = any(d.name == "card" for d in detectors)
        self.strategy = options.strategy
        self.key_safe = options.strategy in KEY_SAFE
        self.whole_value = options.whole_value
        self.value_fn: ValueFn | Any = compile_value_fn(options, "detect", salt, key)
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


class RowPlan:
    """The resolved treatment of one column set of one table.

    ``drops`` are removed, ``ops`` rewritten, ``scans`` scanned. ``unsafe_key`` lists the
    columns whose treatment is not key-safe, with the reason (used when the row is a key).
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
        self.ops = tuple((column, fn, cell) for column, fn, cell, _ in ops)
        self.strategies = {column: strategy for column, _, _, strategy in ops}
        self.scans = tuple(scans)
        self.scanner = scanner
        self.unsafe_key = tuple(unsafe_key)
        self.identity = not drops and not ops and not scans

    def apply(self, row: dict[str, Any]) -> dict[str, Any]:
        """Redact ``row`` (a new dict); raises :class:`RedactionError` naming rule and column."""
        if self.identity:
            return row
        out = self._transform(row, lenient=False)
        if self.scans:
            self._scan(out, key=False)
        return out

    def apply_key(self, key: dict[str, Any]) -> dict[str, Any]:
        """Redact a key: like :meth:`apply`, but every treatment must be key-safe."""
        if self.unsafe_key:
            raise RedactionError(
                f"table {self.table}: key column(s) {list(self.unsafe_key)} would be dropped or "
                "masked with a strategy that is not key-safe (upserts would stop matching); "
                "give them a hash-sha256, hmac-sha256 or tokenize rule, or allow them"
            )
        if self.identity:
            return key
        out = self.apply_ops_only(key)
        if self.scans:
            self._scan(out, key=True)
        return out

    def apply_ops_only(self, row: dict[str, Any]) -> dict[str, Any]:
        """Drops and column ops, without scanning."""
        return self._transform(row, lenient=False)

    def _transform(self, row: dict[str, Any], lenient: bool) -> dict[str, Any]:
        """A copy of ``row`` with the drops and column ops applied.

        A strategy that fails raises :class:`RedactionError` naming table, column and strategy
        (never the value), or, when ``lenient``, makes the value null (fail closed).
        """
        out = row.copy()
        for column, cell in self.drops:
            del out[column]
            cell[0] += 1
        for column, fn, cell in self.ops:
            value = out[column]
            if value is not None:
                try:
                    out[column] = fn(value)
                except Exception as exc:  # reported without the value, or withheld
                    if lenient:
                        out[column] = None  # fail closed: the value is withheld
                    elif isinstance(exc, RedactionError):
                        raise
                    else:
                        raise RedactionError(
                            f"table {self.table} column {column}: strategy "
                            f"{self.strategies[column]} failed ({type(exc).__name__})"
                        ) from None
                cell[0] += 1
        return out

    def apply_lenient(self, row: dict[str, Any]) -> dict[str, Any]:
        """Redact for a dead letter: never raises; a value that cannot be redacted is null."""
        out = self._transform(row, lenient=True)
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

    def _scan(self, out: dict[str, Any], key: bool) -> None:
        scanner = self.scanner
        assert scanner is not None
        for column, cells in self.scans:
            value = out[column]
            if value is None:
                continue
            hits: list[str] = []
            new = scanner.scan(value, hits)
            if not hits:
                continue
            if key and not scanner.key_safe:
                raise RedactionError(
                    f"table {self.table}: detector(s) {sorted(set(hits))} fired in key column "
                    f"{column} but the detect strategy {scanner.strategy} is not key-safe; give "
                    "the column a hash-sha256, hmac-sha256 or tokenize rule"
                )
            if new is DROP:
                del out[column]
            else:
                out[column] = new
            _count_hits(cells, hits)


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
        """A redacted copy of ``event``; raises :class:`RedactionError` (no values inside)."""
        rows = self._rows
        key = event.key
        if key:
            columns = tuple(key)
            plan = rows.get(columns) or self.row_plan(columns)
            if not plan.identity or plan.unsafe_key:
                key = plan.apply_key(key)
        before = event.before
        if before:
            columns = tuple(before)
            before = (rows.get(columns) or self.row_plan(columns)).apply(before)
        after = event.after
        if after:
            columns = tuple(after)
            after = (rows.get(columns) or self.row_plan(columns)).apply(after)
        schema = event.schema
        if schema is None and not event.unavailable:
            return msgspec.structs.replace(event, key=key, before=before, after=after)
        return msgspec.structs.replace(
            event,
            key=key,
            before=before,
            after=after,
            unavailable=self.unavailable(event.unavailable) if event.unavailable else (),
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
        self.rules = [
            CompiledRule(i, rule, config.salt, config.key) for i, rule in enumerate(config.rules)
        ]
        self._scanners: dict[int, Scanner] = {}
        for index, table in enumerate(config.tables):
            if table.scan:
                self._scanners[index] = Scanner(
                    table.detect, build_detectors(table.detectors), config.salt, config.key
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

