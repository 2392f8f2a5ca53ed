"""The ``type: redact`` configuration model (validated at load time, built into a step).

Shape::

    - type: redact
      key: ${REDACT_KEY}            # default key for hmac-sha256 / tokenize (>= 16 characters)
      salt: ${REDACT_SALT}          # default salt for hash-sha256 (>= 16 characters)
      raw_dead_letters: keep        # keep | drop: original bytes of undecodable records
      tables:                       # per-table policies (the first matching entry applies)
        - table: shop.public.customers
          allow: [id, email, phone] # fail closed: every other column is dropped
          key_columns: [id]         # declared key columns, checked against the rules
          scan: true                # run content detectors over the remaining columns
          detectors: [email, phone] # default: every detector
          detect: {strategy: tokenize}
      rules:                        # column rules (the first matching rule applies)
        - table: "shop.public.*"
          columns: [email]
          strategy: mask
          keep_first: 1
          keep_domain: true

Errors never echo a secret: the models hide inputs in their messages, secret fields accept
any scalar (a YAML number is read as text) and their length is checked at the model level.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from cdcflow.core.components import (
    BuildContext,
    TransformConfig,
    check_table_patterns,
)
from cdcflow.transforms.redact.detectors import ALL_DETECTORS, DetectorName
from cdcflow.transforms.redact.strategies import (
    KEY_SAFE,
    SUBSTRING_CAPABLE,
    Granularity,
    StrategyName,
)

MIN_SECRET_LENGTH = 16


def _secret_text(value: Any) -> Any:
    """Read YAML scalars (numbers, booleans) as text so a typo never echoes the secret."""
    if isinstance(value, (bool, int, float)):
        return str(value)
    return value


Secret = Annotated[SecretStr, BeforeValidator(_secret_text)]

#: Options each strategy accepts (besides ``strategy``).
_OPTIONS: dict[str, frozenset[str]] = {
    "drop": frozenset(),
    "null": frozenset(),
    "redact": frozenset({"replacement", "keep_domain"}),
    "mask": frozenset({"keep_first", "keep_last", "mask_char", "keep_domain"}),
    "hash-sha256": frozenset({"salt", "keep_domain"}),
    "hmac-sha256": frozenset({"key", "keep_domain"}),
    "tokenize": frozenset({"key", "format", "length", "keep_domain"}),
    "truncate": frozenset({"length"}),
    "generalize": frozenset({"granularity", "bucket"}),
}
_STRATEGY_FIELDS = frozenset(
    {
        "replacement",
        "keep_first",
        "keep_last",
        "mask_char",
        "keep_domain",
        "length",
        "granularity",
        "bucket",
        "salt",
        "key",
        "format",
    }
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
    #: Where unknown-key errors point (cdcflow.pipelines.config).
    docs_page: ClassVar[str] = "docs/redaction.md"


def _check_secret_lengths(model: BaseModel) -> None:
    """Raise ValueError when the model's ``salt`` or ``key`` is too short (never echoing it)."""
    for name in ("salt", "key"):
        secret = getattr(model, name)
        if secret is not None and len(secret.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"{name} must be at least {MIN_SECRET_LENGTH} characters "
                "(use a random value from the environment, e.g. ${REDACT_KEY})"
            )


def _patterns(table: str | list[str]) -> tuple[str, ...]:
    """A ``table`` setting (one glob or a list) as a tuple of globs."""
    return (table,) if isinstance(table, str) else tuple(table)


def _matches_any(column: str, patterns: list[str]) -> bool:
    """True when ``column`` equals or matches one of the names or globs in ``patterns``."""
    return any(p == column or fnmatch.fnmatchcase(column, p) for p in patterns)


class StrategyOptions(_Model):
    """A strategy and its options; options that do not apply to the strategy are errors."""

    strategy: StrategyName
    replacement: str | None = None
    keep_first: int = Field(default=0, ge=0, le=1000)
    keep_last: int = Field(default=0, ge=0, le=1000)
    mask_char: str = Field(default="*", min_length=1, max_length=1)
    keep_domain: bool = False
    length: int | None = Field(default=None, ge=0, le=1_000_000)
    granularity: Granularity | None = None
    bucket: float | None = Field(default=None, gt=0)
    salt: Secret | None = None
    key: Secret | None = None
    format: str | None = None

    @field_validator("strategy", mode="before")
    @classmethod
    def _yaml_null(cls, value: Any) -> Any:
        """``strategy: null`` in YAML is the null strategy, not a missing value."""
        return "null" if value is None else value

    @model_validator(mode="after")
    def _check_options(self) -> StrategyOptions:
        allowed = _OPTIONS[self.strategy]
        stray = sorted((self.model_fields_set & _STRATEGY_FIELDS) - allowed)
        if stray:
            takes = ", ".join(sorted(allowed)) or "no options"
            raise ValueError(
                f"option(s) {', '.join(stray)} do not apply to strategy {self.strategy} "
                f"(it takes: {takes})"
            )
        if self.strategy == "truncate" and self.length is None:
            raise ValueError("strategy truncate needs length (the number of characters kept)")
        if self.strategy == "generalize" and self.granularity is None and self.bucket is None:
            raise ValueError(
                "strategy generalize needs granularity (year, month, day or hour, for dates) "
                "and/or bucket (a number, for numeric values)"
            )
        if self.strategy == "tokenize":
            if self.format is not None and self.format.count("{hex}") != 1:
                raise ValueError("tokenize format must contain {hex} exactly once, e.g. tok_{hex}")
            if self.length is not None and not 16 <= self.length <= 64:
                raise ValueError(
                    "tokenize length is the number of hex digits: between 16 and 64 "
                    "(shorter tokens collide, which breaks keys)"
                )
        _check_secret_lengths(self)
        return self

    @property
    def key_safe(self) -> bool:
        """True when the strategy keeps keys usable (deterministic, collision-resistant)."""
        return self.strategy in KEY_SAFE


def _check_regex(pattern: str | None) -> str | None:
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"column_regex is not a valid regular expression: {exc}") from None
    return pattern


class RuleConfig(StrategyOptions):
    """A column rule: which columns of which tables, and the strategy applied to them.

    ``columns`` are names or globs (``*name*``); ``column_regex`` a regular expression matched
    against the whole column name. Rules apply to ``before``, ``after`` and ``key``.
    """

    table: str | list[str] = "*"
    columns: list[str] = []
    column_regex: Annotated[str | None, BeforeValidator(_check_regex)] = None

    @model_validator(mode="after")
    def _check_target(self) -> RuleConfig:
        check_table_patterns(self.table)
        if not self.columns and self.column_regex is None:
            raise ValueError("a rule needs columns (names or globs) and/or column_regex")
        if any(not c for c in self.columns):
            raise ValueError("column names must not be empty")
        return self

    @property
    def table_patterns(self) -> tuple[str, ...]:
        """The rule's table globs."""
        return _patterns(self.table)

    def matches_column(self, column: str) -> bool:
        """True when ``column`` is one of the rule's columns."""
        if _matches_any(column, self.columns):
            return True
        return self.column_regex is not None and re.fullmatch(self.column_regex, column) is not None


class DetectOptions(StrategyOptions):
    """What to do with detected values.

    ``scope: match`` replaces only the detected text inside a longer value; ``scope: value``
    applies the strategy to the whole value. ``drop`` and ``null`` always act on the value.
    In ``replacement``, ``{detector}`` is replaced by the detector's name in upper case.
    """

    strategy: StrategyName = "redact"
    scope: Literal["match", "value"] = "match"

    @model_validator(mode="after")
    def _check_detect(self) -> DetectOptions:
        if self.strategy in ("truncate", "generalize"):
            raise ValueError(
                f"strategy {self.strategy} cannot be used for detected values; "
                "use redact, mask, hash-sha256, hmac-sha256, tokenize, null or drop"
            )
        return self

    @property
    def whole_value(self) -> bool:
        """True when a detection replaces the whole value."""
        return self.scope == "value" or self.strategy not in SUBSTRING_CAPABLE


class TableConfig(_Model):
    """A per-table policy: allow-list, declared key columns and content scanning."""

    table: str | list[str]
    allow: list[str] | None = None
    key_columns: list[str] = []
    scan: bool = False
    detectors: list[DetectorName] = list(ALL_DETECTORS)
    detect: DetectOptions = DetectOptions()

    @model_validator(mode="after")
    def _check_table(self) -> TableConfig:
        check_table_patterns(self.table)
        if self.allow is not None:
            missing = [c for c in self.key_columns if not _matches_any(c, self.allow)]
            if missing:
                raise ValueError(
                    f"key column(s) {missing} are not on the allow-list: a key column that is "
                    "dropped breaks upserts; add them to allow (with a key-safe rule if they "
                    "hold personal data)"
                )
        if not self.detectors:
            raise ValueError("detectors must name at least one detector (or leave it out)")
        return self

    @property
    def table_patterns(self) -> tuple[str, ...]:
        """The policy's table globs."""
        return _patterns(self.table)

    def allows(self, column: str) -> bool:
        """True when ``column`` survives the allow-list (always, without one)."""
        return self.allow is None or _matches_any(column, self.allow)


def _tables_overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """A cheap, conservative test that two sets of table globs can name the same table."""
    return any(
        x == y or fnmatch.fnmatchcase(x, y) or fnmatch.fnmatchcase(y, x) for x in a for y in b
    )


class RedactConfig(TransformConfig):
    """``type: redact`` — column rules, per-table allow-lists and content detectors.

    See docs/redaction.md for the behaviour; the class docstring of the module shows the shape.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
    docs_page: ClassVar[str] = "docs/redaction.md"

    type: Literal["redact"]
    name: str = Field(default="redact", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    salt: Secret | None = None
    key: Secret | None = None
    rules: list[RuleConfig] = []
    tables: list[TableConfig] = []
    raw_dead_letters: Literal["keep", "drop"] = "keep"
    scan_dead_letter_reasons: bool = True
    #: Every rule and ``tables:`` pattern of this step must match a table the source names;
    #: otherwise validate and run fail (exit 2) before any data flows.
    require_match: bool = False

    @model_validator(mode="after")
    def _check_policy(self) -> RedactConfig:
        _check_secret_lengths(self)
        if not self.rules and not self.tables:
            raise ValueError("a redact step needs rules and/or tables")
        problems: list[str] = []
        for index, rule in enumerate(self.rules):
            problems += _secret_problems(f"rules[{index}]", rule, self.salt, self.key)
            if rule.key_safe:
                continue
            for table in self.tables:
                if not _tables_overlap(rule.table_patterns, table.table_patterns):
                    continue
                hit = [c for c in table.key_columns if rule.matches_column(c)]
                if hit:
                    problems.append(
                        f"rules[{index}]: strategy {rule.strategy} is not safe on key column(s) "
                        f"{hit} of {table.table!r}: a masked key must stay the same for the same "
                        f"input and distinct for distinct inputs; use one of "
                        f"{', '.join(sorted(KEY_SAFE))}"
                    )
        for index, table in enumerate(self.tables):
            if table.scan:
                problems += _secret_problems(
                    f"tables[{index}].detect", table.detect, self.salt, self.key
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def build(self, context: BuildContext) -> Any:
        """Build the :class:`~cdcflow.transforms.redact.step.RedactStep`."""
        from cdcflow.transforms.redact.step import RedactStep

        return RedactStep(self)


def _secret_problems(
    where: str, options: StrategyOptions, salt: SecretStr | None, key: SecretStr | None
) -> list[str]:
    if options.strategy == "hash-sha256" and options.salt is None and salt is None:
        return [
            f"{where}: strategy hash-sha256 needs a salt: set salt on the rule or on the "
            "redact step, e.g. salt: ${REDACT_SALT}"
        ]
    if options.strategy in ("hmac-sha256", "tokenize") and options.key is None and key is None:
        return [
            f"{where}: strategy {options.strategy} needs a key: set key on the rule or on the "
            "redact step, e.g. key: ${REDACT_KEY}"
        ]
    return []
