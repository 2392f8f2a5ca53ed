"""The durable state contract for stateful steps (temporal joins, deduplication).

A stateful step keeps keyed values in a :class:`StateStore`, one store per ``(pipeline,
step)``, in named namespaces (``"orders"``, ``"customers"``...). Changes are buffered until
:meth:`StateStore.commit`, which makes them durable **together with the input positions they
cover**, in one atomic step. After a restart the store holds exactly the state of the last
commit and its :meth:`StateStore.positions`; the step skips input at or below them
(:meth:`StateStore.covers`), so a replayed batch is never applied to its state twice::

    for batch in batches:
        for event in batch.events:
            if store.covers(event.position):
                continue                        # already in the committed state
            ... store.get / store.put / store.delete ...
        store.commit({batch.partition_key: batch.last_offset})

Uncommitted changes are visible to the store's own reads (``get`` sees a ``put`` before the
commit) and are lost on a crash, or dropped by :meth:`StateStore.rollback`.

Keys are ``str`` or ``bytes`` (``"a"`` and ``b"a"`` are different keys); values are plain data,
stored losslessly as msgpack (:func:`encode_value`): ``None``, ``bool``, ``int`` of any size,
``float``, ``str``, ``bytes``, ``Decimal`` (scale kept), ``datetime`` and ``time`` (naive
stays naive, aware keeps its UTC offset: a named zone comes back as that fixed offset;
``fold`` kept), ``date``, ``list``, ``tuple`` and ``dict`` (keys:
``str``, ``bytes``, 64-bit ``int``, ``float``, ``bool`` or ``None``). A ``get``
returns a new copy: mutating it changes nothing until it is ``put`` again.

Positions follow :mod:`cdcflow.core.positions`: ``(stream, partition)`` text keys, offsets of
any size compared numerically, only moving forward.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Any

import msgspec

from cdcflow.core.positions import PartitionKey, check_positions, is_covered, merge_positions
from cdcflow.schemas.model import Position

__all__ = [
    "MemoryStateStore",
    "StateKey",
    "StateStore",
    "decode_value",
    "encode_value",
]

#: A state key: text or bytes.
StateKey = str | bytes

_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
_EXT_DECIMAL, _EXT_DATETIME, _EXT_DATE, _EXT_TIME, _EXT_BIGINT, _EXT_TUPLE = 1, 2, 3, 4, 5, 6

_encoder = msgspec.msgpack.Encoder()


def _to_wire(value: Any) -> Any:
    """Replace the values msgpack would not round-trip exactly by extension values."""
    if value is None or isinstance(value, bool | float | str | bytes):
        return value
    if isinstance(value, int):
        if _INT64_MIN <= value <= _UINT64_MAX:
            return value
        return msgspec.msgpack.Ext(_EXT_BIGINT, str(value).encode("ascii"))
    if isinstance(value, dict):
        return {_key_to_wire(k): _to_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_wire(v) for v in value]
    if isinstance(value, tuple):
        return msgspec.msgpack.Ext(_EXT_TUPLE, _encoder.encode([_to_wire(v) for v in value]))
    if isinstance(value, Decimal):
        return msgspec.msgpack.Ext(_EXT_DECIMAL, str(value).encode("ascii"))
    if isinstance(value, dt.datetime):
        return msgspec.msgpack.Ext(_EXT_DATETIME, _clock_text(value))
    if isinstance(value, dt.date):
        return msgspec.msgpack.Ext(_EXT_DATE, value.isoformat().encode("ascii"))
    if isinstance(value, dt.time):
        return msgspec.msgpack.Ext(_EXT_TIME, _clock_text(value))
    raise TypeError(f"cannot store a {type(value).__name__} in state (plain data only)")


def _clock_text(value: dt.datetime | dt.time) -> bytes:
    """``[naive ISO text, UTC offset in microseconds or None, fold]`` as msgpack."""
    offset = value.utcoffset()
    micros = None if offset is None else offset // dt.timedelta(microseconds=1)
    naive = value.replace(tzinfo=None, fold=0).isoformat()
    return _encoder.encode([naive, micros, value.fold])


def _clock_value(kind: type[dt.datetime] | type[dt.time], data: bytes) -> dt.datetime | dt.time:
    naive, micros, fold = _decoder.decode(data)
    value = kind.fromisoformat(naive)
    if micros is not None:
        value = value.replace(tzinfo=dt.timezone(dt.timedelta(microseconds=micros)))
    return value.replace(fold=fold)


def _key_to_wire(key: Any) -> Any:
    """A dict key: a scalar msgpack keeps as it is (str, bytes, 64-bit int, float, bool, None)."""
    if key is None or isinstance(key, bool | float | str | bytes):
        return key
    if isinstance(key, int) and _INT64_MIN <= key <= _UINT64_MAX:
        return key
    raise TypeError(
        f"cannot store a dict key of type {type(key).__name__} in state "
        "(keys must be str, bytes, 64-bit int, float, bool or None)"
    )


def _ext_hook(code: int, data: memoryview) -> Any:
    text = bytes(data)
    if code == _EXT_BIGINT:
        return int(text)
    if code == _EXT_TUPLE:
        return tuple(_decoder.decode(text))
    if code == _EXT_DECIMAL:
        return Decimal(text.decode("ascii"))
    if code == _EXT_DATETIME:
        return _clock_value(dt.datetime, text)
    if code == _EXT_DATE:
        return dt.date.fromisoformat(text.decode("ascii"))
    if code == _EXT_TIME:
        return _clock_value(dt.time, text)
    raise ValueError(f"unknown state value extension {code}")


_decoder = msgspec.msgpack.Decoder(ext_hook=_ext_hook)


def encode_value(value: Any) -> bytes:
    """A state value as msgpack bytes, lossless for the types in the module docstring.

    Raises ``TypeError`` for anything else (objects, sets, ``msgspec.Struct`` values: convert
    them with ``msgspec.to_builtins`` or store their fields).
    """
    return _encoder.encode(_to_wire(value))


def decode_value(data: bytes) -> Any:
    """The value :func:`encode_value` encoded."""
    return _decoder.decode(data)


def check_key(key: object) -> StateKey:
    """Validate a state key (``str`` or ``bytes``)."""
    if not isinstance(key, str | bytes):
        raise TypeError(f"a state key must be str or bytes, got {type(key).__name__}")
    return key


#: Marks a buffered delete.
_DELETED = None


class StateStore(abc.ABC):
    """Keyed state of one stateful step, durable together with the positions it covers.

    Implementations provide :meth:`_load` (committed values), :meth:`_load_all`,
    :meth:`_load_positions` and :meth:`_persist` (apply buffered changes and positions in one
    atomic step); this base class buffers changes and implements the public methods on them.
    Implementations must keep each ``(pipeline, step)`` apart and offsets exact at any size.
    """

    def __init__(self) -> None:
        #: Buffered changes: encoded value, or ``None`` for a delete.
        self._pending: dict[tuple[str, StateKey], bytes | None] = {}
        #: The committed positions as last read or committed by this store.
        self._positions: dict[PartitionKey, int] | None = None

    # -- what implementations provide ---------------------------------------------------------

    @abc.abstractmethod
    def _load(self, namespace: str, key: StateKey) -> bytes | None:
        """The committed encoded value, or None."""

    @abc.abstractmethod
    def _load_all(self, namespace: str) -> dict[StateKey, bytes]:
        """Every committed encoded value of ``namespace``."""

    @abc.abstractmethod
    def _load_positions(self) -> dict[PartitionKey, int]:
        """The committed positions."""

    @abc.abstractmethod
    def _persist(
        self,
        changes: Mapping[tuple[str, StateKey], bytes | None],
        positions: Mapping[PartitionKey, int],
    ) -> dict[PartitionKey, int]:
        """Apply ``changes`` (None deletes) and move ``positions`` forward, atomically.

        Returns every committed position after the change.
        """

    # -- the public contract -----------------------------------------------------------------

    def open(self) -> None:  # noqa: B027 - optional hook; memory stores need nothing
        """Create or connect to the storage (optional: every method opens when needed)."""

    def get(self, namespace: str, key: StateKey, default: Any = None) -> Any:
        """The value of ``key`` in ``namespace`` (uncommitted changes included), or ``default``."""
        pending_key = (namespace, check_key(key))
        if pending_key in self._pending:
            data = self._pending[pending_key]
        else:
            data = self._load(namespace, key)
        return default if data is None else decode_value(data)

    def put(self, namespace: str, key: StateKey, value: Any) -> None:
        """Set ``key`` to ``value`` (encoded now, so later mutation of ``value`` is not seen)."""
        self._pending[(namespace, check_key(key))] = encode_value(value)

    def delete(self, namespace: str, key: StateKey) -> None:
        """Remove ``key`` (nothing happens for a key that is not there)."""
        self._pending[(namespace, check_key(key))] = _DELETED

    def items(self, namespace: str) -> Iterator[tuple[StateKey, Any]]:
        """Every ``(key, value)`` of ``namespace``, uncommitted changes included, in no order."""
        merged: dict[StateKey, bytes | None] = dict(self._load_all(namespace))
        for (space, key), data in self._pending.items():
            if space == namespace:
                merged[key] = data
        for key, data in merged.items():
            if data is not None:
                yield key, decode_value(data)

    def positions(self) -> dict[PartitionKey, int]:
        """The input positions the committed state covers (last offset per partition).

        Read from the storage once, then kept up to date by :meth:`commit` (a store has one
        writer per ``(pipeline, step)`` and partition at a time).
        """
        if self._positions is None:
            self._positions = self._load_positions()
        return dict(self._positions)

    def covers(self, position: Position) -> bool:
        """True when the committed state already includes the input at ``position``."""
        if self._positions is None:
            self._positions = self._load_positions()
        return is_covered(self._positions, position)

    def commit(self, positions: Mapping[PartitionKey, int]) -> None:
        """Make the buffered changes durable together with ``positions``, atomically.

        After a crash the store holds either everything of this commit or nothing of it.
        Positions only move forward (an offset at or below the stored one is kept as stored).
        Raises ``TypeError`` for malformed positions before anything is written.
        """
        checked = check_positions(positions)
        self._positions = self._persist(dict(self._pending), checked)
        self._pending.clear()

    def rollback(self) -> None:
        """Drop the buffered changes (the committed state is unchanged)."""
        self._pending.clear()

    @property
    def dirty(self) -> bool:
        """True when there are uncommitted changes."""
        return bool(self._pending)

    def close(self) -> None:  # noqa: B027 - optional hook; memory stores need nothing
        """Release the storage; uncommitted changes are dropped."""

    def __enter__(self) -> StateStore:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass
class MemoryState:
    """The committed contents of memory state stores: the role of the disk in tests."""

    values: dict[tuple[str, str, str, StateKey], bytes] = field(default_factory=dict)
    positions: dict[tuple[str, str], dict[PartitionKey, int]] = field(default_factory=dict)


class MemoryStateStore(StateStore):
    """A state store in process memory, for tests and examples.

    Two stores sharing one ``backend`` see the same committed state (a test simulates a
    restart by opening a new store on the same backend); uncommitted changes stay in the
    store instance, so they are lost with it, as on a crash.
    """

    def __init__(
        self, pipeline: str = "pipeline", step: str = "step", backend: MemoryState | None = None
    ) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.step = step
        self.backend = MemoryState() if backend is None else backend

    def _load(self, namespace: str, key: StateKey) -> bytes | None:
        return self.backend.values.get((self.pipeline, self.step, namespace, key))

    def _load_all(self, namespace: str) -> dict[StateKey, bytes]:
        return {
            k[3]: v
            for k, v in self.backend.values.items()
            if k[:3] == (self.pipeline, self.step, namespace)
        }

    def _load_positions(self) -> dict[PartitionKey, int]:
        return dict(self.backend.positions.get((self.pipeline, self.step), {}))

    def _persist(
        self,
        changes: Mapping[tuple[str, StateKey], bytes | None],
        positions: Mapping[PartitionKey, int],
    ) -> dict[PartitionKey, int]:
        # Build the new contents first, then swap them in: one step, like a transaction.
        values = dict(self.backend.values)
        for (namespace, key), data in changes.items():
            full = (self.pipeline, self.step, namespace, key)
            if data is None:
                values.pop(full, None)
            else:
                values[full] = data
        stored = self._load_positions()
        new_positions = {**stored, **merge_positions(stored, positions)}
        self.backend.values = values
        self.backend.positions[(self.pipeline, self.step)] = new_positions
        return dict(new_positions)

    def close(self) -> None:
        """Drop uncommitted changes."""
        self.rollback()
        self._positions = None
