r"""``cdcflow produce``: send the lines of a file to a Kafka topic (a stand-in for ``kcat -P``).

Line format (the one the examples and ``kcat -C -K$'\t'`` dumps use)
    ``KEY<TAB>VALUE`` or ``VALUE`` alone (no separator on the line: no key). A value that is
    empty or exactly ``null`` is sent as a tombstone (a null value), as Debezium writes them;
    with ``--null-as-text`` the four bytes ``null`` are sent instead. Blank lines are skipped.
    Keys and values are sent as the line's bytes, unchanged.

Delivery
    The producer is idempotent and keeps the file's order within a partition; without
    ``--partition`` the key picks the partition (murmur2, as the Java client does, so a key
    lands where Debezium would put it). The command returns once every message is
    acknowledged, or fails after ``--timeout`` seconds.

Exit codes: 0 every message delivered; 2 bad usage (unreadable file, bad option, a topic that
does not exist without ``--create-partitions``); 1 the broker could not be reached or a
delivery failed (nothing is retried past ``--timeout``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import IO, Any

import click

from cdcflow.cli.exit_codes import EXIT_RUNTIME, EXIT_USAGE
from cdcflow.errors import CdcflowError, ConfigError
from cdcflow.io.kafka.client import client_log, confluent
from cdcflow.io.kafka.settings import is_secret_key
from cdcflow.logs import error_line

#: Producer settings the command manages itself (``--producer-config`` may not set them).
MANAGED = frozenset({"bootstrap.servers", "enable.idempotence"})


class ProduceError(CdcflowError):
    """The broker could not be reached, or a message was not delivered."""


def parse_line(
    body: bytes, separator: bytes | None, null_is_tombstone: bool = True
) -> tuple[bytes | None, bytes | None]:
    """``(key, value)`` of one non-blank line (see the module docstring)."""
    key: bytes | None = None
    value = body
    if separator is not None and separator in body:
        key, value = body.split(separator, 1)
        key = key or None
    if null_is_tombstone and value.strip() in (b"", b"null"):
        return key, None
    return key, value


def read_messages(
    handle: IO[bytes], separator: bytes | None, null_is_tombstone: bool = True
) -> Iterator[tuple[bytes | None, bytes | None]]:
    """The ``(key, value)`` pairs of every non-blank line of ``handle``, in order."""
    for line in handle:
        body = line.rstrip(b"\r\n")
        if body.strip():
            yield parse_line(body, separator, null_is_tombstone)


def _producer_config(pairs: tuple[str, ...]) -> dict[str, str]:
    config: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--producer-config expects KEY=VALUE (got {name.strip()!r}...)")
        if name.strip() in MANAGED:
            raise ConfigError(
                f"--producer-config {name.strip()}: managed by cdcflow produce "
                "(use --bootstrap-servers; the producer is always idempotent)"
            )
        config[name.strip()] = value
    return config


def _client(factory: Any, config: dict[str, Any], extra: dict[str, str]) -> Any:
    """A librdkafka client; settings it refuses are a usage error, secret values hidden."""
    kafka = confluent()
    try:
        return factory(config, logger=client_log)
    except kafka.KafkaException as exc:
        message = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
        for key, value in extra.items():
            if value and is_secret_key(key):
                message = message.replace(value, "**********")
        raise ConfigError(f"--producer-config: {message}") from None


def ensure_topic(
    bootstrap: str, topic: str, extra: dict[str, str], create_partitions: int | None,
    timeout: float,
) -> int:
    """The topic's partition count; creates the topic when asked. Raises for a missing topic."""
    kafka = confluent()
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = _client(AdminClient, {**extra, "bootstrap.servers": bootstrap}, extra)
    try:
        metadata = admin.list_topics(timeout=timeout)
    except kafka.KafkaException as exc:
        raise ProduceError(
            f"cannot reach Kafka at {bootstrap} within {timeout:.0f}s: {exc}"
        ) from None
    found = metadata.topics.get(topic)
    if found is not None and found.error is None and found.partitions:
        return len(found.partitions)
    if create_partitions is None:
        raise ConfigError(
            f"topic {topic!r} does not exist on {bootstrap}: create it, or pass "
            "--create-partitions N to create it with N partitions"
        )
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=create_partitions, replication_factor=1)],
        operation_timeout=timeout,
    )
    try:
        futures[topic].result(timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - the broker's refusal, reported as is
        if "already exists" not in str(exc).lower() and "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise ProduceError(f"cannot create topic {topic!r} on {bootstrap}: {exc}") from None
    return create_partitions


def produce_messages(
    bootstrap: str,
    topic: str,
    messages: Iterator[tuple[bytes | None, bytes | None]],
    partition: int | None,
    extra: dict[str, str],
    timeout: float,
) -> tuple[int, int]:
    """Send every message and wait for the acknowledgements: ``(sent, tombstones)``.

    Raises :class:`ProduceError` when any message is not delivered within ``timeout`` seconds
    of the last one being queued, naming how many and the first error.
    """
    kafka = confluent()
    producer = _client(
        kafka.Producer,
        {
            "linger.ms": 5,
            "partitioner": "murmur2_random",
            "message.timeout.ms": int(timeout * 1000),
            **extra,
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
        },
        extra,
    )
    errors: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    sent = tombstones = 0
    for key, value in messages:
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
        sent += 1
        tombstones += value is None
        if sent % 10_000 == 0:
            producer.poll(0)
    remaining = producer.flush(timeout)
    if remaining or errors:
        failed = remaining + len(errors)
        first = errors[0] if errors else f"no acknowledgement within {timeout:.0f}s"
        raise ProduceError(
            f"{failed} of {sent} message(s) to {topic!r} on {bootstrap} were not delivered: "
            f"{first}"
        )
    return sent, tombstones


@click.command()
@click.argument("input_file", default="-", type=click.File("rb"))
@click.option(
    "--bootstrap-servers",
    "-b",
    required=True,
    envvar="KAFKA_BOOTSTRAP",
    show_envvar=True,
    metavar="HOST:PORT[,...]",
    help="Kafka brokers to connect to.",
)
@click.option("--topic", "-t", required=True, help="Topic to produce to.")
@click.option(
    "--key-separator",
    default="\t",
    show_default="tab",
    help="Text between key and value on a line; a line without it is a value with no key.",
)
@click.option("--no-keys", is_flag=True, help="Every line is a value (no key is split off).")
@click.option(
    "--null-as-text",
    is_flag=True,
    help="Send a value 'null' as those four bytes, not as a tombstone (null value).",
)
@click.option(
    "--partition", type=click.IntRange(min=0), default=None,
    help="Send every message to this partition (default: the key decides).",
)
@click.option(
    "--create-partitions",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Create the topic with N partitions if it does not exist (default: it must exist).",
)
@click.option(
    "--producer-config",
    "producer_config",
    multiple=True,
    metavar="KEY=VALUE",
    help="librdkafka producer setting, repeatable (e.g. security.protocol=SASL_SSL).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the broker (metadata) and for the last acknowledgements.",
)
def produce(
    input_file: IO[bytes],
    bootstrap_servers: str,
    topic: str,
    key_separator: str,
    no_keys: bool,
    null_as_text: bool,
    partition: int | None,
    create_partitions: int | None,
    producer_config: tuple[str, ...],
    timeout: float,
) -> None:
    """Send each line of INPUT_FILE (default: stdin) to a Kafka topic as one message.

    A line is KEY<TAB>VALUE, or VALUE alone (no key); an empty or `null` value is a
    tombstone. Prints how many messages were delivered. Exit codes: 0 delivered, 2 bad usage
    or a missing topic, 1 broker unreachable or a delivery failed. Needs the kafka extra.
    """
    if not key_separator and not no_keys:
        _fail(ConfigError("--key-separator must not be empty (use --no-keys)"), EXIT_USAGE)
    try:
        extra = _producer_config(producer_config)
        partitions = ensure_topic(bootstrap_servers, topic, extra, create_partitions, timeout)
        if partition is not None and partition >= partitions:
            raise ConfigError(
                f"--partition {partition}: topic {topic!r} has {partitions} partition(s)"
            )
        separator = None if no_keys else key_separator.encode()
        messages = read_messages(input_file, separator, null_is_tombstone=not null_as_text)
        sent, tombstones = produce_messages(
            bootstrap_servers, topic, messages, partition, extra, timeout
        )
    except ConfigError as exc:
        _fail(exc, EXIT_USAGE)
        return
    except CdcflowError as exc:
        _fail(exc, EXIT_RUNTIME)
        return
    except OSError as exc:  # the input could not be read
        _fail(exc, EXIT_USAGE)
        return
    plural = "" if sent == 1 else "s"
    click.echo(
        f"produced {sent} message{plural} to {topic} ({tombstones} tombstone"
        f"{'' if tombstones == 1 else 's'})"
    )


def _fail(error: BaseException, code: int) -> None:
    click.echo(error_line(str(error)), err=True)
    sys.exit(code)
