"""Example cdcflow steps for the shop changelog (see docs/extending.md).

* :func:`add_region` — a plain function step (``type: python``, ``function:``);
* :class:`MaskPhone` — an :class:`~cdcflow.transforms.EventStep` subclass (``type: python``
  naming the class, or used directly in a Beam pipeline);
* :class:`shop_enrich.config.DropTableConfig` — a registered type (``type: drop_table``) with
  its own config model, made known through the ``cdcflow.connectors`` entry point.
"""

from __future__ import annotations

import msgspec

from cdcflow.schemas.model import ChangeEvent
from cdcflow.transforms import EventStep


def add_region(event: ChangeEvent, region: str = "eu-west-1") -> ChangeEvent:
    """Add a ``region`` column to every customer row (other tables pass unchanged)."""
    if event.table.table != "customers" or event.after is None:
        return event
    return msgspec.structs.replace(event, after={**event.after, "region": region})


class MaskPhone(EventStep):
    """Keep only the last ``keep`` digits of the customers' ``phone`` column."""

    name = "mask-phone"

    def __init__(self, keep: int = 4) -> None:
        super().__init__()
        if keep < 0:
            raise ValueError(f"keep must be 0 or more (got {keep!r})")
        self.keep = keep

    def process_event(self, event: ChangeEvent) -> ChangeEvent:
        """Mask ``phone`` in ``after``; a phone that is not text makes the event a dead letter."""
        if event.table.table != "customers" or not event.after or event.after.get("phone") is None:
            return event
        phone = event.after["phone"]
        if not isinstance(phone, str):
            raise TypeError(f"phone must be text, got {type(phone).__name__}")
        digits = [c for c in phone if c.isdigit()]
        tail = "".join(digits[-self.keep :]) if self.keep else ""
        return msgspec.structs.replace(event, after={**event.after, "phone": "***" + tail})
