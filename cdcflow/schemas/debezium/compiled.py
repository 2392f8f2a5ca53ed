"""What a codec learned from a message's schema, in the form the envelope interpreter reads.

A :class:`CompiledSchema` is built once per distinct schema (the JSON codec compiles a Connect
``schema`` block into one, :mod:`cdcflow.schemas.debezium.schema_block`; the Avro codec builds
one from what its writer schema says) and handed to
:meth:`~cdcflow.schemas.debezium.envelope.EnvelopeInterpreter.interpret` with every message
written with that schema. It is read-only for the interpreter, except for its cache of table
schemas with key columns filled in.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from cdcflow.schemas.connect import RowChecker
from cdcflow.schemas.model import TableSchema

#: The kinds of message a schema can announce. ``"row"`` is an unwrapped record (or a schema
#: that does not say: the fields then tell markers from rows); ``"error"`` marks a schema that
#: cannot be used, whose :attr:`CompiledSchema.error` says why.
MessageKind = Literal["envelope", "row", "transaction", "schema_change", "heartbeat", "error"]


class CompiledSchema:
    """The message kind, the row checker and the table schema one schema stands for.

    ``row_converter`` checks a row image in place against the schema and converts its logical
    types (None: the values are final, e.g. already converted by the Avro codec);
    ``table_schema`` describes the row's columns (None when the schema does not describe a
    row); ``error`` is set only for kind ``"error"``.
    """

    __slots__ = ("_keyed", "error", "kind", "row_converter", "table_schema")

    def __init__(
        self,
        row_converter: RowChecker | None,
        table_schema: TableSchema | None,
        kind: MessageKind,
    ) -> None:
        self.row_converter = row_converter
        self.table_schema = table_schema
        self.kind: MessageKind = kind
        self.error: str | None = None
        self._keyed: dict[tuple[str, ...], TableSchema] = {}

    @classmethod
    def failed(cls, reason: str) -> CompiledSchema:
        """A schema that cannot be used: every message written with it fails with ``reason``."""
        compiled = cls(row_converter=None, table_schema=None, kind="error")
        compiled.error = reason
        return compiled

    def with_key(self, key_columns: tuple[str, ...]) -> TableSchema | None:
        """The table schema with ``key_columns`` filled in (built once per key shape)."""
        if self.table_schema is None:
            return None
        found = self._keyed.get(key_columns)
        if found is None:
            found = msgspec.structs.replace(self.table_schema, key_columns=key_columns)
            self._keyed[key_columns] = found
        return found
