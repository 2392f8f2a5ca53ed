"""``cdcflow decode --format debezium-avro`` against a real Confluent-compatible registry server.

The same rows are written twice, as Debezium's Avro converter writes them (Confluent wire
format, produced with fastavro, schemas registered in the registry) and as its JSON converter
writes them (with the schema block). Both go through ``cdcflow decode`` and must print the same
values.
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import fastavro
import pytest
from click.testing import CliRunner

from cdcflow.cli.app import main
from cdcflow.schemas.avro import _strip_logical_types
from tests.servers import free_port
from tests.servers.schema_registry import RegistryInfo

pytestmark = pytest.mark.integration

CDCFLOW = Path(sys.executable).with_name("cdcflow")
PLACEHOLDER = "__debezium_unavailable_value"
NAMESPACE = "inventory.public.invoices"


def _connect(type_: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "connect.version": 1, "connect.name": name, **extra}


DECIMAL = _connect(
    "bytes",
    "org.apache.kafka.connect.data.Decimal",
    logicalType="decimal",
    precision=12,
    scale=2,
    **{"connect.parameters": {"scale": "2", "connect.decimal.precision": "12"}},
)
ROW_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Value",
    "namespace": NAMESPACE,
    "connect.name": f"{NAMESPACE}.Value",
    "fields": [
        {"name": "id", "type": "int"},
        {"name": "total", "type": ["null", DECIMAL], "default": None},
        {
            "name": "issued_at",
            "type": ["null", _connect("long", "io.debezium.time.MicroTimestamp")],
            "default": None,
        },
        {
            "name": "due",
            "type": ["null", _connect("int", "io.debezium.time.Date")],
            "default": None,
        },
        {
            "name": "paid_at",
            "type": ["null", _connect("string", "io.debezium.time.ZonedTimestamp")],
            "default": None,
        },
        {"name": "notes", "type": ["null", "string"], "default": None},
    ],
}
SOURCE_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Source",
    "namespace": "io.debezium.connector.postgresql",
    "fields": [
        {"name": "version", "type": "string"},
        {"name": "connector", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "ts_ms", "type": "long"},
        {"name": "snapshot", "type": ["null", "string"], "default": None},
        {"name": "db", "type": "string"},
        {"name": "schema", "type": "string"},
        {"name": "table", "type": "string"},
        {"name": "txId", "type": ["null", "long"], "default": None},
        {"name": "lsn", "type": ["null", "long"], "default": None},
    ],
}
ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Envelope",
    "namespace": NAMESPACE,
    "connect.name": f"{NAMESPACE}.Envelope",
    "fields": [
        {"name": "before", "type": ["null", ROW_SCHEMA], "default": None},
        {"name": "after", "type": ["null", "Value"], "default": None},
        {"name": "source", "type": SOURCE_SCHEMA},
        {"name": "op", "type": "string"},
        {"name": "ts_ms", "type": ["null", "long"], "default": None},
    ],
}
KEY_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Key",
    "namespace": NAMESPACE,
    "connect.name": f"{NAMESPACE}.Key",
    "fields": [{"name": "id", "type": "int"}],
}

# The Kafka Connect schema block the JSON converter writes for the same row.
JSON_ROW_FIELDS = [
    {"field": "id", "type": "int32", "optional": False},
    {
        "field": "total",
        "type": "bytes",
        "optional": True,
        "name": "org.apache.kafka.connect.data.Decimal",
        "version": 1,
        "parameters": {"scale": "2", "connect.decimal.precision": "12"},
    },
    {
        "field": "issued_at",
        "type": "int64",
        "optional": True,
        "name": "io.debezium.time.MicroTimestamp",
        "version": 1,
    },
    {"field": "due", "type": "int32", "optional": True, "name": "io.debezium.time.Date"},
    {
        "field": "paid_at",
        "type": "string",
        "optional": True,
        "name": "io.debezium.time.ZonedTimestamp",
    },
    {"field": "notes", "type": "string", "optional": True},
]
JSON_SCHEMA = {
    "type": "struct",
    "name": f"{NAMESPACE}.Envelope",
    "fields": [
        {"field": "before", "type": "struct", "optional": True, "fields": JSON_ROW_FIELDS},
        {"field": "after", "type": "struct", "optional": True, "fields": JSON_ROW_FIELDS},
        {"field": "source", "type": "struct", "optional": False, "fields": []},
        {"field": "op", "type": "string", "optional": False},
        {"field": "ts_ms", "type": "int64", "optional": True},
    ],
}


def _row(row_id: int, notes: str | None) -> dict[str, Any]:
    """A row in Avro wire values; the JSON wire values differ only in the Decimal (base64)."""
    return {
        "id": row_id,
        "total": (-1_234_567 if row_id == 2 else 9_999_999_999 + row_id).to_bytes(
            8, "big", signed=True
        ),
        "issued_at": -86_400_000_001 if row_id == 2 else 1_718_000_000_123_456,  # µs, pre-1970
        "due": -1 if row_id == 2 else 19_782,  # 1969-12-31, 2024-02-29
        "paid_at": "2024-06-10T11:00:00.987654321+02:00",
        "notes": notes,
    }


def _envelope(row_id: int, op: str) -> dict[str, Any]:
    before = _row(row_id, "old note") if op in ("u", "d") else None
    after = _row(row_id, PLACEHOLDER if op == "u" else "fresh") if op != "d" else None
    return {
        "before": before,
        "after": after,
        "source": {
            "version": "2.7.3.Final",
            "connector": "postgresql",
            "name": "inventory",
            "ts_ms": 1_718_000_000_000,
            "snapshot": "false",
            "db": "inventory",
            "schema": "public",
            "table": "invoices",
            "txId": 777,
            "lsn": 24_000_000 + row_id,
        },
        "op": op,
        "ts_ms": 1_718_000_000_500 + row_id,
    }


def _json_image(image: dict[str, Any] | None) -> dict[str, Any] | None:
    if image is None:
        return None
    return {**image, "total": base64.b64encode(image["total"]).decode()}


def _framed(schema_id: int, schema: dict[str, Any], datum: Any) -> bytes:
    """Confluent wire format: magic byte 0, big-endian schema id, Avro binary datum."""
    parsed = fastavro.parse_schema(_strip_logical_types(json.loads(json.dumps(schema))))
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(out, parsed, datum)
    return out.getvalue()


MESSAGES = [(1, "c"), (2, "c"), (1, "u"), (2, "d")]  # then a tombstone for key 2


def _avro_frames(registry: RegistryInfo) -> list[tuple[bytes, bytes | None]]:
    value_id = registry.register(f"{NAMESPACE}-value", ENVELOPE_SCHEMA)
    key_id = registry.register(f"{NAMESPACE}-key", KEY_SCHEMA)
    frames: list[tuple[bytes, bytes | None]] = [
        (
            _framed(key_id, KEY_SCHEMA, {"id": i}),
            _framed(value_id, ENVELOPE_SCHEMA, _envelope(i, op)),
        )
        for i, op in MESSAGES
    ]
    frames.append((_framed(key_id, KEY_SCHEMA, {"id": 2}), None))
    return frames


def _json_lines() -> bytes:
    lines = []
    for i, op in MESSAGES:
        message = _envelope(i, op)
        message["before"] = _json_image(message["before"])
        message["after"] = _json_image(message["after"])
        value = json.dumps({"schema": JSON_SCHEMA, "payload": message})
        lines.append(f'{{"id":{i}}}\t{value}')
    lines.append('{"id":2}\t')
    return ("\n".join(lines) + "\n").encode()


def _text(data: bytes | None, encoding: str) -> str:
    if data is None:
        return ""
    return data.hex() if encoding == "hex" else base64.b64encode(data).decode()


def _avro_lines(frames: list[tuple[bytes, bytes | None]], encoding: str = "base64") -> bytes:
    text = "\n".join(f"{_text(k, encoding)}\t{_text(v, encoding)}" for k, v in frames)
    return (text + "\n").encode()


def _registry_args(registry: RegistryInfo) -> list[str]:
    return ["--schema-registry-url", registry.url, "--schema-registry-user", registry.username]


def _invoke(args: list[str], stdin: bytes, env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(main, ["decode", *args], input=stdin, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _objects(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_avro_lines_print_the_same_values_as_json(schema_registry: RegistryInfo) -> None:
    frames = _avro_frames(schema_registry)
    avro = _invoke(
        ["--format", "debezium-avro", *_registry_args(schema_registry), "--key-separator", "\t"],
        _avro_lines(frames),
        env={"CDCFLOW_SCHEMA_REGISTRY_PASSWORD": schema_registry.password},
    )
    as_json = _invoke(["--key-separator", "\t"], _json_lines())
    assert (avro.exit_code, avro.stderr) == (0, "")
    assert (as_json.exit_code, as_json.stderr) == (0, "")
    avro_out, json_out = _objects(avro.stdout), _objects(as_json.stdout)
    assert [o["kind"] for o in avro_out] == ["change"] * 4 + ["tombstone"]
    assert len(json_out) == len(avro_out)
    for from_avro, from_json in zip(avro_out, json_out, strict=True):
        from_avro.pop("schema", None)  # names and fingerprints of different schema texts
        from_json.pop("schema", None)
        assert from_avro == from_json

    created, negative, updated, deleted, tombstone = avro_out
    assert created["after"] == {
        "id": 1,
        "total": "100000000.00",
        "issued_at": "2024-06-10T06:13:20.123456",
        "due": "2024-02-29",
        "paid_at": "2024-06-10T09:00:00.987654Z",
        "notes": "fresh",
    }
    assert created["key"] == {"id": 1}
    assert created["table"] == "inventory.public.invoices"
    assert created["source"]["lsn"] == 24_000_001
    assert created["position"] == {"stream": "stdin", "partition": 0, "offset": 0}
    assert negative["after"]["total"] == "-12345.67"
    assert negative["after"]["issued_at"] == "1969-12-30T23:59:59.999999"
    assert negative["after"]["due"] == "1969-12-31"
    assert updated["op"] == "u"
    assert updated["unavailable"] == ["notes"]
    assert "notes" not in updated["after"]
    assert deleted["op"] == "d" and deleted["after"] is None
    assert deleted["before"]["notes"] == "old note"
    assert tombstone["key"] == {"id": 2}


def test_hex_lines_and_bad_lines(schema_registry: RegistryInfo) -> None:
    frames = _avro_frames(schema_registry)
    value_id = int.from_bytes(frames[0][1][1:5], "big")  # type: ignore[index]
    good = frames[0][1]
    assert good is not None
    lines = [
        good.hex(),
        "zz-not-hex",
        "01" + good.hex()[2:],  # wrong magic byte
        _framed(987_654, KEY_SCHEMA, {"id": 1}).hex(),  # a schema id the registry lacks
        good[:12].hex(),  # truncated payload
        "00",  # shorter than the 5-byte header
        "",  # blank: skipped, still counted
        _framed(value_id, ENVELOPE_SCHEMA, _envelope(2, "c")).hex(),
    ]
    result = _invoke(
        [
            "--format",
            "debezium-avro",
            "--encoding",
            "hex",
            "--schema-registry-url",
            schema_registry.url,
            "--schema-registry-user",
            schema_registry.username,
            "--schema-registry-password",
            schema_registry.password,
        ],
        ("\n".join(lines) + "\n").encode(),
    )
    assert result.exit_code == 1
    assert result.stderr == "5 lines could not be decoded\n"
    out = _objects(result.stdout)
    assert [o["kind"] for o in out] == ["change"] + ["error"] * 5 + ["change"]
    errors = {o["line"]: o for o in out if o["kind"] == "error"}
    assert sorted(errors) == [2, 3, 4, 5, 6]
    assert "not valid hex" in errors[2]["error"]
    assert "wrong magic byte 1" in errors[3]["error"]
    assert "schema id 987654 is not in the schema registry" in errors[4]["error"]
    assert errors[4]["error_type"] == "UnknownSchemaError"
    assert "truncated or was written with another schema" in errors[5]["error"]
    assert "truncated Confluent Avro message of 1 byte(s)" in errors[6]["error"]
    assert out[-1]["position"]["offset"] == 7
    assert out[-1]["after"]["total"] == "-12345.67"
    assert schema_registry.password not in result.output


def test_real_command_reads_a_pipe(schema_registry: RegistryInfo) -> None:
    frames = _avro_frames(schema_registry)
    env = {**os.environ, "CDCFLOW_SCHEMA_REGISTRY_PASSWORD": schema_registry.password}
    done = subprocess.run(
        [
            str(CDCFLOW),
            "decode",
            "--format",
            "debezium-avro",
            *_registry_args(schema_registry),
            "--key-separator",
            "\t",
            "-",
        ],
        input=_avro_lines(frames),
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    out = _objects(done.stdout.decode())
    assert [(o["kind"], o.get("op")) for o in out] == [
        ("change", "c"),
        ("change", "c"),
        ("change", "u"),
        ("change", "d"),
        ("tombstone", None),
    ]
    assert out[0]["after"]["paid_at"] == "2024-06-10T09:00:00.987654Z"
    assert schema_registry.password.encode() not in done.stdout + done.stderr


def test_wrong_password_stops_with_exit_1(schema_registry: RegistryInfo) -> None:
    frames = _avro_frames(schema_registry)
    result = _invoke(
        ["--format", "debezium-avro", *_registry_args(schema_registry)],
        _avro_lines(frames[:1]).split(b"\t", 1)[1],
        env={"CDCFLOW_SCHEMA_REGISTRY_PASSWORD": "not-the-Password-42"},
    )
    assert result.exit_code == 1
    assert "rejected the credentials (HTTP 401)" in result.stderr
    assert result.stderr.startswith("error: schema registry ")
    assert "not-the-Password-42" not in result.output
    assert result.stdout == ""


def test_unreachable_registry_stops_with_exit_1() -> None:
    port = free_port()  # nothing listens there
    line = base64.b64encode(b"\x00\x00\x00\x00\x01\x02").decode()
    result = _invoke(
        ["--format", "debezium-avro", "--schema-registry-url", f"http://127.0.0.1:{port}"],
        f"{line}\n{line}\n".encode(),
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: schema registry http://127.0.0.1:{port} did not answer"
    )
    assert "Traceback" not in result.output
    assert result.stdout == ""  # no error object per line: the command stopped


DECODING_MD = Path(__file__).resolve().parents[3] / "docs" / "decoding.md"


def _documented_consumer() -> str:
    """The Python consumer of docs/decoding.md that writes a topic as base64 lines."""
    text = DECODING_MD.read_text()
    start = text.index("python - <<'EOF' | cdcflow decode --format debezium-avro")
    body = text[start:].split("\n", 2)[2]  # after the command's two lines
    return body[: body.index("\nEOF\n")] + "\n"


def test_documented_consumer_pipes_a_topic_into_decode(
    kafka_broker: str, schema_registry: RegistryInfo
) -> None:
    from tests.servers.tansu import create_topic, produce, unique_topic

    topic = unique_topic("decode-avro")
    create_topic(kafka_broker, topic, partitions=2)
    frames = _avro_frames(schema_registry)
    produce(kafka_broker, topic, frames)
    code = _documented_consumer()
    assert '"kafka:9092"' in code and '"shop.public.orders"' in code
    code = code.replace('"kafka:9092"', repr(kafka_broker))
    code = code.replace('"shop.public.orders"', repr(topic))
    env = {**os.environ, "CDCFLOW_SCHEMA_REGISTRY_PASSWORD": schema_registry.password}
    consumer = subprocess.Popen(  # the shell's `python - <<'EOF' | cdcflow decode ...`
        [sys.executable, "-c", code], stdout=subprocess.PIPE
    )
    try:
        done = subprocess.run(
            [
                str(CDCFLOW),
                "decode",
                "--format",
                "debezium-avro",
                "--key-separator",
                "\t",
                *_registry_args(schema_registry),
            ],
            stdin=consumer.stdout,
            capture_output=True,
            env=env,
            timeout=120,
            check=False,
        )
    finally:
        assert consumer.stdout is not None
        consumer.stdout.close()
        assert consumer.wait(timeout=60) == 0
    assert done.returncode == 0, done.stderr.decode()
    out = _objects(done.stdout.decode())
    # Two partitions: the order across keys is not fixed, the order per key is.
    by_key: dict[int, list[str]] = {}
    for item in out:
        by_key.setdefault(item["key"]["id"], []).append(item.get("op") or item["kind"])
    assert by_key == {1: ["c", "u"], 2: ["c", "d", "tombstone"]}
    assert {item["after"]["total"] for item in out if item.get("op") == "c"} == {
        "100000000.00",
        "-12345.67",
    }
