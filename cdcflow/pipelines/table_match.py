"""Table patterns that match none of the source's tables (a typo that would leak data).

Every redact rule's ``table``, every redact ``tables:`` entry (allow-lists, scanning) and every
sink's ``tables:`` pattern is compared with the tables the source can name
(:meth:`cdcflow.core.source.Source.discover_tables`). A pattern that matches none of them is a
warning in ``cdcflow validate``; it is an error (exit 2, before any data flows) when the
pipeline says ``strict: true`` or the redact step says ``require_match: true``
(docs/redaction.md, "Fail closed").
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

import msgspec

from cdcflow.errors import ConfigError
from cdcflow.pipelines.config import Loc, PipelineConfig


class Unmatched(msgspec.Struct, frozen=True):
    """One pattern that matches none of the known tables."""

    loc: Loc
    pattern: str
    required: bool


def _as_list(patterns: str | Iterable[str]) -> list[str]:
    return [patterns] if isinstance(patterns, str) else list(patterns)


def table_patterns(config: PipelineConfig) -> list[tuple[Loc, str, bool]]:
    """Every table pattern of ``config`` as ``(key path, pattern, required)``."""
    strict = bool(getattr(config, "strict", False))
    found: list[tuple[Loc, str, bool]] = []
    for index, transform in enumerate(config.transforms):
        if getattr(transform, "type", None) != "redact":
            continue
        required = strict or bool(getattr(transform, "require_match", False))
        for number, rule in enumerate(transform.rules):  # type: ignore[attr-defined]
            for pattern in _as_list(rule.table):
                found.append((("transforms", index, "rules", number, "table"), pattern, required))
        for number, table in enumerate(transform.tables):  # type: ignore[attr-defined]
            for pattern in _as_list(table.table):
                found.append((("transforms", index, "tables", number, "table"), pattern, required))
    for index, sink in enumerate(config.sinks):
        patterns = getattr(sink, "tables", None)
        if patterns is None:
            continue
        for pattern in _as_list(patterns):
            if pattern != "*":
                found.append((("sinks", index, "tables"), pattern, strict))
    return found


def unmatched(config: PipelineConfig, tables: set[str]) -> list[Unmatched]:
    """The patterns of ``config`` that match none of ``tables``."""
    return [
        Unmatched(loc, pattern, required)
        for loc, pattern, required in table_patterns(config)
        if not any(fnmatch.fnmatchcase(name, pattern) for name in tables)
    ]


def describe(config: PipelineConfig, item: Unmatched, tables: set[str] | None) -> str:
    """``FILE:LINE: key: pattern 'x' matches none of ...`` (located, with what is known)."""
    if tables is None:
        known = "the source cannot name its tables, so the pattern cannot be checked"
    else:
        names = sorted(tables)
        shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
        known = f"matches none of the tables the source names ({shown or 'none'})"
    return f"{config.locate(item.loc)}: table pattern {item.pattern!r} {known}"


def requires_match(config: PipelineConfig) -> bool:
    """True when some pattern must match (``strict: true`` or ``require_match: true``)."""
    return any(required for _, _, required in table_patterns(config))


def enforce(config: PipelineConfig, source: Any, decode: Any) -> None:
    """Raise :class:`ConfigError` listing every required pattern that matches nothing.

    Called while planning, so a run fails before it reads or writes anything. A source that
    cannot name its tables fails every required pattern (fail closed).
    """
    if not requires_match(config):
        return
    tables = source.discover_tables(decode)
    if tables is None:
        items = [Unmatched(loc, p, r) for loc, p, r in table_patterns(config) if r]
    else:
        items = [item for item in unmatched(config, tables) if item.required]
    if items:
        lines = [describe(config, item, tables) for item in items]
        count = len(lines)
        raise ConfigError(
            f"{count} required table pattern{'s' if count > 1 else ''} match nothing "
            "(strict: true or require_match: true; docs/redaction.md):\n"
            + "\n".join("  " + line for line in lines)
        )


def warnings(config: PipelineConfig, source: Any, decode: Any) -> list[str]:
    """Located warnings for the patterns that match nothing (empty when all match)."""
    patterns = table_patterns(config)
    if not patterns:
        return []
    try:
        tables = source.discover_tables(decode)
    except Exception as exc:  # noqa: BLE001 - a warning pass must not end validate
        return [f"{config.path}: cannot list the source's tables to check table patterns ({exc})"]
    if tables is None:
        return []
    return [describe(config, item, tables) for item in unmatched(config, tables)]
