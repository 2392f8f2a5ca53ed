"""The schema registry client against an in-process mock transport (no server)."""

from __future__ import annotations

import base64
import pickle
import ssl

import httpx
import pytest
from pydantic import ValidationError

from cdcflow.errors import DecodeError, TerminalError, TransientError
from cdcflow.schemas.registry import (
    SchemaRegistryAuthError,
    SchemaRegistryClient,
    SchemaRegistryConfig,
    SchemaRegistryUnavailable,
    UnknownSchemaError,
    _ssl_context,
)

SCHEMA = '{"type": "record", "name": "R", "fields": [{"name": "id", "type": "int"}]}'


def _client(handler, **config: object) -> SchemaRegistryClient:
    settings = SchemaRegistryConfig(url="http://registry.test:8081/", **config)  # type: ignore[arg-type]
    return SchemaRegistryClient(settings, transport=httpx.MockTransport(handler))


def test_fetches_by_id_with_basic_auth_and_caches() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"schema": SCHEMA})

    client = _client(handler, username="svc", password="p4ss")
    assert client.get_schema(7) == SCHEMA
    assert client.get_schema(7) == SCHEMA
    assert len(seen) == 1
    assert seen[0].url.path == "/schemas/ids/7"
    expected = "Basic " + base64.b64encode(b"svc:p4ss").decode()
    assert seen[0].headers["authorization"] == expected


def test_unknown_id_is_a_decode_error() -> None:
    client = _client(lambda r: httpx.Response(404, json={"error_code": 40403}))
    with pytest.raises(UnknownSchemaError, match="schema id 9 is not in the schema registry"):
        client.get_schema(9)
    assert issubclass(UnknownSchemaError, DecodeError)


def test_server_errors_are_retried_then_transient() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, text="busy")

    client = _client(handler, retries=1)
    with pytest.raises(SchemaRegistryUnavailable, match="after 2 attempt") as info:
        client.get_schema(1)
    assert len(calls) == 2
    assert isinstance(info.value, TransientError)


def test_recovers_when_a_retry_succeeds() -> None:
    answers = [httpx.Response(500), httpx.Response(200, json={"schema": SCHEMA})]
    client = _client(lambda r: answers.pop(0), retries=2)
    assert client.get_schema(3) == SCHEMA


def test_connection_errors_are_transient() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = _client(handler, retries=0)
    with pytest.raises(SchemaRegistryUnavailable, match="ConnectError"):
        client.get_schema(1)


def test_rejected_credentials_are_terminal_and_secret_free() -> None:
    client = _client(lambda r: httpx.Response(401), username="svc", password="hunter2")
    with pytest.raises(SchemaRegistryAuthError) as info:
        client.get_schema(1)
    assert isinstance(info.value, TerminalError)
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(client)
    assert "hunter2" not in repr(client.config)


def test_non_avro_schema_is_refused() -> None:
    client = _client(lambda r: httpx.Response(200, json={"schema": "{}", "schemaType": "PROTOBUF"}))
    with pytest.raises(DecodeError, match="PROTOBUF schema, not Avro"):
        client.get_schema(1)


def test_register_and_check() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            assert request.url.path == "/subjects/orders-value/versions"
            return httpx.Response(200, json={"id": 42})
        return httpx.Response(200, json=["orders-value"])

    client = _client(handler)
    assert client.register("orders-value", SCHEMA) == 42
    assert client.check() == []


def test_pickles_without_its_connection() -> None:
    client = _client(lambda r: httpx.Response(200, json={"schema": SCHEMA}))
    client.get_schema(1)
    copy = pickle.loads(pickle.dumps(client))
    assert copy.config == client.config
    assert copy._http is None and copy._schemas == {}


def test_config_validation_and_tls_options() -> None:
    with pytest.raises(ValidationError, match="must start with http"):
        SchemaRegistryConfig(url="registry:8081")
    assert _ssl_context(SchemaRegistryConfig(url="https://r")) is True
    insecure = _ssl_context(SchemaRegistryConfig(url="https://r", verify=False))
    assert isinstance(insecure, ssl.SSLContext) and insecure.verify_mode == ssl.CERT_NONE
    with_ca = _ssl_context(
        SchemaRegistryConfig(url="https://r", ca_location="/etc/ssl/certs/ca-certificates.crt")
    )
    assert isinstance(with_ca, ssl.SSLContext) and with_ca.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(FileNotFoundError):
        _ssl_context(
            SchemaRegistryConfig(url="https://r", certificate_location="/nonexistent/client.pem")
        )
