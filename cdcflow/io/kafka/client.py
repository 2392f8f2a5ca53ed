"""Talking to librdkafka: the one import of ``confluent_kafka``, consumers, its log, its errors.

Contract: :func:`confluent` is the only place cdcflow imports ``confluent_kafka`` for reading
or writing Kafka; without the ``kafka`` extra it raises
:class:`~cdcflow.errors.MissingDependencyError` naming the extra. Consumers are created by
:func:`new_consumer` only (tests replace it with a fake), never subscribed: cdcflow assigns
partitions itself. librdkafka's own log lines go to :data:`client_log`, with repeats
summarised (:mod:`cdcflow.io.kafka.logs`).
"""

from __future__ import annotations

import logging
from typing import Any

from cdcflow.errors import ConfigError, TerminalError, TransientError, missing_extra
from cdcflow.io.kafka import logs
from cdcflow.io.kafka.settings import ConfigValue, KafkaSettings, redacted

log = logging.getLogger(__name__)
#: librdkafka's own log lines (connection failures, ...), routed through Python logging.
client_log = logging.getLogger(logs.CLIENT_LOGGER)
# Repeated lines (a refused connection is retried and logged every few ms) are summarised.
logs.install(client_log)


def confluent() -> Any:
    """The ``confluent_kafka`` module; MissingDependencyError without the ``kafka`` extra."""
    try:
        import confluent_kafka
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise missing_extra("confluent-kafka", "kafka") from exc
    return confluent_kafka


class KafkaError(TransientError):
    """Kafka could not be reached or answered with an error (retrying may help)."""


class KafkaAuthError(TerminalError):
    """The brokers refused the credentials or the access (never retried)."""


#: librdkafka / Kafka error codes of refused credentials or access: terminal.
AUTH_ERROR_CODES = frozenset(
    {
        -169,  # _AUTHENTICATION (SASL/SSL handshake refused)
        58,  # SASL_AUTHENTICATION_FAILED
        29,  # TOPIC_AUTHORIZATION_FAILED
        30,  # GROUP_AUTHORIZATION_FAILED
        31,  # CLUSTER_AUTHORIZATION_FAILED
    }
)


def refused_access(exc: BaseException) -> bool:
    """True when ``exc`` (a ``KafkaException``) is the brokers refusing credentials or access."""
    error = exc.args[0] if exc.args else None
    code = getattr(error, "code", None)
    return callable(code) and code() in AUTH_ERROR_CODES


def new_consumer(settings: KafkaSettings, **extra: ConfigValue) -> Any:
    """Create a confluent-kafka ``Consumer`` (not subscribed; partitions are assigned).

    ``extra`` overrides the settings' consumer config. Settings librdkafka refuses raise
    :class:`ConfigError`.
    """
    kafka = confluent()
    config = settings.consumer_config(**extra)
    log.debug("creating a Kafka consumer with %s", redacted(config))
    try:
        return kafka.Consumer(config, logger=client_log)
    except kafka.KafkaException as exc:
        raise ConfigError(f"source: invalid Kafka consumer settings: {exc}") from None
