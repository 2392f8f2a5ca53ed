"""What the Python operators of a local Flink run did, for the ``cdcflow run`` summary.

The operators run inside Flink's JVM (thread mode), not in the CLI's process, so they report
through small JSON files: with a stats directory set (only ``cdcflow run --engine flink``
sets one), each operator instance (a restart makes a new one) rewrites its own file after every
batch, atomically (write, then rename). The CLI sums the files at the end. Replays after a
restore are counted again, as reading them again is what happened. The first error of each
instance is stored next to them (:func:`write_error`), so the CLI can show what Python said
instead of Flink's Java stack, and stop at once when a restart cannot help. No PyFlink here.
"""

from __future__ import annotations

import json
import os
import re
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cdcflow.core.source import PartitionKey
from cdcflow.errors import ConfigError


@dataclass
class RunStats:
    """Counts of one operator instance, or the sum over all of them."""

    records_read: int = 0
    dead_letters: int = 0
    written: dict[str, int] = field(default_factory=dict)
    #: The last offset processed per ``(stream, partition)`` (the highest over instances).
    last_offsets: dict[PartitionKey, int] = field(default_factory=dict)

    def add(self, other: RunStats) -> None:
        """Add ``other``'s counts to these (last offsets: the higher wins)."""
        self.records_read += other.records_read
        self.dead_letters += other.dead_letters
        for sink, count in other.written.items():
            self.written[sink] = self.written.get(sink, 0) + count
        for key, offset in other.last_offsets.items():
            self.last_offsets[key] = max(offset, self.last_offsets.get(key, -1))

    def to_json(self) -> bytes:
        """The file's content."""
        return json.dumps(
            {
                "records_read": self.records_read,
                "dead_letters": self.dead_letters,
                "written": self.written,
                "last_offsets": [[s, p, o] for (s, p), o in self.last_offsets.items()],
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RunStats:
        """Parse :meth:`to_json` output."""
        raw = json.loads(data)
        return cls(
            records_read=int(raw["records_read"]),
            dead_letters=int(raw["dead_letters"]),
            written={str(k): int(v) for k, v in raw["written"].items()},
            last_offsets={(str(s), str(p)): int(o) for s, p, o in raw["last_offsets"]},
        )


class StatsFile:
    """The stats file of one operator instance (``<dir>/<instance>.json``).

    ``instance`` is unique per operator instance (a restart makes a new one). It is not the
    subtask index: PyFlink 2.3's runtime context cannot give it in thread mode.
    """

    def __init__(self, directory: str, instance: str) -> None:
        self.path = Path(directory) / f"{instance}.json"
        self._tmp = self.path.with_suffix(".tmp")

    def write(self, stats: RunStats) -> None:
        """Replace the file with ``stats`` (readers never see a partial file)."""
        self._tmp.write_bytes(stats.to_json())
        os.replace(self._tmp, self.path)


def read_stats(directory: Path) -> RunStats:
    """The sum of every operator instance's stats in ``directory`` (zeros when none)."""
    total = RunStats()
    for path in sorted(directory.glob("*.json")):
        if path.name.startswith("error-"):
            continue
        try:
            total.add(RunStats.from_json(path.read_bytes()))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a file being replaced right now; the next read sees it
    return total


#: Errors that a restart cannot cure when raised while the operator opens (a missing module,
#: a configuration the worker cannot build): the local run stops at the first one.
_FATAL_AT_OPEN = (ImportError, SyntaxError, ConfigError)


@dataclass(frozen=True)
class WorkerError:
    """The first error one Python operator instance raised (what Python printed, in short)."""

    kind: str
    message: str
    phase: str
    restartable: bool
    traceback: str = ""

    @property
    def summary(self) -> str:
        """``ModuleNotFoundError: No module named 'x'`` (the line Python ends a traceback with)."""
        return f"{self.kind}: {self.message}" if self.message else self.kind


def worker_error(exc: BaseException, phase: str) -> WorkerError:
    """Describe ``exc`` raised in ``phase`` (``open`` or ``batch``)."""
    text = "".join(traceback.format_exception(exc))
    fatal = phase == "open" and isinstance(exc, _FATAL_AT_OPEN)
    return WorkerError(type(exc).__name__, str(exc).strip(), phase, not fatal, text)


def write_error(directory: str, instance: str, error: WorkerError) -> None:
    """Store an operator instance's first error (later ones of that instance are ignored)."""
    path = Path(directory) / f"error-{instance}.json"
    if path.exists():
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(error)))
    os.replace(tmp, path)


def first_error(directory: Path) -> WorkerError | None:
    """The earliest error any operator instance stored, fatal ones first; None when none."""
    errors: list[tuple[bool, float, WorkerError]] = []
    for path in directory.glob("error-*.json"):
        try:
            raw = json.loads(path.read_text())
            errors.append((raw["restartable"], path.stat().st_mtime, WorkerError(**raw)))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return min(errors, key=lambda e: (e[0], e[1]))[2] if errors else None


#: How pemja reports a Python exception in Flink's log: ``PythonException: <class 'X'>: msg``.
_PEMJA_ERROR = re.compile(r"PythonException: <class '([\w.]+)'>: (.*)$")


def python_error_in_logs(directory: Path, since: float) -> tuple[str, Path] | None:
    """The first Python exception Flink logged in ``directory`` since ``since`` (a time).

    For failures before cdcflow's operator code runs (so nothing was stored by
    :func:`write_error`): returns ``("Kind: message", log file)`` or None.
    """
    found: list[tuple[float, str, Path]] = []
    for path in directory.glob("*.log"):
        try:
            if path.stat().st_mtime < since:
                continue
            with path.open(encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    match = _PEMJA_ERROR.search(line.rstrip("\n"))
                    if match:
                        kind = match.group(1).rsplit(".", 1)[-1]
                        found.append((path.stat().st_mtime, f"{kind}: {match.group(2)}", path))
                        break
        except OSError:
            continue
    if not found:
        return None
    _, summary, path = min(found, key=lambda item: item[0])
    return summary, path
