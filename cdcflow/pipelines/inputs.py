"""Several named sources in one pipeline: each with its own decode step and its own positions.

A pipeline reads one ``source:`` or a list of ``sources:``. Each planned source
(:class:`PlannedSource`) has a name (its ``name:``, else ``source`` for a lone source and
``sources[i]`` in a list), the built :class:`~cdcflow.core.source.Source` and the decode step
its :class:`~cdcflow.core.components.DecodeSpec` describes.

Positions are stored per ``(stream, partition)``, so sources keep separate positions as long
as no two of them read the same stream: :func:`stream_routes` checks that when the partitions
are listed, and :class:`RoutedDecode` then decodes each raw batch with the decode step of the
source that read it. With one source, the decode step is used as is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from cdcflow.core.source import Source
from cdcflow.core.step import StepResult
from cdcflow.errors import ConfigError
from cdcflow.schemas.model import RawBatch


class PlannedSource(msgspec.Struct, kw_only=True):
    """One built source of a pipeline and how its records are decoded."""

    #: The source's name in the pipeline (``name:``, else ``source`` or ``sources[i]``).
    name: str
    #: Where it is in the pipeline file (``("source",)`` or ``("sources", i)``).
    loc: tuple[str | int, ...]
    source: Source
    #: Its decode step (a :class:`~cdcflow.transforms.decode.DecodeStep`).
    decode: Any


def source_name(configured: str | None, loc: tuple[str | int, ...]) -> str:
    """The name a source goes by: its ``name:``, else its place in the file."""
    if configured:
        return configured
    if loc == ("source",):
        return "source"
    return f"sources[{loc[1]}]"


def check_unique_names(inputs: Sequence[PlannedSource], where: str) -> None:
    """Refuse two sources with one name: metrics, logs and errors name sources by it."""
    seen: dict[str, PlannedSource] = {}
    for planned in inputs:
        if planned.name in seen:
            raise ConfigError(
                f"{where}: two sources are named {planned.name!r}; give each source of "
                "'sources:' its own 'name:'"
            )
        seen[planned.name] = planned


def stream_routes(
    inputs: Sequence[PlannedSource],
    partitions: Sequence[Sequence[tuple[str, int | str]]],
) -> dict[str, int]:
    """Which source (index into ``inputs``) reads each stream; ``partitions`` per source.

    Raises :class:`ConfigError` when two sources read the same stream: their positions would
    be stored under the same ``(stream, partition)`` keys and one would skip the other's
    records as already written.
    """
    routes: dict[str, int] = {}
    for index, listed in enumerate(partitions):
        for stream, _partition in listed:
            owner = routes.setdefault(stream, index)
            if owner != index:
                raise ConfigError(
                    f"sources {inputs[owner].name!r} and {inputs[index].name!r} both read "
                    f"stream {stream!r}: positions are kept per stream and partition, so each "
                    "source must read streams of its own"
                )
    return routes


class RoutedDecode:
    """A decode step that decodes each raw batch with the step of the source that read it.

    ``decoders`` are the sources' decode steps; ``routes`` maps a stream to its source's
    index (:func:`stream_routes`). Follows the step contract (``setup``/``process``/
    ``teardown``), so the executor runs it like any decode step.
    """

    name = "decode"

    def __init__(self, decoders: Sequence[Any], routes: Mapping[str, int]) -> None:
        self.decoders = list(decoders)
        self.routes = dict(routes)

    def setup(self) -> None:
        """Set every source's decode step up."""
        for decoder in self.decoders:
            decoder.setup()

    def process(self, raw: RawBatch) -> StepResult:
        """Decode ``raw`` with its source's step; a stream no source lists is a bug."""
        index = self.routes.get(raw.stream)
        if index is None:
            raise RuntimeError(
                f"no source of this pipeline lists stream {raw.stream!r} (known: "
                f"{sorted(self.routes)})"
            )
        result: StepResult = self.decoders[index].process(raw)
        return result

    def teardown(self) -> None:
        """Tear every source's decode step down."""
        for decoder in self.decoders:
            decoder.teardown()


class AllTables:
    """The tables of every source, for the table-pattern checks (``discover_tables``)."""

    def __init__(self, inputs: Sequence[PlannedSource]) -> None:
        self.inputs = list(inputs)

    def discover_tables(self, _decode: Any = None) -> set[Any] | None:
        """The union of the sources' tables; ``None`` when some source cannot name its own."""
        found: set[Any] = set()
        for planned in self.inputs:
            tables = planned.source.discover_tables(planned.decode)
            if tables is None:
                return None
            found.update(tables)
        return found
