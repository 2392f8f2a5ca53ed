"""``cdcflow decode --format debezium-avro``: text lines to Confluent wire-format bytes.

Avro messages are binary, so the command reads one text-encoded message per line: base64
(default) or hex of the Confluent-framed bytes (magic byte 0, 4-byte schema id, Avro datum),
optionally ``KEY<SEP>VALUE``. This module builds the decoder (with its schema registry client)
and the function that turns a line's text into message bytes; the ``decode`` command in
:mod:`cdcflow.cli.app` does the rest, exactly as for JSON.

Contracts
    * :func:`line_decoder` returns a function from a line part (key or value text) to bytes.
      An empty part is ``None`` (a null key, or a null value: a tombstone). Text that is not
      valid base64 / hex raises :class:`~cdcflow.errors.DecodeError` (an error object for that
      line).
    * :func:`avro_decoder` raises :class:`~cdcflow.errors.ConfigError` for bad options (exit 2).
      The password is a :class:`pydantic.SecretStr` and never appears in messages.
    * The errors that stop the command (exit 1) instead of becoming an error object per line
      are :data:`cdcflow.schemas.registry.FATAL_DECODE_ERRORS` (the decode step stops on the
      same ones): an unreachable registry, rejected credentials, a failing registry. An unknown
      schema id is not one of them (it is a per-line decode error).
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from cdcflow.errors import ConfigError, DecodeError

if TYPE_CHECKING:
    from cdcflow.schemas.avro import ConfluentAvroDecoder
    from cdcflow.schemas.debezium import TombstoneHandling

Encoding = Literal["base64", "hex"]
ENCODINGS = ("base64", "hex")
PASSWORD_ENV = "CDCFLOW_SCHEMA_REGISTRY_PASSWORD"  # noqa: S105 - a variable name


def _from_base64(text: bytes) -> bytes:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError(
            f"not valid base64 ({exc}); each line must be the base64 of one Confluent "
            "wire-format message (use --encoding hex for hex)"
        ) from None


def _from_hex(text: bytes) -> bytes:
    try:
        return bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(
            f"not valid hex ({exc}); each line must be the hex of one Confluent wire-format "
            "message (use --encoding base64 for base64)"
        ) from None


def line_decoder(encoding: Encoding) -> Callable[[bytes | None], bytes | None]:
    """The function from one line part (key or value text) to message bytes."""
    convert = _from_hex if encoding == "hex" else _from_base64

    def to_bytes(text: bytes | None) -> bytes | None:
        if text is None:
            return None
        text = text.strip()
        if not text:
            return None
        return convert(text)

    return to_bytes


def avro_decoder(
    url: str | None,
    username: str | None,
    password: str | None,
    ca_location: str | None,
    tombstones: TombstoneHandling,
) -> ConfluentAvroDecoder:
    """A Confluent Avro decoder reading schemas from the registry at ``url``.

    Raises :class:`ConfigError` when ``url`` is missing or not an http(s) URL, or when it
    carries credentials (they belong in ``--schema-registry-user``/``-password``).
    """
    from pydantic import SecretStr, ValidationError

    from cdcflow.schemas.avro import ConfluentAvroDecoder
    from cdcflow.schemas.registry import SchemaRegistryConfig

    if not url:
        raise ConfigError(
            "--format debezium-avro needs --schema-registry-url (the Confluent-compatible "
            "schema registry that holds the writer schemas, e.g. http://127.0.0.1:8081)"
        )
    if urlsplit(url).password is not None or "@" in urlsplit(url).netloc:
        raise ConfigError(
            "--schema-registry-url must not contain credentials; use --schema-registry-user "
            f"and --schema-registry-password (or {PASSWORD_ENV})"
        )
    if password is not None and username is None:
        raise ConfigError("--schema-registry-password needs --schema-registry-user")
    try:
        config = SchemaRegistryConfig(
            url=url,
            username=username,
            password=SecretStr(password) if password is not None else None,
            ca_location=ca_location,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"--schema-registry-{'-'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(problems) from None
    return ConfluentAvroDecoder(config.client(), tombstones=tombstones)
