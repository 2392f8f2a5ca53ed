"""The common fields of Debezium messages: the ``source`` block and integer timestamps.

:func:`source_info` turns a ``source`` block into :class:`SourceInfo`: the fields every
connector sends become its attributes (``collection`` is MongoDB's ``table``; ``snapshot`` is
normalised to text) and every other field is kept, unchanged, in ``native``. Integer fields
(``ts_ms`` and the like) are integers or null; anything else is a
:class:`~cdcflow.errors.DecodeError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdcflow.errors import DecodeError
from cdcflow.schemas.model import SourceInfo

_SNAPSHOT_VALUES = frozenset(
    {
        "true",
        "false",
        "first",
        "last",
        "first_in_data_collection",
        "last_in_data_collection",
        "incremental",
    }
)


def normalise_snapshot(value: Any) -> str | None:
    """``source.snapshot`` as text: Debezium's values as sent, a boolean as true/false."""
    if value is None:
        return None
    if type(value) is str and value in _SNAPSHOT_VALUES:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).lower()


def checked_int(value: Any, what: str) -> int | None:
    """``value`` when it is an integer or null; a :class:`DecodeError` naming ``what`` else."""
    if value is None or type(value) is int:
        return value
    raise DecodeError(
        f"{what!r} must be an integer (epoch milliseconds) or null, got {type(value).__name__}"
    )


def int_field(payload: Mapping[str, Any], name: str) -> int | None:
    """The integer field ``name`` of ``payload`` (or None); other values are DecodeErrors."""
    return checked_int(payload.get(name), name)


def int_or_none(value: Any) -> int | None:
    """``value`` when it is an integer (not a boolean), else None (lenient, never raises)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def source_info(source: Any, owned: bool = False) -> SourceInfo:
    """Normalise a ``source`` block; every field that is not a common one goes to ``native``.

    A value that is not a dict gives an empty :class:`SourceInfo`. ``owned``: the block was
    parsed for this call only, so it becomes ``native`` itself (its common fields popped)
    instead of being copied.
    """
    if type(source) is not dict:
        return SourceInfo()
    native = source if owned else source.copy()
    pop = native.pop
    ts_ms = pop("ts_ms", None)
    table = pop("table", None)
    collection = pop("collection", None)
    snapshot = pop("snapshot", None)
    return SourceInfo(
        connector=pop("connector", None),
        name=pop("name", None),
        ts_ms=ts_ms if type(ts_ms) is int else checked_int(ts_ms, "source.ts_ms"),
        snapshot=snapshot
        if snapshot is None or (type(snapshot) is str and snapshot in _SNAPSHOT_VALUES)
        else normalise_snapshot(snapshot),
        database=pop("db", None),
        schema=pop("schema", None),
        table=table or collection,
        version=pop("version", None),
        native=native,
    )
