"""Functions and classes that ``type: python`` tests name by import path."""

from __future__ import annotations

from typing import Any

import msgspec

from cdcflow.schemas.model import ChangeEvent
from cdcflow.transforms import EventStep


def add_region(event: ChangeEvent, region: str = "eu-west-1") -> ChangeEvent:
    """Set ``region`` on the row image."""
    if event.after is None:
        return event
    return msgspec.structs.replace(event, after={**event.after, "region": region})


def no_arguments() -> None:
    """A function that cannot take an event."""


class Upper(EventStep):
    """Upper-cases one column (``column``, default ``name``)."""

    name = "upper"

    def __init__(self, column: str = "name") -> None:
        super().__init__()
        self.column = column

    def process_event(self, event: ChangeEvent) -> ChangeEvent:
        """Upper-case the column of ``after`` (deletes pass unchanged)."""
        if event.after is None:
            return event
        after = dict(event.after)
        after[self.column] = str(after[self.column]).upper()
        return msgspec.structs.replace(event, after=after)


class NotAStep:
    """A class that is not a step."""


NOT_CALLABLE: Any = 42
