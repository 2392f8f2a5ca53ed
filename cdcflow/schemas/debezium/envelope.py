"""The one Debezium envelope interpreter: a parsed message payload to a change event or marker.

Both codecs parse their bytes into Python values and hand the payload here: the JSON codec
(:mod:`cdcflow.schemas.debezium.json_codec`) and the Avro codec (:mod:`cdcflow.schemas.avro`).
Whatever the wire format, one set of rules therefore decides:

* the **kind** of the message (from the codec's
  :class:`~cdcflow.schemas.debezium.compiled.CompiledSchema`, else from its fields,
  :mod:`~cdcflow.schemas.debezium.kinds`): change envelope, unwrapped row, transaction marker,
  schema change or heartbeat (:mod:`~cdcflow.schemas.debezium.markers`);
* for a **change envelope**: ``op``, the ``before``/``after`` images (checked by the schema's
  row checker, if any), ``source`` (:mod:`~cdcflow.schemas.debezium.source`), ``transaction``,
  ``ts_ms``, the key and the table schema; MongoDB's envelopes are handled by
  :mod:`~cdcflow.schemas.debezium.mongo`;
* for an **unwrapped record** (``ExtractNewRecordState``): ``__op``/``__deleted`` give the op,
  ``__table``/``__db``/``__schema``/``__source_*`` the source, other ``__`` fields go to
  ``meta``;
* **TOAST placeholders** are never values (:mod:`~cdcflow.schemas.debezium.toast`);
* the **key**: the message key when there is one, else the configured key columns
  (:class:`~cdcflow.schemas.debezium.tables.KeyColumns`), else MongoDB's ``_id``;
* **tombstones** (a null value) follow the :data:`TombstoneHandling` mode.

Every failure is a :class:`~cdcflow.errors.DecodeError` with the reason. An interpreter holds
small caches (table ids, key columns per table) and is not thread-safe: one per decoder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from cdcflow.errors import DecodeError
from cdcflow.schemas.debezium import mongo
from cdcflow.schemas.debezium.compiled import CompiledSchema
from cdcflow.schemas.debezium.kinds import guess_kind, looks_like_envelope, refuse_non_row
from cdcflow.schemas.debezium.markers import heartbeat, schema_change, transaction_marker
from cdcflow.schemas.debezium.source import (
    checked_int,
    int_or_none,
    normalise_snapshot,
    source_info,
)
from cdcflow.schemas.debezium.tables import KeyColumns, TableNames
from cdcflow.schemas.debezium.toast import take_unavailable
from cdcflow.schemas.model import (
    ChangeEvent,
    Decoded,
    Op,
    Position,
    SourceInfo,
    TableId,
    TableSchema,
    Tombstone,
    TransactionInfo,
)

#: What a null message value is: ``"marker"`` (Debezium's default: a :class:`Tombstone`
#: following a delete, not a change) or ``"delete"`` (a delete of the key: the stream carries
#: deletes only as tombstones).
TombstoneHandling = Literal["marker", "delete"]

_OPS = {op.value: op for op in Op}
_DELETE, _TRUNCATE, _UPDATE = Op.DELETE, Op.TRUNCATE, Op.UPDATE
_MONGO = mongo.CONNECTOR

#: ``__`` fields of unwrapped records that are connector-native positions (go to ``source``).
_UNWRAPPED_NATIVE = (
    "lsn",
    "txId",
    "file",
    "pos",
    "row",
    "gtid",
    "scn",
    "commit_scn",
    "commit_lsn",
    "change_lsn",
    "event_serial_no",
    "ord",
)


class EnvelopeInterpreter:
    """Interpret parsed Debezium message payloads into change events and markers.

    ``key_columns`` maps table globs (matched against ``str(TableId)``) to key column lists,
    used when a message has no key. ``tombstones`` says what a null value is (see
    :data:`TombstoneHandling`; ``"delete"`` needs the topic to know the table).
    """

    def __init__(
        self,
        key_columns: Mapping[str, Sequence[str]] | None = None,
        tombstones: TombstoneHandling = "marker",
    ) -> None:
        self.tombstones = tombstones
        self._key_columns = KeyColumns(key_columns)
        self._table_id = TableNames().resolve

    def interpret(
        self,
        payload: dict[str, Any],
        compiled: CompiledSchema | None,
        position: Position,
        key: dict[str, Any] | None,
        topic: str | None,
        owned: bool = False,
        maybe_unavailable: bool = True,
    ) -> Decoded:
        """Interpret one message payload (a dict of Python values, logical types converted).

        ``compiled`` is what the message's schema says (None: schemaless, the fields tell the
        kind); a row checker in it runs on the row images. ``key`` is the decoded message key,
        ``topic`` names the table when the message does not. ``owned``: the payload was parsed
        for this call only, so its dicts may be reused in place. ``maybe_unavailable``: False
        when the codec knows no row image holds a TOAST placeholder (then none is searched).
        """
        if compiled is not None:
            kind = compiled.kind
            if kind == "row":
                # A schema name we do not know: the fields still tell markers from rows.
                kind = guess_kind(payload)
        elif "op" in payload and (
            "source" in payload or "after" in payload or "before" in payload
        ):  # looks_like_envelope(payload), inlined: this is every schemaless message
            kind = "envelope"
        else:
            kind = guess_kind(payload)
        if kind == "row":
            refuse_non_row(payload)
        if kind == "envelope":
            get = payload.get
            return self.envelope_fields(
                get("op"),
                get("source"),
                get("before"),
                get("after"),
                get("transaction"),
                get("ts_ms"),
                payload,
                compiled,
                position,
                key,
                topic,
                owned,
                maybe_unavailable,
            )
        if kind == "transaction":
            return transaction_marker(payload, position)
        if kind == "schema_change":
            return schema_change(payload, position)
        if kind == "heartbeat":
            return heartbeat(payload, position)
        return self._unwrapped(payload, compiled, position, key, topic, maybe_unavailable)

    def decode_payload(
        self,
        payload: dict[str, Any],
        position: Position,
        key: dict[str, Any] | None = None,
        topic: str | None = None,
        table_schema: TableSchema | None = None,
        is_envelope: bool | None = None,
    ) -> Decoded:
        """Interpret a payload another codec parsed (e.g. Avro), with what its schema says.

        ``table_schema`` describes the row (None: unknown); ``is_envelope`` forces the
        envelope/unwrapped decision when the codec knows it (None: the fields tell). The
        payload is not reused in place and every row image is searched for placeholders.
        """
        compiled = None
        if table_schema is not None or is_envelope is not None:
            envelope = is_envelope if is_envelope is not None else looks_like_envelope(payload)
            compiled = CompiledSchema(
                row_converter=None,
                table_schema=table_schema,
                kind="envelope" if envelope else "row",
            )
        return self.interpret(payload, compiled, position, key, topic)

    def tombstone(
        self, position: Position, key: dict[str, Any] | None, topic: str | None
    ) -> Tombstone | ChangeEvent:
        """What a tombstone (a null value) at ``position`` becomes under this mode.

        ``marker``: a :class:`Tombstone`; ``delete``: a delete of ``key`` in the table the
        ``topic`` names. Raises :class:`DecodeError` when a delete cannot be built.
        """
        if self.tombstones == "marker":
            return Tombstone(position=position, key=key)
        if topic is None:
            raise DecodeError(
                "a tombstone was read as a delete but there is no topic to name the table"
            )
        if not key:
            raise DecodeError("a tombstone was read as a delete but the message has no key")
        return ChangeEvent(
            op=Op.DELETE, table=TableId.parse(topic), position=position, key=key, before=dict(key)
        )

    # -- internals ------------------------------------------------------------------------

    def envelope_fields(
        self,
        op_code: Any,
        raw_source: Any,
        before: Any,
        after: Any,
        tx: Any,
        ts_ms: Any,
        payload: dict[str, Any] | None,
        compiled: CompiledSchema | None,
        position: Position,
        key: dict[str, Any] | None,
        topic: str | None,
        owned: bool,
        check: bool,
    ) -> ChangeEvent:
        """Build the :class:`ChangeEvent` of a change envelope from its fields.

        The fields are the envelope's ``op``, ``source``, ``before``, ``after``,
        ``transaction`` and ``ts_ms`` values (None where the field is missing), exactly as
        :meth:`interpret` would read them from ``payload``. ``payload`` is the whole envelope;
        it is read only for a MongoDB envelope (its update details), so a caller that decoded
        only these fields (the JSON codec's typed path) passes None and must not pass a
        MongoDB envelope (a ``"mongodb"`` connector, or a text ``before``/``after``).
        ``owned`` and ``check`` are :meth:`interpret`'s ``owned`` and ``maybe_unavailable``.
        Raises :class:`DecodeError` exactly as :meth:`interpret` does for that envelope.
        """
        op = _OPS.get(op_code) if type(op_code) is str else None
        if op is None:
            raise DecodeError(f"unknown op {op_code!r}: expected one of c, u, d, r, t")
        if raw_source is not None and type(raw_source) is not dict:
            raise DecodeError(
                f"'source' must be an object or null, got {type(raw_source).__name__}"
            )
        source = source_info(raw_source, owned=owned)
        is_mongo = source.connector == _MONGO or isinstance(after, str) or isinstance(before, str)
        if is_mongo:
            if payload is None:
                raise AssertionError("a MongoDB envelope needs its payload")
            before = mongo.decode_image(before)
            after = mongo.decode_image(after)
        if before is not None and type(before) is not dict:
            raise DecodeError(f"'before' must be an object or null, got {type(before).__name__}")
        if after is not None and type(after) is not dict:
            raise DecodeError(f"'after' must be an object or null, got {type(after).__name__}")
        unavailable: tuple[str, ...] = ()
        converter = compiled.row_converter if compiled is not None else None
        if after is not None:
            if check:
                unavailable = take_unavailable(after)
            if converter is not None:
                converter(after, unavailable)
        if before is not None:
            missing_before = take_unavailable(before) if check else ()
            if converter is not None:
                converter(before, missing_before)
            if op is _DELETE:
                unavailable = missing_before
        meta: dict[str, Any] = mongo.update_meta(payload) if is_mongo else {}  # type: ignore[arg-type]
        if after is None and op is not _TRUNCATE and op is not _DELETE:
            if not (is_mongo and op is _UPDATE and meta):
                raise DecodeError(f"op {op.value!r} needs an 'after' row image, got null")
        table = self._table_id(source, topic)
        if is_mongo:
            key = mongo.document_key(key, meta)
        if key is None and op is not _TRUNCATE:
            key = self._derive_key(table, after if after is not None else before, is_mongo)
        if op is _DELETE and before is None and not key:
            raise DecodeError(
                "a delete with neither a key nor a 'before' image names no row to delete "
                "(set key_columns, send the message key, or enable the before image)"
            )
        transaction = None
        if tx is not None and type(tx) is not dict:
            raise DecodeError(f"'transaction' must be an object or null, got {type(tx).__name__}")
        if tx is not None and tx.get("id") is not None:
            transaction = TransactionInfo(
                id=str(tx["id"]),
                total_order=int_or_none(tx.get("total_order")),
                data_collection_order=int_or_none(tx.get("data_collection_order")),
            )
        table_schema = _event_schema(compiled, key)
        return ChangeEvent(
            op=op,
            table=table,
            position=position,
            key=key,
            before=before,
            after=after,
            unavailable=unavailable,
            source=source,
            ts_ms=ts_ms if type(ts_ms) is int else checked_int(ts_ms, "ts_ms"),
            transaction=transaction,
            schema=table_schema,
            meta=meta,
        )

    def _unwrapped(
        self,
        row: dict[str, Any],
        compiled: CompiledSchema | None,
        position: Position,
        key: dict[str, Any] | None,
        topic: str | None,
        check: bool,
    ) -> ChangeEvent:
        unavailable = take_unavailable(row) if check else ()
        if compiled is not None and compiled.row_converter is not None:
            compiled.row_converter(row, unavailable)
        meta = {name[2:]: row.pop(name) for name in [n for n in row if n.startswith("__")]}
        deleted = meta.pop("deleted", None)
        op_code = meta.pop("op", None)
        if op_code is not None:
            op = _OPS.get(op_code) if isinstance(op_code, str) else None
            if op is None:
                raise DecodeError(f"unknown __op {op_code!r}: expected one of c, u, d, r, t")
        elif deleted in (True, "true"):
            op = Op.DELETE
        else:
            op = Op.UPDATE
        if deleted in (True, "true"):
            op = Op.DELETE
        native = {
            name[len("source_") :]: meta.pop(name)
            for name in [n for n in meta if n.startswith("source_")]
        }
        meta_db, meta_schema, meta_table = (
            meta.pop("db", None),
            meta.pop("schema", None),
            meta.pop("table", None),
        )
        source = SourceInfo(
            connector=native.pop("connector", None),
            name=native.pop("name", None),
            ts_ms=checked_int(native.pop("ts_ms", None), "__source_ts_ms"),
            snapshot=normalise_snapshot(native.pop("snapshot", None)),
            database=native.pop("db", None) or meta_db,
            schema=native.pop("schema", None) or meta_schema,
            table=native.pop("table", None) or meta_table,
            version=native.pop("version", None),
            native=native,
        )
        for native_name in _UNWRAPPED_NATIVE:
            if native_name in meta:
                source.native[native_name] = meta.pop(native_name)
        table = self._table_id(source, topic)
        before, after = (row, None) if op is Op.DELETE else (None, row)
        if key is None:
            key = self._derive_key(table, row, is_mongo=False)
        table_schema = _event_schema(compiled, key)
        return ChangeEvent(
            op=op,
            table=table,
            position=position,
            key=key,
            before=before,
            after=after,
            unavailable=unavailable,
            source=source,
            ts_ms=checked_int(meta.pop("ts_ms", None), "__ts_ms"),
            schema=table_schema,
            meta=meta,
        )

    def _derive_key(
        self, table: TableId, row: dict[str, Any] | None, is_mongo: bool
    ) -> dict[str, Any] | None:
        """The key of a message sent without one: MongoDB's ``_id``, else the key columns."""
        if row is None:
            return None
        if is_mongo:
            found = mongo.id_of(row)
            if found is not None:
                return found
        return self._key_columns.key_of(table, row)


def _event_schema(
    compiled: CompiledSchema | None, key: dict[str, Any] | None
) -> TableSchema | None:
    """The table schema an event carries.

    The compiled schema, keyed by the message key's columns when it names no key columns.
    """
    if compiled is None or compiled.table_schema is None:
        return None
    if key and not compiled.table_schema.key_columns:
        return compiled.with_key(tuple(key))
    return compiled.table_schema
