"""Routing by processing profile: which events a writer accepts.

A routing step (``type: route``, to come) sets :attr:`ChangeEvent.profile
<cdcflow.schemas.model.ChangeEvent.profile>` from each event's table: ``full`` (mirror and
index), ``index_only``, ``archive``, or any other name a pipeline uses. A writer that serves
only some profiles applies a :class:`ProfileFilter` to each batch before it writes:

* ``ProfileFilter(None)`` accepts every event (the default for a sink that names no profiles);
* ``ProfileFilter(["full", "index_only"])`` accepts events whose profile is one of those;
  events with no profile (not routed) are refused unless ``unrouted=True``.

Filtering drops events, never positions: :meth:`ProfileFilter.apply` keeps the batch's
partition, ``last_offset``, markers and dead letters, so a writer whose filter refuses a whole
batch still stores its position and does not re-read it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from cdcflow.schemas.model import ChangeEvent, EventBatch

__all__ = ["KNOWN_PROFILES", "ProfileFilter"]

#: The profiles the documentation describes; any other non-empty name is allowed too.
KNOWN_PROFILES = ("full", "index_only", "archive")


def check_profile(name: object) -> str:
    """Validate a profile name: a non-empty string without surrounding spaces."""
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"a profile name must be a non-empty string without spaces, got {name!r}")
    return name


class ProfileFilter:
    """Which processing profiles a writer accepts.

    ``profiles`` is ``None`` (accept everything, routed or not) or the names accepted (a single
    string is one name). ``unrouted``: also accept events that carry no profile; only
    meaningful when ``profiles`` names some.
    """

    __slots__ = ("profiles", "unrouted")

    def __init__(self, profiles: str | Iterable[str] | None = None, *, unrouted: bool = False):
        if profiles is None:
            self.profiles: frozenset[str] | None = None
        else:
            names = [profiles] if isinstance(profiles, str) else list(profiles)
            if not names:
                raise ValueError("a profile filter needs at least one profile (or None for all)")
            self.profiles = frozenset(check_profile(n) for n in names)
        self.unrouted = unrouted

    @property
    def accepts_all(self) -> bool:
        """True when the filter lets every event through (writers may skip it then)."""
        return self.profiles is None

    def accepts(self, event: ChangeEvent) -> bool:
        """True when the writer should write ``event``."""
        if self.profiles is None:
            return True
        if event.profile is None:
            return self.unrouted
        return event.profile in self.profiles

    __call__ = accepts

    def filter(self, events: Sequence[ChangeEvent]) -> list[ChangeEvent]:
        """The accepted events, in order."""
        if self.profiles is None:
            return list(events)
        return [e for e in events if self.accepts(e)]

    def apply(self, batch: EventBatch) -> EventBatch:
        """``batch`` with only the accepted events; the same object when all are accepted.

        Partition, ``last_offset``, markers and dead letters are kept (see module docstring).
        """
        if self.profiles is None:
            return batch
        kept = self.filter(batch.events)
        if len(kept) == len(batch.events):
            return batch
        return msgspec.structs.replace(batch, events=kept)

    def __repr__(self) -> str:
        names = None if self.profiles is None else sorted(self.profiles)
        return f"ProfileFilter({names!r}, unrouted={self.unrouted})"
