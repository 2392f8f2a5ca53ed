"""Keeping librdkafka's log readable: one line per kind of message, then a count.

librdkafka retries a refused connection every few milliseconds and logs each attempt, so a
wrong broker address or a broker restart used to print hundreds of identical ``Connection
refused`` lines. :class:`RepeatSummary` is a :class:`logging.Filter` for the loggers that carry
those lines (``cdcflow.kafka.client``, librdkafka's own log, and the per-poll warnings of
``cdcflow.io.kafka.poller`` and ``cdcflow.io.kafka.offsets``): the first record of a kind
passes; later records of the same kind are dropped and counted, and at most once every
:data:`SUMMARY_EVERY_S` seconds one of them passes with ``(N more like this in the last 60s)``
appended. Records of the same kind differ only in numbers (ports, milliseconds, client
instance ids). Records below WARNING always pass.

:func:`last_client_error` is the most recent distinct error librdkafka logged, for the final
error message of a source that could not reach its brokers.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

#: Seconds between two lines of the same kind (the second one carries the count).
SUMMARY_EVERY_S = 60.0

_NUMBERS = re.compile(r"\d+")
#: The logger librdkafka's own lines go to.
CLIENT_LOGGER = "cdcflow.kafka.client"


class RepeatSummary(logging.Filter):
    """Pass the first record of each kind, then one per :data:`SUMMARY_EVERY_S` with a count."""

    def __init__(
        self, every_s: float = SUMMARY_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self._lock = threading.Lock()
        # kind -> [time the last line of this kind was shown, records dropped since]
        self._seen: dict[str, list[float]] = {}
        self.last_error: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        """True when ``record`` should be shown (it may get a count appended)."""
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        kind = f"{record.name}:{record.levelno}:{_NUMBERS.sub('#', message)}"
        now = self.clock()
        with self._lock:
            if record.name == CLIENT_LOGGER:
                self.last_error = message
            seen = self._seen.get(kind)
            if seen is None:
                if len(self._seen) > 1000:  # bound the memory of a long run
                    self._seen.clear()
                self._seen[kind] = [now, 0]
                return True
            if now - seen[0] < self.every_s:
                seen[1] += 1
                return False
            dropped = int(seen[1])
            seen[0], seen[1] = now, 0
        if dropped:
            record.msg = f"{message} ({dropped} more like this in the last {self.every_s:.0f}s)"
            record.args = ()
        return True


_SUMMARY = RepeatSummary()


def install(*loggers: logging.Logger) -> None:
    """Attach the process-wide summary filter to ``loggers`` (idempotent)."""
    for logger in loggers:
        if _SUMMARY not in logger.filters:
            logger.addFilter(_SUMMARY)


#: librdkafka's prefix of a log line: facility, client instance, thread.
_CLIENT_PREFIX = re.compile(r"^\w+ \[[^\]]*\] \[[^\]]*\]: ")


def last_client_error() -> str | None:
    """The latest WARNING-or-worse line librdkafka logged in this process, without its prefix."""
    last = _SUMMARY.last_error
    return _CLIENT_PREFIX.sub("", last) if last else None
