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
_PLACEHOLDER_FORMS = (
    UNAVAILABLE_PLACEHOLDER,
    _PLACEHOLDER_B64,
    _PLACEHOLDER_LIST,
    _PLACEHOLDER_BYTES,
)

#: The byte strings a raw JSON message holds when any of its row images holds the placeholder
#: (as text, or as base64 text): a message without both needs no search of its row images.
PLACEHOLDER_IN_JSON = (_PLACEHOLDER_BYTES, _PLACEHOLDER_B64.encode())


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
