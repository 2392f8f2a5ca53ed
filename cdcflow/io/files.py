"""Files: a JSON-lines source of Debezium messages and a JSON-lines dead-letter sink.

File source
    Each line of a file is one message value (``null`` is a tombstone; blank lines are not
    messages and are skipped). With ``key_separator`` set (e.g. a tab, as written by
    ``kcat -K`` with a tab), the text before the first separator is the message key. A file is one
    stream named after the file (``orders.jsonl``) with one partition ``0``; a record's offset
    is its 0-based line number, so positions stay stable when a file is re-read.
"""

from __future__ import annotations

import glob
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec
from pydantic import Field, field_validator

from cdcflow.core.components import (
    BuildContext,
    ComponentError,
    DeadLetterConfig,
    DecodeSpec,
    SourceConfig,
)
from cdcflow.core.source import Source
from cdcflow.core.writer import DeadLetterWriter
from cdcflow.errors import SinkError
from cdcflow.schemas.canonical import dead_letter_dict, dumps
from cdcflow.schemas.model import DeadLetter, Position, RawBatch, RawRecord
from cdcflow.scrub import scrub


class FileSource(Source):
    """Read JSON-lines files of Debezium message values (bounded)."""

    stream_is_topic = False

    def __init__(
        self,
        paths: Sequence[Path],
        key_separator: str | None = None,
        batch_size: int = 1000,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1 (got {batch_size!r})")
        if key_separator == "":
            raise ValueError("key_separator must not be empty")
        self.paths = {path.name: path for path in paths}
        if len(self.paths) != len(paths):
            raise ValueError(f"two files share a name, so their positions would collide: {paths}")
        self.key_separator = key_separator.encode() if key_separator else None
        self.batch_size = batch_size

    def partitions(self) -> list[tuple[str, int | str]]:
        """One partition per file: ``(file name, 0)``."""
        return [(name, 0) for name in sorted(self.paths)]

    def read(
        self, stream: str, partition: int | str, start_offset: int | None
    ) -> Iterator[RawBatch]:
        """Yield batches of up to ``batch_size`` lines from line ``start_offset`` (0-based)."""
        path = self.paths[stream]
        first = start_offset or 0
        records: list[RawRecord] = []
        last = first - 1
        emitted = first - 1
        with path.open("rb") as handle:
            for line_no, line in enumerate(handle):
                if line_no < first:
                    continue
                last = line_no
                body = line.rstrip(b"\r\n")
                if not body.strip():
                    continue
                key: bytes | None = None
                if self.key_separator is not None and self.key_separator in body:
                    key, body = body.split(self.key_separator, 1)
                position = Position(stream, 0, line_no)
                records.append(RawRecord(key=key, value=body, position=position))
                if len(records) >= self.batch_size:
                    yield RawBatch(stream=stream, partition=0, records=records, last_offset=last)
                    records = []
                    emitted = last
        if records or last > emitted:
            # The rest, or only blank lines after the last full batch: their offsets still
            # need committing so a restart does not re-read them.
            yield RawBatch(stream=stream, partition=0, records=records, last_offset=last)

    def end_offsets(self, timeout: float | None = None) -> dict[tuple[str, int], int] | None:
        """Per file, its number of lines (offsets are 0-based line numbers, blank lines too)."""
        ends: dict[tuple[str, int], int] = {}
        for name, path in sorted(self.paths.items()):
            with path.open("rb") as handle:
                ends[(name, 0)] = sum(1 for _ in handle)
        return ends

    def discover_tables(self, decode: Any) -> set[str] | None:
        """The tables named by the files' contents, decoded as a run decodes them."""
        tables: set[str] = set()
        for stream, partition in self.partitions():
            for raw in self.read(stream, partition, None):
                tables.update(str(event.table) for event in decode.process(raw).batch.events)
        return tables

    def check(self) -> list[str]:
        """Every file must exist and be readable."""
        return [
            f"cannot read {path}" for path in self.paths.values() if not os.access(path, os.R_OK)
        ]


class FileSourceConfig(SourceConfig):
    """``type: file`` — JSON-lines files of Debezium messages.

    ``path`` is a file or a glob, relative to the pipeline file. ``key_columns`` maps table
    globs to key columns for messages without a key. ``tombstones`` must stay ``marker``
    (a null value follows a delete and is not a change): reading tombstones as deletes needs
    the table name from a Kafka topic, which a file does not have.
    """

    type: Literal["file"]
    path: str = Field(min_length=1)
    format: Literal["debezium-json"] = "debezium-json"
    key_separator: str | None = Field(default=None, min_length=1)
    key_columns: dict[str, list[str]] = {}
    tombstones: Literal["marker", "delete"] = "marker"
    batch_size: int = Field(default=1000, ge=1, le=1_000_000)

    @field_validator("tombstones")
    @classmethod
    def _tombstones_need_a_topic(cls, value: str) -> str:
        if value == "delete":
            raise ValueError(
                "'delete' needs the table name from a Kafka topic and a file has none; "
                "expected 'marker' (deletes come from Debezium's 'd' events)"
            )
        return value

    def build(self, context: BuildContext) -> FileSource:
        """Resolve the path (or glob) and build the source; ConfigError when nothing matches."""
        pattern = context.resolve(self.path)
        matches = sorted(Path(p) for p in glob.glob(str(pattern)))
        if not matches:
            raise ComponentError(
                "path",
                f"no file matches {str(pattern)!r}; expected a file or glob relative to the "
                "pipeline file",
            )
        return FileSource(matches, key_separator=self.key_separator, batch_size=self.batch_size)

    def decoding(self) -> DecodeSpec:
        """How this source's records are decoded (positions name files, not topics)."""
        return DecodeSpec(
            format=self.format,
            key_columns=self.key_columns,
            tombstones=self.tombstones,
            stream_is_topic=False,
        )


def scrubbed(letter: DeadLetter) -> DeadLetter:
    """``letter`` with secrets masked in its reason (:mod:`cdcflow.scrub`); bytes untouched."""
    reason = scrub(letter.reason)
    return letter if reason == letter.reason else msgspec.structs.replace(letter, reason=reason)


class DeadLetterFileWriter(DeadLetterWriter):
    """Append dead letters as canonical JSON lines (original bytes base64 in ``value_b64``).

    Each write is flushed and fsync'ed before returning, so a dead letter is never lost
    once its batch's position has been committed by the sinks.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, object]:
        """Pickle without the lock (engines ship writers to workers)."""
        return {"path": self.path}

    def __setstate__(self, state: dict[str, object]) -> None:
        path = state["path"]
        assert isinstance(path, Path)
        self.__init__(path)  # type: ignore[misc]

    def open(self) -> None:
        """Create the parent directory; SinkError naming ``dead_letter`` when it cannot."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(
                f"dead_letter: cannot create the directory {self.path.parent} for the "
                f"dead-letter file: {exc.strerror or exc}"
            ) from None
        if self.path.is_dir():
            raise SinkError(f"dead_letter: {self.path} is a directory; expected a file path")

    def check(self) -> list[str]:
        """The file (or the directory it would be created in) must be writable.

        Nothing is created: the nearest existing ancestor of a missing directory must be a
        writable directory.
        """
        try:
            return self._check()
        except OSError as exc:  # e.g. a name longer than the file system allows
            return [f"dead_letter: cannot use {self.path}: {exc.strerror or exc}"]

    def _check(self) -> list[str]:
        if self.path.is_dir():
            return [f"dead_letter: {self.path} is a directory; expected a file path"]
        if self.path.exists():
            if not os.access(self.path, os.W_OK):
                return [f"dead_letter: cannot write the dead-letter file {self.path}"]
            return []
        ancestor = self.path.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            return [
                f"dead_letter: cannot create the directory {self.path.parent} for the "
                f"dead-letter file: {ancestor} is not a directory"
            ]
        if not os.access(ancestor, os.W_OK | os.X_OK):
            return [
                f"dead_letter: cannot create {self.path}: no permission to write in {ancestor}"
            ]
        return []

    def write(self, letters: Sequence[DeadLetter]) -> None:
        """Append ``letters`` durably."""
        if not letters:
            return
        payload = b"".join(dumps(dead_letter_dict(scrubbed(letter))) + b"\n" for letter in letters)
        try:
            with self._lock, self.path.open("ab") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise SinkError(
                f"dead_letter: cannot write dead letters to {self.path}: {exc.strerror or exc}"
            ) from exc

    def describe(self) -> list[str]:
        """How many dead letters the file holds."""
        if not self.path.exists():
            return [f"dead letters: 0 ({self.path})"]
        with self.path.open("rb") as handle:
            count = sum(1 for _ in handle)
        return [f"dead letters: {count} in {self.path}"]


class DeadLetterFileConfig(DeadLetterConfig):
    """``dead_letter: {type: file, path: ...}`` — a JSON-lines file of dead letters."""

    type: Literal["file"]
    path: str = Field(min_length=1)

    def build(self, context: BuildContext) -> DeadLetterFileWriter:
        """Build the writer (the path is relative to the pipeline file)."""
        return DeadLetterFileWriter(context.resolve(self.path))
