"""librdkafka client settings: defaults, managed keys, secrets, and the worker's settings.

Contract: secret values (passwords, private keys, tokens) stay wrapped in
:class:`~pydantic.SecretStr` everywhere except in the dict handed to a librdkafka client
(:func:`client_settings`, :meth:`KafkaSettings.consumer_config`); :func:`redacted` gives a copy
safe to log. Nothing here imports ``confluent_kafka``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from pydantic import SecretStr

#: Consumer settings cdcflow manages itself; ``consumer_config`` may not set them.
MANAGED_KEYS = frozenset(
    {
        "bootstrap.servers",
        "group.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "enable.partition.eof",
    }
)
_SECRET_MARKERS = ("password", "secret", "passphrase", "ssl.key.pem", "oauthbearer.config")

#: A librdkafka setting's value as YAML gives it.
ConfigValue = str | int | float | bool
#: A partition as Kafka names it: ``(topic, partition)``.
TopicPartitionKey = tuple[str, int]


def is_secret_key(name: str) -> bool:
    """True for librdkafka settings that hold secrets (passwords, private keys, tokens)."""
    lowered = name.lower()
    return any(marker in lowered for marker in _SECRET_MARKERS)


def checked_client_config(value: Any, managed: frozenset[str], why: str) -> Any:
    """Validate a YAML ``*_config`` mapping of librdkafka settings (for pydantic validators).

    Refuses keys in ``managed`` (``why`` says what to use instead) and wraps the values of
    secret keys in :class:`SecretStr` so that they never print. Non-mappings pass through for
    pydantic to reject.
    """
    if not isinstance(value, dict):
        return value
    refused = sorted(k for k in value if k in managed)
    if refused:
        raise ValueError(f"{refused} are managed by cdcflow: {why}")
    return {
        k: SecretStr(str(v)) if is_secret_key(str(k)) and not isinstance(v, SecretStr) else v
        for k, v in value.items()
    }


def client_settings(config: Mapping[str, ConfigValue | SecretStr]) -> dict[str, ConfigValue]:
    """Unwrap :class:`SecretStr` values for handing to librdkafka (never log the result)."""
    return {
        key: value.get_secret_value() if isinstance(value, SecretStr) else value
        for key, value in config.items()
    }


def redacted(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a client config safe to log or show in errors."""
    return {k: ("**********" if is_secret_key(k) else v) for k, v in config.items()}


class KafkaSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a worker needs to read (picklable; secrets stay wrapped).

    ``start`` is ``earliest``, ``latest``, ``committed`` or epoch milliseconds (see
    :func:`cdcflow.io.kafka.config.parse_start`). ``metadata_timeout_s`` bounds each wait for
    a broker's answer (metadata, committed offsets, watermarks); ``streaming_retry_s`` is how
    long a streaming run's restart rides through an unreachable broker (see
    :class:`cdcflow.io.kafka.source.KafkaSource`).
    """

    bootstrap_servers: str
    group_id: str
    topics: tuple[str, ...] = ()
    topic_pattern: str | None = None
    start: str | int = "earliest"
    client_config: dict[str, Any] = {}
    max_batch_size: int = 10_000
    poll_timeout_s: float = 0.5
    commit_offsets: bool = True
    metadata_timeout_s: float = 15.0
    streaming_retry_s: float = 300.0

    def consumer_config(self, **extra: ConfigValue) -> dict[str, ConfigValue]:
        """The librdkafka consumer settings (secrets unwrapped: hand to the client only).

        Defaults first, then ``client_config``, then the keys cdcflow manages, then ``extra``.
        """
        base: dict[str, ConfigValue] = {
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "queued.min.messages": 10_000,
            "queued.max.messages.kbytes": 16_384,
            "session.timeout.ms": 6000,
            "fetch.queue.backoff.ms": 10,
        }
        base.update(client_settings(self.client_config))
        base.update(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": self.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
            }
        )
        base.update(extra)
        return base

    def auto_offset_reset(self) -> str:
        """Where librdkafka starts without a committed offset: ``earliest`` or ``latest``.

        ``auto.offset.reset`` from ``client_config`` (its synonyms folded), ``latest`` when
        unset: what ``start: committed`` falls back to.
        """
        reset = str(client_settings(self.client_config).get("auto.offset.reset", "latest"))
        return "earliest" if reset in ("earliest", "smallest", "beginning") else "latest"
