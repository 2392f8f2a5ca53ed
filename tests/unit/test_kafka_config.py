"""Kafka source and Kafka dead-letter configuration: validation, defaults, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from cdcflow.core.components import BuildContext
from cdcflow.errors import ConfigError
from cdcflow.io.kafka.config import KafkaSourceConfig, parse_start
from cdcflow.io.kafka.dead_letters import DeadLetterKafkaConfig
from cdcflow.io.kafka.settings import redacted
from cdcflow.pipelines.config import parse_pipeline
from cdcflow.transforms.decode import DecodeStep

CONTEXT = BuildContext(pipeline="shop-cdc", base_dir=Path("/tmp"))


def source(**kwargs: object) -> KafkaSourceConfig:
    base: dict = {"type": "kafka", "bootstrap_servers": "b:9092", "topics": ["t"]}
    base.update(kwargs)
    return KafkaSourceConfig.model_validate(base)


def test_defaults() -> None:
    config = source()
    settings = config.settings(CONTEXT)
    assert settings.group_id == "cdcflow.shop-cdc"
    assert settings.start == "earliest"
    assert settings.max_batch_size == 10_000
    assert settings.poll_timeout_s == 0.5
    assert settings.commit_offsets
    client = settings.consumer_config()
    assert client["enable.auto.commit"] is False
    assert client["enable.auto.offset.store"] is False
    assert client["bootstrap.servers"] == "b:9092"
    # The prefetch per partition is bounded (10k records, 16 MiB) so RSS stays flat in long runs.
    assert client["queued.min.messages"] == 10_000
    assert client["queued.max.messages.kbytes"] == 16_384
    assert DecodeStep.from_spec(config.decoding()).format == "debezium-json"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("earliest", "earliest"),
        ("latest", "latest"),
        ("committed", "committed"),
        ("2026-01-01T00:00:00Z", 1_767_225_600_000),
        ("2026-01-01T01:00:00+01:00", 1_767_225_600_000),
    ],
)
def test_start_values(value: str, expected: object) -> None:
    assert parse_start(value) == expected
    assert source(start=value).settings(CONTEXT).start == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [("2026-01-01T00:00:00", "has no zone"), ("beginning", "must be earliest, latest")],
)
def test_bad_start(value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        source(start=value)


def test_topics_xor_pattern_and_valid_regex() -> None:
    with pytest.raises(ValidationError, match="exactly one of 'topics'"):
        source(topics=[])
    with pytest.raises(ValidationError, match="exactly one of 'topics'"):
        source(topic_pattern="t.*")
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        source(topics=[], topic_pattern="(unclosed")
    assert source(topics=[], topic_pattern=r"shop\..*").settings(CONTEXT).topic_pattern


def test_avro_needs_a_registry() -> None:
    with pytest.raises(ValidationError, match="needs a 'schema_registry'"):
        source(format="debezium-avro")
    config = source(format="debezium-avro", schema_registry={"url": "http://r:8081"})
    step = DecodeStep.from_spec(config.decoding())
    assert step.format == "debezium-avro" and step.schema_registry is not None


def test_managed_consumer_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="managed by cdcflow"):
        source(consumer_config={"enable.auto.commit": True})
    with pytest.raises(ValidationError, match="managed by cdcflow"):
        source(consumer_config={"group.id": "x"})


def test_security_settings_pass_through_and_secrets_stay_hidden() -> None:
    config = source(
        consumer_config={
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "svc",
            "sasl.password": "t0p-secret",
            "ssl.ca.location": "/etc/ssl/ca.pem",
            "ssl.key.password": "key-secret",
        }
    )
    assert isinstance(config.consumer_config["sasl.password"], SecretStr)
    assert isinstance(config.consumer_config["ssl.key.password"], SecretStr)
    assert config.consumer_config["sasl.username"] == "svc"
    settings = config.settings(CONTEXT)
    for text in (repr(config), str(config), repr(settings)):
        assert "t0p-secret" not in text and "key-secret" not in text
    client = settings.consumer_config()
    assert client["sasl.password"] == "t0p-secret"
    assert client["security.protocol"] == "SASL_SSL"
    assert redacted(client)["sasl.password"] == "**********"
    assert redacted(client)["sasl.username"] == "svc"


def test_yaml_with_env_secret_and_located_errors(tmp_path: Path) -> None:
    text = """
pipeline: shop-cdc
source:
  type: kafka
  bootstrap_servers: 127.0.0.1:9092
  topics: [shop.public.orders]
  consumer_config:
    security.protocol: SASL_PLAINTEXT
    sasl.mechanism: PLAIN
    sasl.username: svc
    sasl.password: ${KAFKA_PASSWORD}
  schema_registry: {url: "http://r:8081", username: u, password: "${REGISTRY_PASSWORD}"}
  format: debezium-avro
sinks:
  - {name: mirror, type: sqlite, path: out.sqlite}
dead_letter: {type: kafka, bootstrap_servers: 127.0.0.1:9092, topic: shop.dlq}
"""
    env = {"KAFKA_PASSWORD": "kp", "REGISTRY_PASSWORD": "rp"}
    config = parse_pipeline(text, tmp_path / "p.yaml", env)
    assert isinstance(config.source, KafkaSourceConfig)
    secret = config.source.consumer_config["sasl.password"]
    assert isinstance(secret, SecretStr) and secret.get_secret_value() == "kp"
    assert config.source.schema_registry is not None
    assert config.source.schema_registry.password is not None
    assert "rp" not in repr(config.source.schema_registry)
    bad = text.replace(
        "topics: [shop.public.orders]", "topics: [shop.public.orders]\n  start: soon"
    )
    with pytest.raises(ConfigError, match=r"p.yaml:\d+: source.start"):
        parse_pipeline(bad, tmp_path / "p.yaml", env)


def test_dead_letter_config() -> None:
    config = DeadLetterKafkaConfig.model_validate(
        {
            "type": "kafka",
            "bootstrap_servers": "b:9092",
            "topic": "shop.dlq",
            "producer_config": {"sasl.password": "pw", "acks": "all"},
        }
    )
    assert isinstance(config.producer_config["sasl.password"], SecretStr)
    writer = config.build(CONTEXT)
    assert writer.topic == "shop.dlq" and writer.pipeline == "shop-cdc"
    with pytest.raises(ValidationError, match="managed by cdcflow"):
        DeadLetterKafkaConfig.model_validate(
            {
                "type": "kafka",
                "bootstrap_servers": "b",
                "topic": "t",
                "producer_config": {"enable.idempotence": False},
            }
        )
    with pytest.raises(ValidationError):
        DeadLetterKafkaConfig.model_validate(
            {"type": "kafka", "bootstrap_servers": "b", "topic": "bad topic"}
        )


def test_settings_reach_librdkafka() -> None:
    """Pass-through settings are handed to librdkafka itself, which validates them."""
    from cdcflow.io.kafka.client import new_consumer

    consumer = new_consumer(
        source(
            consumer_config={
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "SCRAM-SHA-256",
                "sasl.username": "svc",
                "sasl.password": "pw",
            }
        ).settings(CONTEXT)
    )
    consumer.close()
    with pytest.raises(ConfigError, match="invalid Kafka consumer settings") as info:
        new_consumer(source(consumer_config={"no.such.setting": "x"}).settings(CONTEXT))
    assert "no.such.setting" in str(info.value)
