"""MongoDB change envelopes: Extended-JSON row images, update descriptions and ``_id`` keys.

Debezium's MongoDB connector sends ``before``/``after`` as Extended-JSON strings
(:mod:`cdcflow.schemas.ejson`), an update without the full document as its
``updateDescription`` (change streams) or ``patch``/``filter`` (the legacy oplog mode), and a
message key whose ``id`` is the document's ``_id`` as Extended-JSON text. The envelope
interpreter calls these functions only for envelopes it has recognised as MongoDB's (the
connector is ``mongodb``, or a row image is a string).
"""

from __future__ import annotations

from typing import Any

import msgspec

from cdcflow.errors import DecodeError
from cdcflow.schemas import ejson
from cdcflow.schemas.logical import JSON_DECODER

#: ``source.connector`` of Debezium's MongoDB connector.
CONNECTOR = "mongodb"


def decode_image(image: Any) -> Any:
    """A row image as a document: Extended-JSON text decoded, anything else as it is."""
    return ejson.decode_document(image) if isinstance(image, str) else image


def update_meta(payload: dict[str, Any]) -> dict[str, Any]:
    """MongoDB's update details of an envelope, Extended JSON decoded (for ``meta``).

    Debezium 2.x (``capture.mode=change_streams``) sends ``updateDescription`` with
    ``updatedFields`` as an Extended-JSON string, ``removedFields`` and ``truncatedArrays``;
    the legacy oplog mode sends ``patch`` and ``filter`` strings. Empty when there are none.
    """
    meta: dict[str, Any] = {}
    description = payload.get("updateDescription")
    if isinstance(description, dict):
        updated = description.get("updatedFields")
        if isinstance(updated, str):
            updated = ejson.decode_document(updated)
        meta["updateDescription"] = {
            "updatedFields": updated,
            "removedFields": description.get("removedFields"),
            "truncatedArrays": description.get("truncatedArrays"),
        }
    for name in ("patch", "filter"):
        value = payload.get(name)
        if value is not None:
            meta[name] = ejson.decode_document(value) if isinstance(value, str) else value
    return meta


def document_key(key: dict[str, Any] | None, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The key of a MongoDB change: ``{"_id": ...}`` when the message tells it.

    A message key ``{"id": <Extended-JSON text>}`` becomes ``{"_id": <value>}``; without a
    message key, the legacy ``filter`` names the ``_id``. Otherwise ``key`` as it is (None: the
    key is then taken from the document, :func:`id_of`).
    """
    if key is not None and "id" in key and "_id" not in key:
        return {"_id": _key_value(key["id"])}
    if key is None and isinstance(meta.get("filter"), dict):
        if "_id" in meta["filter"]:
            return {"_id": meta["filter"]["_id"]}
    return key


def id_of(document: dict[str, Any]) -> dict[str, Any] | None:
    """``{"_id": ...}`` of a document that has one, else None."""
    if "_id" in document:
        return {"_id": document["_id"]}
    return None


def _key_value(value: Any) -> Any:
    """MongoDB keys carry ``_id`` as Extended-JSON text (``{"$oid": ...}``, or a quoted id)."""
    if isinstance(value, str):
        try:
            return ejson.convert_value(JSON_DECODER.decode(value))
        except (msgspec.DecodeError, DecodeError):
            return value
    return ejson.convert_value(value)
