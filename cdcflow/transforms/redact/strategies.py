"""Redaction strategies: compile a rule's options into a function over one value.

A compiled strategy is a plain function ``value -> value`` (or the :data:`DROP` marker, which
removes the column). ``None`` values are never passed to it: a null stays null. Non-string
values are turned into their canonical text first (``Decimal("10.20")`` -> ``"10.20"``, dates
ISO-8601, bytes base64) for the text strategies (mask, hash, hmac, tokenize, truncate, redact),
so the output of those is always a string.

Key safety
    A key column may only use a strategy that maps equal inputs to equal outputs **and**
    distinct inputs to distinct outputs, otherwise upserts stop matching or two rows collapse
    into one: ``hash-sha256``, ``hmac-sha256`` and ``tokenize`` (:data:`KEY_SAFE`).
    ``drop``/``null`` remove the key, ``redact``/``mask``/``truncate``/``generalize`` collide.

Secrets (salts, keys) are captured as bytes inside the compiled functions; they never appear
in a repr, an error message or a metric.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
from collections.abc import Callable
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Final, Literal

from cdcflow.schemas.canonical import to_text

_ONE_SHOT: Callable[[bytes, bytes, str], bytes]
try:  # the C one-shot HMAC behind hmac.digest, without its Python wrapper
    from _hashlib import hmac_digest as _ONE_SHOT
except ImportError:  # pragma: no cover - other Python builds
    _ONE_SHOT = hmac.digest

StrategyName = Literal[
    "drop",
    "null",
    "redact",
    "mask",
    "hash-sha256",
    "hmac-sha256",
    "tokenize",
    "truncate",
    "generalize",
]
Granularity = Literal["year", "month", "day", "hour"]

#: Strategies that keep an upsert key usable (deterministic and collision-resistant).
KEY_SAFE: Final = frozenset({"hash-sha256", "hmac-sha256", "tokenize"})
#: Strategies whose output is always a string (schemas are rewritten to ``string``).
TEXT_OUTPUT: Final = frozenset(
    {"redact", "mask", "hash-sha256", "hmac-sha256", "tokenize", "truncate"}
)
#: Strategies whose output depends on nothing but the value and the rule's options: the same
#: input always gives the same output. Only these may be memoised or computed once for a value
#: that an event carries in more than one image (``key``, ``before``, ``after``); a strategy
#: outside this set is called for every value. All built-in strategies are deterministic.
DETERMINISTIC: Final = frozenset(
    {
        "drop",
        "null",
        "redact",
        "mask",
        "hash-sha256",
        "hmac-sha256",
        "tokenize",
        "truncate",
        "generalize",
    }
)
#: Deterministic strategies whose results are memoised per batch: a digest costs more than the
#: memo's dictionary probe, the other strategies cost less.
MEMOISED: Final = frozenset({"hash-sha256", "hmac-sha256", "tokenize"})
#: Strategies that can replace just the detected part of a longer text.
SUBSTRING_CAPABLE: Final = frozenset({"redact", "mask", "hash-sha256", "hmac-sha256", "tokenize"})

DEFAULT_REPLACEMENT: Final = "[REDACTED]"
DEFAULT_TOKEN_FORMAT: Final = "tok_{hex}"  # noqa: S105 - a format, not a password
DEFAULT_TOKEN_LENGTH: Final = 24


class _Drop:
    """Marker: the column is removed from the row."""

    _instance: _Drop | None = None

    def __new__(cls) -> _Drop:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DROP"

    def __reduce__(self) -> str:
        return "DROP"


DROP: Final = _Drop()

ValueFn = Callable[[Any], Any]
#: A text strategy; it also accepts non-strings, which it reads as their canonical text.
TextFn = Callable[[Any], str]


class RedactionError(ValueError):
    """A value could not be redacted by its rule. The message never contains the value."""


def as_text(value: Any) -> str:
    """The canonical text of ``value`` (strings unchanged; integers as digits)."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return str(value)
    return to_text(value)


# --- text strategies -------------------------------------------------------------------------


def mask_text(keep_first: int = 0, keep_last: int = 0, mask_char: str = "*") -> TextFn:
    """Replace every character but the first ``keep_first`` and last ``keep_last``.

    A text no longer than ``keep_first + keep_last`` is masked entirely (showing all of a short
    value would reveal it). The length is preserved.
    """
    keep = keep_first + keep_last

    def mask(text: str) -> str:
        if type(text) is not str:
            text = as_text(text)
        size = len(text)
        if size <= keep:
            return mask_char * size
        return text[:keep_first] + mask_char * (size - keep) + text[size - keep_last :]

    return mask


def keep_email_domain(inner: TextFn) -> TextFn:
    """Apply ``inner`` to the local part of an e-mail address and keep ``@domain``.

    Texts that are not ``local@domain`` get ``inner`` applied to the whole text.
    """

    def apply(text: str) -> str:
        if type(text) is not str:
            text = as_text(text)
        local, at, domain = text.rpartition("@")
        if at and local and domain:
            return inner(local) + "@" + domain
        return inner(text)

    return apply


def salted_sha256(salt: bytes) -> TextFn:
    """Hex SHA-256 of ``salt || 0x00 || utf8(text)``."""
    base = hashlib.sha256(salt + b"\x00")

    def digest(text: str) -> str:
        if type(text) is not str:
            text = as_text(text)
        h = base.copy()
        try:  # the strict codec's fast path; the same bytes whenever it succeeds
            h.update(text.encode())
        except UnicodeEncodeError:  # lone surrogates
            h.update(text.encode("utf-8", "surrogatepass"))
        return h.hexdigest()

    return digest


def hmac_sha256(key: bytes) -> TextFn:
    """Hex HMAC-SHA256 of ``utf8(text)`` under ``key``."""
    one_shot = _ONE_SHOT

    def digest(text: str) -> str:
        if type(text) is not str:
            text = as_text(text)
        try:  # the strict codec's fast path; the same bytes whenever it succeeds
            data = text.encode()
        except UnicodeEncodeError:  # lone surrogates
            data = text.encode("utf-8", "surrogatepass")
        return one_shot(key, data, "sha256").hex()

    return digest


def tokenizer(key: bytes, fmt: str = DEFAULT_TOKEN_FORMAT, length: int = 24) -> TextFn:
    """Deterministic keyed tokens: ``fmt`` with ``{hex}`` replaced by ``length`` hex digits.

    The digits are an HMAC-SHA256 under ``key`` of a tokenize-specific message, so a token and
    an ``hmac-sha256`` digest of the same value under the same key are unrelated.
    """
    prefix, _, suffix = fmt.partition("{hex}")
    one_shot = _ONE_SHOT
    half = length // 2
    odd = length % 2 == 1

    def token(text: str) -> str:
        if type(text) is not str:
            text = as_text(text)
        try:  # the strict codec's fast path; the same bytes whenever it succeeds
            data = text.encode()
        except UnicodeEncodeError:  # lone surrogates
            data = text.encode("utf-8", "surrogatepass")
        raw = one_shot(key, b"tokenize\x00" + data, "sha256")
        digits = raw.hex()[:length] if odd else raw[:half].hex()
        return prefix + digits + suffix

    return token


def truncate_text(length: int) -> TextFn:
    """Keep the first ``length`` characters."""

    def truncate(text: str) -> str:
        if type(text) is not str:
            text = as_text(text)
        return text[:length]

    return truncate


def constant(replacement: str) -> TextFn:
    """Always ``replacement``."""

    def redact(_text: str) -> str:
        return replacement

    return redact


# --- generalize ------------------------------------------------------------------------------


def _truncate_datetime(value: dt.datetime, granularity: Granularity) -> dt.datetime:
    if granularity == "year":
        return value.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    if granularity == "month":
        return value.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if granularity == "day":
        return value.replace(hour=0, minute=0, second=0, microsecond=0)
    return value.replace(minute=0, second=0, microsecond=0)


def _truncate_date(value: dt.date, granularity: Granularity) -> dt.date:
    if granularity == "year":
        return value.replace(month=1, day=1)
    if granularity == "month":
        return value.replace(day=1)
    return value


def generalizer(
    granularity: Granularity | None, bucket: float | None, where: str
) -> ValueFn:
    """Coarsen a value, keeping its type.

    Dates and datetimes (also ISO-8601 strings of them) are truncated to the start of their
    ``granularity`` (``2024-06-17`` -> ``2024-01-01`` for ``year``, ``2024-06-01`` for
    ``month``); numbers are floored to a multiple of ``bucket`` (``37`` -> ``30`` with bucket
    10). Any other value raises :class:`RedactionError` (the event goes to the dead letters).
    ``where`` names the rule in error messages.
    """
    decimal_bucket = Decimal(str(bucket)) if bucket is not None else None

    def fail(value: Any, wanted: str) -> RedactionError:
        return RedactionError(
            f"{where}: generalize cannot handle a {type(value).__name__} value here "
            f"(it needs {wanted})"
        )

    def apply(value: Any) -> Any:
        if isinstance(value, bool):
            raise fail(value, "a date, a datetime or a number")
        if isinstance(value, dt.datetime):
            if granularity is None:
                raise fail(value, "granularity to be set")
            return _truncate_datetime(value, granularity)
        if isinstance(value, dt.date):
            if granularity is None:
                raise fail(value, "granularity to be set")
            return _truncate_date(value, granularity)
        if isinstance(value, (int, float, Decimal)):
            if bucket is None or decimal_bucket is None:
                raise fail(value, "bucket to be set")
            if isinstance(value, int):
                if float(bucket).is_integer():
                    step = int(bucket)
                    return value - value % step
                return math.floor(value / bucket) * bucket
            if isinstance(value, float):
                if not math.isfinite(value):
                    raise fail(value, "a finite number")
                return math.floor(value / bucket) * bucket
            if not value.is_finite():
                raise fail(value, "a finite number")
            floored = (value / decimal_bucket).to_integral_value(rounding=ROUND_FLOOR)
            return (floored * decimal_bucket).quantize(value)  # keep the value's scale
        if isinstance(value, str) and granularity is not None:
            try:
                if len(value) == 10:
                    return _truncate_date(dt.date.fromisoformat(value), granularity).isoformat()
                parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise fail(value, "an ISO-8601 date or datetime") from None
            out = _truncate_datetime(parsed, granularity).isoformat()
            return out.replace("+00:00", "Z") if value.endswith("Z") else out
        raise fail(value, "a date, a datetime or a number")

    return apply


# --- compile ---------------------------------------------------------------------------------


def compile_text_fn(
    strategy: StrategyName,
    *,
    replacement: str | None = None,
    keep_first: int = 0,
    keep_last: int = 0,
    mask_char: str = "*",
    keep_domain: bool = False,
    length: int | None = None,
    salt: bytes | None = None,
    key: bytes | None = None,
    token_format: str | None = None,
) -> TextFn:
    """Compile a text strategy (one of :data:`TEXT_OUTPUT`) into ``str -> str``."""
    fn: TextFn
    if strategy == "redact":
        fn = constant(DEFAULT_REPLACEMENT if replacement is None else replacement)
    elif strategy == "mask":
        fn = mask_text(keep_first, keep_last, mask_char)
    elif strategy == "hash-sha256":
        if salt is None:
            raise ValueError("hash-sha256 needs a salt")
        fn = salted_sha256(salt)
    elif strategy == "hmac-sha256":
        if key is None:
            raise ValueError("hmac-sha256 needs a key")
        fn = hmac_sha256(key)
    elif strategy == "tokenize":
        if key is None:
            raise ValueError("tokenize needs a key")
        fn = tokenizer(
            key, token_format or DEFAULT_TOKEN_FORMAT, length or DEFAULT_TOKEN_LENGTH
        )
    elif strategy == "truncate":
        if length is None:
            raise ValueError("truncate needs a length")
        fn = truncate_text(length)
    else:
        raise ValueError(f"{strategy} is not a text strategy")
    if keep_domain and strategy != "truncate":
        fn = keep_email_domain(fn)
    return fn
