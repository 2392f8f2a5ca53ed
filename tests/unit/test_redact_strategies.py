"""Each strategy on its own: output, determinism, types and failure without leaking values."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from cdcflow.transforms.redact.config import RuleConfig
from cdcflow.transforms.redact.policy import compile_value_fn
from cdcflow.transforms.redact.strategies import (
    DROP,
    KEY_SAFE,
    RedactionError,
    generalizer,
    keep_email_domain,
    mask_text,
)

KEY = "k" * 32
SALT = "s" * 32


def fn(strategy: str, **options: Any) -> Any:
    rule = RuleConfig(columns=["c"], strategy=strategy, **options)  # type: ignore[arg-type]
    return compile_value_fn(rule, "rules[0]", SecretStr(SALT), SecretStr(KEY))


def test_drop_returns_the_drop_marker() -> None:
    assert fn("drop") is DROP


def test_null_replaces_any_value() -> None:
    assert fn("null")("ada@example.com") is None
    assert fn("null")(42) is None


def test_redact_uses_the_default_or_given_constant() -> None:
    assert fn("redact")("secret") == "[REDACTED]"
    assert fn("redact", replacement="***")(123) == "***"


def test_redact_keep_domain() -> None:
    assert fn("redact", keep_domain=True)("ada@example.com") == "[REDACTED]@example.com"


@pytest.mark.parametrize(
    ("keep_first", "keep_last", "value", "expected"),
    [
        (0, 4, "4111111111111111", "************1111"),
        (2, 0, "Lovelace", "Lo******"),
        (1, 1, "abcdef", "a****f"),
        (3, 3, "short", "*****"),  # too short to show anything
        (0, 0, "", ""),
        (0, 2, 12345, "***45"),
    ],
)
def test_mask_keeps_first_and_last(
    keep_first: int, keep_last: int, value: Any, expected: str
) -> None:
    assert fn("mask", keep_first=keep_first, keep_last=keep_last)(value) == expected


def test_mask_char_and_keep_domain() -> None:
    masked = fn("mask", keep_first=1, keep_domain=True, mask_char="#")("grace.hopper@example.org")
    assert masked == "g###########@example.org"


def test_keep_domain_on_a_value_that_is_not_an_email_masks_everything() -> None:
    assert keep_email_domain(mask_text(0, 0))("no-at-sign") == "**********"
    assert keep_email_domain(mask_text(0, 0))("@example.org") == "************"


def test_hash_sha256_is_salted_hex() -> None:
    digest = fn("hash-sha256")("ada@example.com")
    assert digest == hashlib.sha256(SALT.encode() + b"\x00" + b"ada@example.com").hexdigest()
    assert digest != hashlib.sha256(b"ada@example.com").hexdigest()
    other = fn("hash-sha256", salt="t" * 32)("ada@example.com")
    assert other != digest


def test_hmac_sha256_is_keyed_hex() -> None:
    digest = fn("hmac-sha256")("ada@example.com")
    assert digest == hmac.new(KEY.encode(), b"ada@example.com", "sha256").hexdigest()
    assert fn("hmac-sha256", key="x" * 32)("ada@example.com") != digest


def test_tokenize_format_length_and_determinism() -> None:
    token = fn("tokenize")("+44 20 7946 0018")
    assert token.startswith("tok_") and len(token) == 4 + 24
    assert int(token[4:], 16) >= 0
    assert fn("tokenize")("+44 20 7946 0018") == token
    assert fn("tokenize")("+44 20 7946 0019") != token
    custom = fn("tokenize", format="<{hex}>", length=16)("x")
    assert custom.startswith("<") and custom.endswith(">") and len(custom) == 18
    # A token is not the hmac digest of the same value under the same key.
    assert token[4:] not in fn("hmac-sha256")("+44 20 7946 0018")


def test_text_strategies_use_canonical_text_for_other_types() -> None:
    assert fn("hmac-sha256")(Decimal("10.20")) == fn("hmac-sha256")("10.20")
    assert fn("tokenize")(42) == fn("tokenize")("42")
    assert fn("truncate", length=4)(dt.date(2024, 6, 17)) == "2024"


def test_truncate_keeps_the_first_characters() -> None:
    assert fn("truncate", length=3)("abcdef") == "abc"
    assert fn("truncate", length=10)("abc") == "abc"


@pytest.mark.parametrize(
    ("granularity", "value", "expected"),
    [
        ("year", dt.date(1954, 8, 31), dt.date(1954, 1, 1)),
        ("month", dt.date(1954, 8, 31), dt.date(1954, 8, 1)),
        ("month", dt.datetime(2024, 6, 17, 10, 30, 5, 123), dt.datetime(2024, 6, 1)),
        (
            "day",
            dt.datetime(2024, 6, 17, 10, 30, tzinfo=dt.UTC),
            dt.datetime(2024, 6, 17, tzinfo=dt.UTC),
        ),
        ("hour", dt.datetime(2024, 6, 17, 10, 30, 5), dt.datetime(2024, 6, 17, 10)),
        ("year", "2024-06-17", "2024-01-01"),
        ("month", "2024-06-17T10:30:00Z", "2024-06-01T00:00:00Z"),
        ("month", "2024-06-17T10:30:00+02:00", "2024-06-01T00:00:00+02:00"),
    ],
)
def test_generalize_dates(granularity: str, value: Any, expected: Any) -> None:
    assert fn("generalize", granularity=granularity)(value) == expected


@pytest.mark.parametrize(
    ("bucket", "value", "expected"),
    [
        (10, 37, 30),
        (10, -3, -10),
        (1000, 123456, 123000),
        (0.5, 2.7, 2.5),
        (10, Decimal("37.50"), Decimal("30.00")),
        (0.25, Decimal("1.30"), Decimal("1.25")),
        (10, 3.0, 0.0),
    ],
)
def test_generalize_numbers_to_buckets(bucket: float, value: Any, expected: Any) -> None:
    out = fn("generalize", bucket=bucket)(value)
    assert out == expected
    assert str(out) == str(expected)
    assert type(out) is type(value)


@pytest.mark.parametrize(
    ("options", "value"),
    [
        ({"granularity": "year"}, "not a date"),
        ({"granularity": "year"}, 42),  # no bucket for numbers
        ({"bucket": 10}, dt.date(2024, 1, 1)),  # no granularity for dates
        ({"bucket": 10}, True),
        ({"bucket": 10}, float("nan")),
        ({"bucket": 10}, {"a": 1}),
    ],
)
def test_generalize_failures_name_the_rule_but_not_the_value(
    options: dict[str, Any], value: Any
) -> None:
    with pytest.raises(RedactionError) as info:
        fn("generalize", **options)(value)
    assert "rules[0]" in str(info.value)
    assert "not a date" not in str(info.value)


def test_generalizer_without_options_rejects_everything() -> None:
    with pytest.raises(RedactionError):
        generalizer(None, None, "x")(1)


def test_key_safe_strategies_are_exactly_the_keyed_deterministic_ones() -> None:
    assert frozenset({"hash-sha256", "hmac-sha256", "tokenize"}) == KEY_SAFE


def test_drop_marker_pickles_to_itself() -> None:
    import pickle

    assert pickle.loads(pickle.dumps(DROP)) is DROP
