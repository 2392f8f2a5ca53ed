"""Debezium's TOAST placeholder: a column whose value the source did not send.

PostgreSQL (and other connectors) send ``__debezium_unavailable_value`` for a column whose
value was not captured (e.g. an unchanged TOASTed column). It is never a value: the column is
removed from the row image and named in :attr:`ChangeEvent.unavailable`, so sinks keep the value
they store. It is recognised as text, as base64 text (a JSON ``bytes`` column), as raw bytes (an
Avro ``bytes`` column) and as a one-element array.
"""

from __future__ import annotations

from typing import Any

from cdcflow.schemas.logical import UNAVAILABLE_PLACEHOLDER

_PLACEHOLDER_B64 = "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="
_PLACEHOLDER_LIST = [UNAVAILABLE_PLACEHOLDER]
_PLACEHOLDER_BYTES = UNAVAILABLE_PLACEHOLDER.encode()
_PLACEHOLDER_B64_BYTES = _PLACEHOLDER_B64.encode()
_PLACEHOLDER_FORMS = (
    UNAVAILABLE_PLACEHOLDER,
    _PLACEHOLDER_B64,
    _PLACEHOLDER_LIST,
    _PLACEHOLDER_BYTES,
)


def may_hold_placeholder(message: bytes, start: int = 0) -> bool:
    """False when no row image of the raw JSON ``message`` (from byte ``start``) can hold one.

    One scan of the bytes, so row images are searched only when it says True.
    """
    return (
        message.find(_PLACEHOLDER_BYTES, start) >= 0
        or message.find(_PLACEHOLDER_B64_BYTES, start) >= 0
    )


def take_unavailable(row: dict[str, Any]) -> tuple[str, ...]:
    """Remove placeholder values from ``row`` (in place); return the names of those columns."""
    values = row.values()
    if (
        UNAVAILABLE_PLACEHOLDER not in values
        and _PLACEHOLDER_B64 not in values
        and _PLACEHOLDER_LIST not in values
        and _PLACEHOLDER_BYTES not in values
    ):
        return ()
    missing = tuple(name for name, value in row.items() if value in _PLACEHOLDER_FORMS)
    for name in missing:
        del row[name]
    return missing
