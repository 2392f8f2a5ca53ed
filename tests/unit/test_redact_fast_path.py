"""The redact step's cheap paths (issue 12): no copies of unchanged images, one strategy call
per value an event carries in several images, per-batch memos of deterministic strategies,
and outputs identical to a plain reference implementation written here.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import hmac
import random
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from cdcflow.schemas.canonical import dumps, event_dict
from cdcflow.schemas.model import (
    ChangeEvent,
    Column,
    EventBatch,
    Op,
    Position,
    TableId,
    TableSchema,
)
from cdcflow.transforms.redact import RedactConfig, RedactStep
from cdcflow.transforms.redact import policy as policy_module
from cdcflow.transforms.redact.config import RuleConfig, StrategyOptions, TableConfig
from cdcflow.transforms.redact.detectors import build_detectors
from cdcflow.transforms.redact.policy import BatchMemo, Scanner, compile_value_fn
from cdcflow.transforms.redact.strategies import (
    DETERMINISTIC,
    DROP,
    KEY_SAFE,
    MEMOISED,
    RedactionError,
    as_text,
    compile_text_fn,
    generalizer,
    keep_email_domain,
)

KEY = "Zq8Wv1Xk4Lr7Tn2Pm5Hs0Jd3"
SALT = "Ys6Ub9Ie2Oa5Qw8Rt1Fg4Hj7"
CUSTOMERS = TableId("shop", "public", "customers")
TICKETS = TableId("shop", "public", "tickets")
OTHER = TableId("shop", "public", "other")


def make_step(**data: Any) -> RedactStep:
    config = RedactConfig.model_validate({"type": "redact", "key": KEY, "salt": SALT, **data})
    built = RedactStep(config)
    built.setup()
    return built


def change(
    table: TableId = CUSTOMERS,
    op: Op = Op.UPDATE,
    key: dict[str, Any] | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    offset: int = 0,
    **extra: Any,
) -> ChangeEvent:
    return ChangeEvent(
        op=op,
        table=table,
        position=Position(str(table), 0, offset),
        key=key,
        before=before,
        after=after,
        **extra,
    )


def batch_of(events: list[ChangeEvent]) -> EventBatch:
    return EventBatch(stream="shop.public.customers", partition=0, last_offset=99, events=events)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the calls of every compiled text strategy, by strategy (set up before the step)."""
    counts: Counter[str] = Counter()
    real = policy_module.compile_text_fn

    def counting(strategy: Any, **options: Any) -> Callable[[Any], str]:
        fn = real(strategy, **options)

        def counted(value: Any) -> str:
            counts[strategy] += 1
            return fn(value)

        return counted

    monkeypatch.setattr(policy_module, "compile_text_fn", counting)
    return counts


# --- no copies -------------------------------------------------------------------------------

#: Policies under which the rows below have no redacted column (exact names take the named
#: fast path, the others the per-column-set plans).
UNTOUCHED: dict[str, dict[str, Any]] = {
    "exact name": {"rules": [{"columns": ["ssn"], "strategy": "hash-sha256"}]},
    "glob": {"rules": [{"columns": ["*_ssn"], "strategy": "mask"}]},
    "regex": {"rules": [{"column_regex": "ss.*", "strategy": "tokenize"}]},
    "allow-list": {"tables": [{"table": "*", "allow": ["id", "email", "city"]}]},
    "scan": {"tables": [{"table": "*", "scan": True}]},
}


@pytest.mark.parametrize("policy", sorted(UNTOUCHED))
def test_an_event_without_redacted_values_is_passed_on_as_the_same_object(policy: str) -> None:
    s = make_step(**UNTOUCHED[policy])
    row = {"id": 7, "email": "no address here", "city": "Oslo"}
    original = change(key={"id": 7}, before=dict(row), after={**row, "city": "Rome"})
    (out,) = s.process(batch_of([original])).batch.events
    assert out is original


@pytest.mark.parametrize("policy", sorted(UNTOUCHED))
def test_rewritten_events_keep_their_unchanged_row_dicts(policy: str) -> None:
    s = make_step(**UNTOUCHED[policy])
    schema = TableSchema(
        name="customers",
        fingerprint="f1",
        columns=(Column(name="id", type="int64"), Column(name="city", type="string")),
    )
    original = change(
        key={"id": 7},
        before={"id": 7, "city": "Oslo"},
        after={"id": 7, "city": "Rome"},
        schema=schema,
    )
    (out,) = s.process(batch_of([original])).batch.events
    assert out is not original  # the schema's fingerprint is rewritten
    assert out.key is original.key and out.before is original.before
    assert out.after is original.after


def test_only_the_image_whose_value_changes_is_copied() -> None:
    s = make_step(rules=[{"columns": ["email"], "strategy": "hash-sha256"}])
    before = {"id": 1, "city": "Oslo"}
    after = {"id": 1, "city": "Rome", "email": "ada@example.com"}
    key = {"id": 1}
    original = change(key=key, before=before, after=after)
    (out,) = s.process(batch_of([original])).batch.events
    assert out.key is key and out.before is before
    assert out.after is not after and out.after is not None and len(out.after["email"]) == 64
    assert after["email"] == "ada@example.com"  # the input is not modified


def test_a_scan_copies_only_the_image_with_a_finding() -> None:
    s = make_step(tables=[{"table": "*", "scan": True}])
    before = {"id": 1, "note": "nothing to see"}
    after = {"id": 1, "note": "mail ada@example.com"}
    (out,) = s.process(batch_of([change(before=before, after=after)])).batch.events
    assert out.before is before
    assert out.after == {"id": 1, "note": "mail [REDACTED]"}
    assert after["note"] == "mail ada@example.com"


# --- one call per value ----------------------------------------------------------------------


@pytest.mark.parametrize("memo", [True, False], ids=["memo", "no memo"])
@pytest.mark.parametrize(
    "rule",
    [
        {"columns": ["email"], "strategy": "hash-sha256"},
        {"columns": ["e*"], "strategy": "hash-sha256"},
        {"columns": ["email"], "strategy": "mask", "keep_first": 1},
    ],
    ids=["named", "glob", "mask"],
)
def test_a_value_in_before_and_after_is_redacted_once(
    rule: dict[str, Any], memo: bool, calls: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not memo:
        monkeypatch.setattr(policy_module, "MEMOISED", frozenset())
    s = make_step(rules=[rule])
    events = [
        change(
            key={"id": i},
            before={"id": i, "email": f"user{i}@example.com", "city": "Oslo"},
            after={"id": i, "email": f"user{i}@example.com", "city": "Rome"},
            offset=i,
        )
        for i in range(50)
    ]
    out = s.process(batch_of(events)).batch.events
    assert calls[rule["strategy"]] == 50  # one per event, not one per image
    for event in out:
        assert event.before is not None and event.after is not None
        assert event.before["email"] == event.after["email"] != "user0@example.com"
    labels = (("table", str(CUSTOMERS)), ("column", "email"), ("action", rule["strategy"]))
    assert s.metrics.value("redacted_values", labels) == 100  # both images still counted


def test_distinct_values_in_before_and_after_are_each_redacted(calls: Counter[str]) -> None:
    s = make_step(rules=[{"columns": ["email"], "strategy": "hash-sha256"}])
    event = change(before={"email": "old@example.com"}, after={"email": "new@example.com"})
    (out,) = s.process(batch_of([event])).batch.events
    assert calls["hash-sha256"] == 2
    assert out.before is not None and out.after is not None
    assert out.before["email"] != out.after["email"]


@pytest.mark.parametrize(
    ("before", "after"),
    [(1, True), (1, 1.0), (Decimal("1.0"), Decimal("1.00")), ("1", 1)],
    ids=["int-bool", "int-float", "decimal-scale", "str-int"],
)
def test_equal_values_with_another_text_are_not_shared(
    before: Any, after: Any, calls: Counter[str]
) -> None:
    s = make_step(rules=[{"columns": ["v"], "strategy": "hash-sha256"}])
    (out,) = s.process(batch_of([change(before={"v": before}, after={"v": after})])).batch.events
    assert calls["hash-sha256"] == 2
    assert out.before is not None and out.after is not None
    expected = [sha256_hex(as_text(before)), sha256_hex(as_text(after))]
    assert [out.before["v"], out.after["v"]] == expected


def test_a_key_value_is_redacted_once_for_key_before_and_after(calls: Counter[str]) -> None:
    s = make_step(rules=[{"columns": ["id"], "strategy": "hmac-sha256"}])
    monkey_memo_off(s)
    event = change(key={"id": 5}, before={"id": 5, "x": 1}, after={"id": 5, "x": 2})
    (out,) = s.process(batch_of([event])).batch.events
    assert calls["hmac-sha256"] == 1
    assert out.key is not None and out.before is not None and out.after is not None
    assert out.key["id"] == out.before["id"] == out.after["id"] != 5


def monkey_memo_off(s: RedactStep) -> None:
    """Make every memo of ``s`` answer nothing, so only the per-event reuse can save calls."""
    for memo in s.policy.memos:
        memo.size = 0
        memo.clear()
        memo._reset = lambda: None  # type: ignore[method-assign]


# --- memos -----------------------------------------------------------------------------------


def test_batch_memo_is_bounded_and_cleared() -> None:
    seen: list[Any] = []

    def fn(value: Any) -> str:
        seen.append(value)
        return f"<{value}>"

    memo = BatchMemo(fn, size=3, probe=1000)
    assert [memo.apply(v) for v in ["a", "b", "a", "c", "d", "e", "a", "e"]] == [
        "<a>", "<b>", "<a>", "<c>", "<d>", "<e>", "<a>", "<e>",
    ]  # fmt: skip
    assert len(memo) == 3  # bounded: d and e were computed, not remembered
    assert seen == ["a", "b", "c", "d", "e", "e"]
    memo.clear()
    assert len(memo) == 0
    memo.apply("a")
    assert seen[-1] == "a"  # forgotten, so computed again


def test_batch_memo_remembers_only_exact_str_and_int() -> None:
    seen: list[Any] = []

    def fn(value: Any) -> str:
        seen.append(value)
        return as_text(value)

    memo = BatchMemo(fn, probe=1000)
    for value in [1, 1, True, True, 1.0, 1.0, Decimal("1"), Decimal("1"), "1", "1"]:
        memo.apply(value)
    assert seen == [1, True, True, 1.0, 1.0, Decimal("1"), Decimal("1"), "1"]
    assert len(memo) == 2


def test_batch_memo_switches_off_for_the_batch_when_it_does_not_pay() -> None:
    memo = BatchMemo(str, probe=16, min_hit_ratio=8)
    for i in range(16):
        memo.apply(i)  # no hits
    assert not memo.active and len(memo) == 0
    assert memo.apply(3) == "3"  # still correct, just not remembered
    memo.clear()
    assert memo.active and memo.lookups == 0 and memo.hits == 0
    for _ in range(16):
        memo.apply(1)
    assert memo.active and memo.hits == 15


def test_memos_last_one_batch(calls: Counter[str]) -> None:
    s = make_step(rules=[{"columns": ["email"], "strategy": "hash-sha256"}])
    events = [
        change(op=Op.CREATE, key={"id": i}, after={"id": i, "email": "ada@example.com"}, offset=i)
        for i in range(20)
    ]
    out = s.process(batch_of(events)).batch.events
    assert calls["hash-sha256"] == 1  # the batch repeats the value: computed once
    assert len({e.after["email"] for e in out if e.after}) == 1
    (memo,) = s.policy.memos
    assert len(memo) == 0  # emptied when the batch was done
    s.process(batch_of(events))
    assert calls["hash-sha256"] == 2  # the next batch computes it again


def test_memos_are_emptied_after_a_failed_batch_and_a_dead_letter() -> None:
    s = make_step(rules=[{"columns": ["email"], "strategy": "hash-sha256"}])
    (memo,) = s.policy.memos
    good = change(op=Op.CREATE, after={"email": "ada@example.com"})
    with pytest.raises(AttributeError):
        s.process(batch_of([good, "not an event"]))  # type: ignore[list-item]
    assert len(memo) == 0
    from cdcflow.core.step import event_dead_letter

    letter = event_dead_letter("decode", good, ValueError("x"))
    stored = s.redact_dead_letter(letter)
    assert stored.event is not None and stored.event["after"]["email"] != "ada@example.com"
    assert len(memo) == 0


def test_only_digests_are_memoised() -> None:
    assert MEMOISED <= DETERMINISTIC
    for strategy in ["redact", "mask", "hash-sha256", "hmac-sha256", "tokenize", "truncate"]:
        options = StrategyOptions.model_validate(
            {"strategy": strategy, **({"length": 24} if strategy == "truncate" else {})}
        )
        memos: list[BatchMemo] = []
        compile_value_fn(options, "rules[0]", SALT_SECRET, KEY_SECRET, memos)
        assert len(memos) == (1 if strategy in MEMOISED else 0), strategy


def test_non_deterministic_strategies_are_neither_memoised_nor_shared(
    calls: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No built-in strategy is non-deterministic: declare hash-sha256 one to check the wiring.
    monkeypatch.setattr(policy_module, "DETERMINISTIC", DETERMINISTIC - {"hash-sha256"})
    s = make_step(rules=[{"columns": ["email"], "strategy": "hash-sha256"}])
    assert s.policy.memos == []
    same = {"email": "ada@example.com"}
    events = [change(before=dict(same), after=dict(same), offset=i) for i in range(10)]
    s.process(batch_of(events))
    assert calls["hash-sha256"] == 20  # every value, in every image


# --- same output as a plain reference ---------------------------------------------------------

SALT_SECRET = RedactConfig.model_validate({"type": "redact", "salt": SALT, "rules": [
    {"columns": ["x"], "strategy": "hash-sha256"}]}).salt  # fmt: skip
KEY_SECRET = RedactConfig.model_validate({"type": "redact", "key": KEY, "rules": [
    {"columns": ["x"], "strategy": "hmac-sha256"}]}).key  # fmt: skip


def sha256_hex(text: str, salt: str = SALT) -> str:
    data = salt.encode() + b"\x00" + text.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


RANDOM_POLICY: dict[str, Any] = {
    "rules": [
        {"table": "shop.public.customers", "columns": ["email"], "strategy": "hash-sha256"},
        {"table": "shop.public.customers", "columns": ["id", "alias"],
         "strategy": "hmac-sha256"},
        {"table": "shop.public.customers", "columns": ["phone"], "strategy": "tokenize",
         "length": 17, "format": "t-{hex}-"},
        {"table": "shop.public.customers", "columns": ["name"], "strategy": "mask",
         "keep_first": 1, "keep_domain": True},
        {"table": "shop.public.customers", "columns": ["notes"], "strategy": "redact"},
        {"table": "shop.public.customers", "columns": ["secret"], "strategy": "drop"},
        {"table": "shop.public.customers", "columns": ["code"], "strategy": "truncate",
         "length": 3},
        {"table": "shop.public.customers", "columns": ["born"], "strategy": "generalize",
         "granularity": "year", "bucket": 10},
        {"table": "shop.public.customers", "columns": ["gone"], "strategy": "null"},
        {"table": "shop.public.customers", "columns": ["mail"], "strategy": "hash-sha256",
         "keep_domain": True, "salt": "another-salt-value-123"},
        {"table": "shop.public.tick*", "columns": ["em*"], "strategy": "hash-sha256"},
        {"table": "shop.public.tick*", "column_regex": "na.*", "strategy": "mask"},
        {"table": "shop.public.tick*", "columns": ["secret"], "strategy": "drop"},
        {"table": "shop.public.tick*", "columns": ["born"], "strategy": "generalize",
         "granularity": "month"},
    ],
    "tables": [
        {"table": "shop.public.tickets",
         "allow": ["id", "email", "name", "body", "tags", "born", "secret", "extra"],
         "scan": True, "detect": {"strategy": "redact", "replacement": "[{detector}]"}},
    ],
}  # fmt: skip
COLUMNS = {
    CUSTOMERS: ["id", "email", "alias", "phone", "name", "notes", "secret", "code", "born",
                "gone", "mail", "city", "extra"],
    TICKETS: ["id", "email", "name", "body", "tags", "born", "secret", "extra", "hidden"],
    OTHER: ["id", "email", "name"],
}  # fmt: skip
POOL: list[Any] = [
    None, None, 0, 1, 7, 42, True, False, 1.0, -0.0, 2.5, float("nan"),
    Decimal("1.0"), Decimal("1.00"), Decimal("-12.345"), "1", "42", "",
    "ada@example.com", "grace@example.org", "no domain@", "Ada Lovelace",
    "+44 20 7946 0018", "card 4111 1111 1111 1111 ok", "ssn 123-45-6789", "\ud800lone",
    "2024-06-17", "2024-06-17T10:30:00Z", "not a date", 4111111111111111,
    dt.date(2024, 6, 17), dt.datetime(2024, 6, 17, 10, 30),
    dt.datetime(2024, 6, 17, 10, 30, tzinfo=dt.UTC),
    ["ada@example.com", 1], {"ada@example.com": True, "x": "grace@example.org"},
    b"\x00\x01", "mail ada@example.com and grace@example.org",
]  # fmt: skip


def random_events(rng: random.Random, count: int) -> list[ChangeEvent]:
    events = []
    for offset in range(count):
        table = rng.choice([CUSTOMERS, CUSTOMERS, TICKETS, TICKETS, OTHER])

        def row(names: list[str] = COLUMNS[table]) -> dict[str, Any]:
            columns = rng.sample(names, rng.randint(1, len(names)))
            return {c: rng.choice(POOL) for c in columns}

        op = rng.choice([Op.CREATE, Op.UPDATE, Op.UPDATE, Op.DELETE, Op.READ])
        before = row() if op in (Op.UPDATE, Op.DELETE) else None
        after = None
        if op is not Op.DELETE:
            after = row()
            if before is not None and rng.random() < 0.7:  # mostly the same values
                after = {**before, **{c: v for c, v in after.items() if rng.random() < 0.3}}
        key = None
        if rng.random() < 0.8:
            image = after or before or {}
            names = [c for c in image if rng.random() < 0.3] or ["id"]
            key = {c: image.get(c, rng.choice(POOL[2:8])) for c in names}
        unavailable = tuple(rng.sample(COLUMNS[table], rng.randint(0, 2)))
        events.append(
            ChangeEvent(
                op=op, table=table, position=Position(str(table), 0, offset), key=key,
                before=before, after=after, unavailable=unavailable,
            )
        )  # fmt: skip
    return events


class Reference:
    """The redaction contract of docs/redaction.md, value by value, with no caching at all."""

    def __init__(self, config: RedactConfig) -> None:
        self.config = config
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def _secret(self, own: Any, default: Any) -> bytes:
        secret = own if own is not None else default
        return secret.get_secret_value().encode()  # type: ignore[no-any-return]

    def policy(self, table: str) -> TableConfig | None:
        return next(
            (t for t in self.config.tables
             if any(fnmatch.fnmatchcase(table, p) for p in t.table_patterns)),
            None,
        )  # fmt: skip

    def treatment(self, table: str, column: str) -> tuple[str, Any]:
        policy = self.policy(table)
        if policy is not None and not policy.allows(column):
            return "not-allowed", None
        for index, rule in enumerate(self.config.rules):
            if any(fnmatch.fnmatchcase(table, p) for p in rule.table_patterns) and (
                rule.matches_column(column)
            ):
                return "rule", (index, rule)
        if policy is not None and policy.scan:
            return "scan", policy
        return "keep", None

    def strategy(self, index: int, rule: RuleConfig) -> Any:
        name = rule.strategy
        if name == "drop":
            return DROP
        if name == "null":
            return lambda value: None
        if name == "generalize":
            return generalizer(rule.granularity, rule.bucket, f"rules[{index}]")
        if name in ("hash-sha256", "hmac-sha256", "tokenize"):
            secret = self._secret(
                rule.salt if name == "hash-sha256" else rule.key,
                self.config.salt if name == "hash-sha256" else self.config.key,
            )

            def digest(value: Any) -> str:
                data = as_text(value).encode("utf-8", "surrogatepass")
                if name == "hash-sha256":
                    return hashlib.sha256(secret + b"\x00" + data).hexdigest()
                if name == "hmac-sha256":
                    return hmac.new(secret, data, "sha256").hexdigest()
                prefix, _, suffix = (rule.format or "tok_{hex}").partition("{hex}")
                raw = hmac.new(secret, b"tokenize\x00" + data, "sha256").hexdigest()
                return prefix + raw[: rule.length or 24] + suffix

            return keep_email_domain(digest) if rule.keep_domain else digest
        return compile_text_fn(
            name,
            replacement=rule.replacement,
            keep_first=rule.keep_first,
            keep_last=rule.keep_last,
            mask_char=rule.mask_char,
            keep_domain=rule.keep_domain,
            length=rule.length,
        )

    def scanner(self, policy: TableConfig) -> Scanner:
        return Scanner(
            policy.detect, build_detectors(policy.detectors), self.config.salt, self.config.key
        )

    def image(self, table: str, row: dict[str, Any], is_key: bool) -> dict[str, Any]:
        """Strict redaction of one image, counting like the step (drops, ops, then scans)."""
        kinds = {c: self.treatment(table, c) for c in row}
        if is_key:
            unsafe = [
                c for c, (kind, found) in kinds.items()
                if kind == "not-allowed" or (kind == "rule" and found[1].strategy not in KEY_SAFE)
            ]  # fmt: skip
            if unsafe:
                raise RedactionError(f"unsafe key {unsafe}")
        out = dict(row)
        for column, (kind, found) in kinds.items():
            if kind == "not-allowed" or (kind == "rule" and found[1].strategy == "drop"):
                del out[column]
                self.counts[(table, column, "not-allowed" if kind != "rule" else "drop")] += 1
        for column, (kind, found) in kinds.items():
            if kind == "rule" and found[1].strategy != "drop" and row[column] is not None:
                try:
                    out[column] = self.strategy(*found)(row[column])
                except RedactionError:
                    raise
                except Exception as exc:
                    raise RedactionError(type(exc).__name__) from None
                self.counts[(table, column, found[1].strategy)] += 1
        for column, (kind, found) in kinds.items():
            if kind == "scan" and row[column] is not None:
                hits: list[str] = []
                scanner = self.scanner(found)
                new = scanner.scan(row[column], hits)
                if not hits:
                    continue
                if is_key and not scanner.key_safe:
                    raise RedactionError("detection in key")
                if new is DROP:
                    del out[column]
                else:
                    out[column] = new
                for name in hits:
                    self.counts[(table, column, f"detect:{name}")] += 1
        return out

    def lenient(self, table: str, row: Any) -> Any:
        if not isinstance(row, dict) or not row:
            return row
        kinds = {c: self.treatment(table, c) for c in row}
        out = dict(row)
        for column, (kind, found) in kinds.items():
            if kind == "not-allowed" or (kind == "rule" and found[1].strategy == "drop"):
                del out[column]
                self.counts[(table, column, "not-allowed" if kind != "rule" else "drop")] += 1
        for column, (kind, found) in kinds.items():
            if kind == "rule" and found[1].strategy != "drop" and row[column] is not None:
                try:
                    out[column] = self.strategy(*found)(row[column])
                except Exception:
                    out[column] = None
                self.counts[(table, column, found[1].strategy)] += 1
        for column, (kind, found) in kinds.items():
            if kind == "scan" and row[column] is not None:
                hits: list[str] = []
                try:
                    new = self.scanner(found).scan(row[column], hits)
                except Exception:
                    new = None
                if new is DROP:
                    del out[column]
                else:
                    out[column] = new
                for name in hits:
                    self.counts[(table, column, f"detect:{name}")] += 1
        return out

    def unavailable(self, table: str, names: tuple[str, ...]) -> tuple[str, ...]:
        def dropped(column: str) -> bool:
            kind, found = self.treatment(table, column)
            return kind == "not-allowed" or (kind == "rule" and found[1].strategy == "drop")

        return tuple(n for n in names if not dropped(n))

    def event(self, event: ChangeEvent) -> tuple[bool, ChangeEvent]:
        """``(ok, redacted)``: ok False means a dead letter carrying the lenient redaction."""
        table = str(event.table)
        if not any(
            any(fnmatch.fnmatchcase(table, p) for p in r.table_patterns)
            for r in self.config.rules
        ) and self.policy(table) is None:
            return True, event
        fields = {"unavailable": self.unavailable(table, event.unavailable)}
        try:
            key = self.image(table, event.key, True) if event.key else event.key
            before = self.image(table, event.before, False) if event.before else event.before
            after = self.image(table, event.after, False) if event.after else event.after
        except RedactionError:
            parts = ("key", "before", "after")
            lenient = {part: self.lenient(table, getattr(event, part)) for part in parts}
            return False, _replace(event, **lenient, **fields)
        return True, _replace(event, key=key, before=before, after=after, **fields)


def _replace(event: ChangeEvent, **changes: Any) -> ChangeEvent:
    import msgspec

    return msgspec.structs.replace(event, **changes)


def _exact(event: Any) -> tuple[bytes | None, str]:
    """Canonical JSON bytes (None for a lone surrogate, which JSON cannot carry) and a
    type-exact rendering of every field (``1`` vs ``True``, ``1.0`` vs ``1.00``)."""
    plain = event_dict(event) if isinstance(event, ChangeEvent) else event
    try:
        data: bytes | None = dumps(plain)
    except UnicodeEncodeError:
        data = None
    return data, repr(event)


def _seeds() -> Iterator[int]:
    yield from range(12)


@pytest.mark.parametrize("seed", list(_seeds()))
@pytest.mark.parametrize("batch_size", [1, 37, 400])
def test_random_batches_match_the_reference_byte_for_byte(seed: int, batch_size: int) -> None:
    rng = random.Random(seed)
    events = random_events(rng, 400)
    config = RedactConfig.model_validate(
        {"type": "redact", "key": KEY, "salt": SALT, **RANDOM_POLICY}
    )
    reference = Reference(config)
    expected = [reference.event(e) for e in events]
    s = RedactStep(config)
    s.setup()
    got: list[ChangeEvent] = []
    dead: dict[int, dict[str, Any]] = {}
    for start in range(0, len(events), batch_size):
        result = s.process(batch_of(events[start : start + batch_size]))
        got.extend(result.batch.events)
        for letter in result.dead_letters:
            assert letter.event is not None and letter.position is not None
            dead[letter.position.offset] = letter.event
    want_ok = [e for ok, e in expected if ok]
    assert [_exact(e) for e in got] == [_exact(e) for e in want_ok]
    want_dead = {e.position.offset: event_dict(e) for ok, e in expected if not ok}
    assert sorted(dead) == sorted(want_dead)
    for offset, letter_event in dead.items():
        assert _exact(letter_event) == _exact(want_dead[offset])
    assert any(not ok for ok, _ in expected) and sum(ok for ok, _ in expected) > 100
    counted: Counter[tuple[str, str, str]] = Counter()
    for _, labels, amount in s.metrics.drain():
        values = dict(labels)
        counted[(values["table"], values["column"], values["action"])] += amount
    assert counted == +reference.counts
    assert all(len(memo) == 0 for memo in s.policy.memos)
