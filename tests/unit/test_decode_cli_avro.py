"""``cdcflow decode --format debezium-avro``: usage errors and line decoding (no servers)."""

from __future__ import annotations

import base64

import pytest
from click.testing import CliRunner, Result

from cdcflow.cli.app import main
from cdcflow.cli.decode_avro import line_decoder
from cdcflow.errors import DecodeError

FRAME = b"\x00\x00\x00\x00\x07\x02\x04"
LINE = base64.b64encode(FRAME) + b"\n"


def _invoke(args: list[str], stdin: bytes = LINE, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(main, ["decode", *args], input=stdin, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_avro_without_registry_url_is_a_usage_error() -> None:
    result = _invoke(["--format", "debezium-avro"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: --format debezium-avro needs --schema-registry-url (the Confluent-compatible "
        "schema registry that holds the writer schemas, e.g. http://127.0.0.1:8081)\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--schema-registry-url", "127.0.0.1:8081"],
            "error: --schema-registry-url: Value error, must start with http:// or https://",
        ),
        (
            ["--schema-registry-url", "http://bob:hunter2@127.0.0.1:8081"],
            "error: --schema-registry-url must not contain credentials",
        ),
        (
            ["--schema-registry-url", "http://127.0.0.1:8081", "--schema-registry-password", "pw"],
            "error: --schema-registry-password needs --schema-registry-user",
        ),
    ],
)
def test_bad_registry_options_are_usage_errors(args: list[str], message: str) -> None:
    result = _invoke(["--format", "debezium-avro", *args])
    assert result.exit_code == 2
    assert result.stderr.startswith(message), result.stderr
    assert "hunter2" not in result.output
    assert result.stdout == ""


def test_password_from_the_environment_needs_a_user_and_is_never_printed() -> None:
    result = _invoke(
        ["--format", "debezium-avro", "--schema-registry-url", "http://127.0.0.1:8081"],
        env={"CDCFLOW_SCHEMA_REGISTRY_PASSWORD": "Env-S3cret"},
    )
    assert result.exit_code == 2
    assert "needs --schema-registry-user" in result.stderr
    assert "Env-S3cret" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--encoding", "hex"],
        ["--schema-registry-url", "http://127.0.0.1:8081"],
        ["--schema-registry-user", "bob"],
    ],
)
def test_avro_options_with_json_are_usage_errors(args: list[str]) -> None:
    result = _invoke(args, b'{"op":"c"}\n')
    assert result.exit_code == 2
    assert result.stderr.endswith("is only used with --format debezium-avro\n")
    assert result.stdout == ""


def test_unknown_encoding_and_missing_ca_file_are_usage_errors() -> None:
    bad = _invoke(["--format", "debezium-avro", "--encoding", "base32"])
    assert bad.exit_code == 2
    assert "'base32' is not one of 'base64', 'hex'" in bad.stderr
    missing = _invoke(
        [
            "--format",
            "debezium-avro",
            "--schema-registry-url",
            "https://127.0.0.1:8081",
            "--schema-registry-ca",
            "/nonexistent/ca.pem",
        ]
    )
    assert missing.exit_code == 2
    assert "/nonexistent/ca.pem" in missing.stderr


def test_help_lists_the_avro_options_without_secrets() -> None:
    result = CliRunner().invoke(
        main, ["decode", "--help"], env={"CDCFLOW_SCHEMA_REGISTRY_PASSWORD": "Help-S3cret"}
    )
    assert result.exit_code == 0
    for option in (
        "debezium-avro",
        "--encoding",
        "--schema-registry-url",
        "--schema-registry-user",
        "--schema-registry-password",
        "--schema-registry-ca",
        "CDCFLOW_SCHEMA_REGISTRY_PASSWORD",
    ):
        assert option in result.stdout
    assert "Help-S3cret" not in result.output


def test_line_decoder_base64_and_hex() -> None:
    from_base64 = line_decoder("base64")
    from_hex = line_decoder("hex")
    assert from_base64(base64.b64encode(FRAME) + b" ") == FRAME
    assert from_hex(FRAME.hex().encode()) == FRAME
    assert from_hex(FRAME.hex().upper().encode()) == FRAME
    for empty in (None, b"", b"  "):
        assert from_base64(empty) is None  # a null key, or a null value (tombstone)
        assert from_hex(empty) is None
    with pytest.raises(DecodeError, match="not valid base64"):
        from_base64(b"AAAA!!")
    with pytest.raises(DecodeError, match="not valid base64"):
        from_base64(b"AAA")  # bad padding
    with pytest.raises(DecodeError, match="not valid hex"):
        from_hex(b"0g")
    with pytest.raises(DecodeError, match="not valid hex"):
        from_hex(b"abc")  # odd length
