"""``type: redact`` configuration: validation, key safety and secrets that never leak."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cdcflow.errors import ConfigError
from cdcflow.pipelines.config import PipelineConfig, parse_pipeline
from cdcflow.transforms.redact import RedactConfig, RedactStep

KEY = "Zq8Wv1Xk4Lr7Tn2Pm5Hs0Jd3"  # 24 characters, used as a "secret" that must never leak
SALT = "Ys6Ub9Ie2Oa5Qw8Rt1Fg4Hj7"


def pipeline(transform: str, env: dict[str, str] | None = None) -> PipelineConfig:
    text = (
        "pipeline: p\n"
        "source: {type: file, path: in.jsonl}\n"
        "transforms:\n" + transform + "sinks:\n  - {name: n, type: 'null'}\n"
    )
    return parse_pipeline(text, Path("/pipelines/p.yaml"), env=env or {})


def problems(transform: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        pipeline(transform, env)
    return str(info.value)


def model(**data: Any) -> RedactConfig:
    return RedactConfig.model_validate({"type": "redact", **data})


FULL = """\
  - type: redact
    key: ${REDACT_KEY}
    salt: ${REDACT_SALT}
    raw_dead_letters: drop
    tables:
      - table: shop.public.customers
        allow: [id, email, "phone*"]
        key_columns: [id]
        scan: true
        detectors: [email, card]
        detect: {strategy: tokenize, scope: value}
    rules:
      - {table: "shop.public.*", columns: [email], strategy: mask, keep_first: 1, keep_domain: true}
      - {table: [a.b.c, "d.*"], column_regex: ".*_ip", strategy: hash-sha256}
      - {columns: ["*token*"], strategy: redact, replacement: "<gone>"}
      - {columns: [notes], strategy: truncate, length: 10}
      - {columns: [born], strategy: generalize, granularity: year}
      - {columns: [salary], strategy: generalize, bucket: 1000}
      - {columns: [id], strategy: tokenize, format: "cust_{hex}", length: 32}
      - {columns: [ssn], strategy: drop}
      - {columns: [fax], strategy: "null"}
      - {columns: [name], strategy: hmac-sha256}
"""


def test_a_full_configuration_validates_and_builds_a_step() -> None:
    config = pipeline(FULL, {"REDACT_KEY": KEY, "REDACT_SALT": SALT})
    (redact,) = config.transforms
    assert isinstance(redact, RedactConfig)
    assert len(redact.rules) == 10
    assert redact.tables[0].detect.whole_value
    step = redact.build(config.context)
    assert isinstance(step, RedactStep)
    assert step.name == "redact"


def test_a_missing_secret_variable_names_the_variable() -> None:
    message = problems(FULL, {"REDACT_SALT": SALT})
    assert "REDACT_KEY is not set" in message


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("{columns: [a], strategy: mask, length: 3}", "length do not apply to strategy mask"),
        ("{columns: [a], strategy: truncate}", "truncate needs length"),
        ("{columns: [a], strategy: generalize}", "generalize needs granularity"),
        ("{columns: [a], strategy: tokenize, format: tok}", "{hex} exactly once"),
        ("{columns: [a], strategy: tokenize, length: 8}", "between 16 and 64"),
        ("{columns: [a], strategy: shred}", "Input should be 'drop'"),
        ("{strategy: mask}", "a rule needs columns"),
        ("{columns: [a], column_regex: '(', strategy: mask}", "not a valid regular expression"),
        ("{table: 'x[', columns: [a], strategy: mask}", "unclosed '['"),
        ("{columns: [a], strategy: mask, mask_char: '**'}", "at most 1 character"),
        ("{columns: [a], strategy: hash-sha256}", "hash-sha256 needs a salt"),
        ("{columns: [a], strategy: hmac-sha256}", "hmac-sha256 needs a key"),
        ("{columns: [a], strategy: tokenize}", "tokenize needs a key"),
    ],
)
def test_bad_rules_are_reported_with_their_location(rule: str, expected: str) -> None:
    message = problems(f"  - type: redact\n    rules:\n      - {rule}\n")
    assert expected in message
    assert "p.yaml:" in message


def test_an_empty_redact_step_is_an_error() -> None:
    assert "needs rules and/or tables" in problems("  - type: redact\n")


def test_unknown_keys_are_errors() -> None:
    message = problems(
        "  - type: redact\n    rules:\n      - {columns: [a], strategy: null, colour: red}\n"
    )
    assert "colour" in message


def test_non_key_safe_strategy_on_a_declared_key_column_is_rejected() -> None:
    message = problems(
        "  - type: redact\n"
        "    tables:\n"
        "      - {table: shop.public.customers, key_columns: [email]}\n"
        "    rules:\n"
        "      - {table: 'shop.public.*', columns: ['e*'], strategy: mask, keep_last: 2}\n"
    )
    assert "strategy mask is not safe on key column(s) ['email']" in message
    assert "hash-sha256, hmac-sha256, tokenize" in message


@pytest.mark.parametrize("strategy", ["drop", "null", "redact", "truncate, length: 3"])
def test_every_non_key_safe_strategy_is_rejected_on_keys(strategy: str) -> None:
    message = problems(
        "  - type: redact\n"
        "    tables: [{table: t, key_columns: [id]}]\n"
        f"    rules: [{{table: t, columns: [id], strategy: {strategy}}}]\n"
    )
    assert "not safe on key column" in message


def test_key_safe_strategies_are_accepted_on_keys() -> None:
    for strategy in ("hash-sha256", "hmac-sha256", "tokenize"):
        config = model(
            key=KEY,
            salt=SALT,
            tables=[{"table": "t", "key_columns": ["id"]}],
            rules=[{"table": "t", "columns": ["id"], "strategy": strategy}],
        )
        assert config.rules[0].key_safe


def test_key_columns_must_be_on_the_allow_list() -> None:
    message = problems(
        "  - type: redact\n    tables: [{table: t, allow: [name], key_columns: [id]}]\n"
    )
    assert "key column(s) ['id'] are not on the allow-list" in message


def test_detect_strategy_must_work_on_detected_values() -> None:
    message = problems(
        "  - type: redact\n"
        "    tables: [{table: t, scan: true, detect: {strategy: truncate, length: 2}}]\n"
    )
    assert "cannot be used for detected values" in message


def test_unknown_detector_is_an_error() -> None:
    message = problems("  - type: redact\n    tables: [{table: t, scan: true, detectors: [dna]}]\n")
    assert "detectors" in message and "'email'" in message


# --- secrets ---------------------------------------------------------------------------------


def test_secrets_are_not_in_reprs() -> None:
    config = model(
        key=KEY, salt=SALT, rules=[{"columns": ["a"], "strategy": "hmac-sha256", "key": KEY}]
    )
    step = RedactStep(config)
    for text in (
        repr(config),
        str(config),
        repr(step),
        repr(config.rules[0]),
        config.model_dump_json(),
    ):
        assert KEY not in text and SALT not in text


def test_a_short_secret_is_rejected_without_echoing_it() -> None:
    short = "hunter2hunter"
    message = problems(
        f"  - type: redact\n    key: {short}\n    rules: [{{columns: [a], strategy: tokenize}}]\n"
    )
    assert "key must be at least 16 characters" in message
    assert short not in message
    with pytest.raises(ValidationError) as info:
        model(key=short, rules=[{"columns": ["a"], "strategy": "tokenize"}])
    assert short not in str(info.value)
    rule_message = problems(
        f"  - type: redact\n    rules: [{{columns: [a], strategy: tokenize, key: {short}}}]\n"
    )
    assert short not in rule_message


def test_a_secret_written_as_a_number_is_read_as_text_and_not_echoed() -> None:
    number = "12345678901234567890"
    config = model(salt=int(number), rules=[{"columns": ["a"], "strategy": "hash-sha256"}])
    assert config.salt is not None and config.salt.get_secret_value() == number
    message = problems(
        "  - type: redact\n    key: 1234\n    rules: [{columns: [a], strategy: tokenize}]\n"
    )
    assert "1234" not in message


def test_a_secret_of_the_wrong_shape_is_not_echoed() -> None:
    message = problems(
        f"  - type: redact\n    key: [{KEY}]\n    rules: [{{columns: [a], strategy: tokenize}}]\n"
    )
    assert "key" in message
    assert KEY not in message


def test_model_errors_hide_the_input_which_holds_secrets() -> None:
    with pytest.raises(ValidationError) as info:
        model(key=KEY, rules=[{"columns": ["a"], "strategy": "mask", "length": 2}])
    assert KEY not in str(info.value)
