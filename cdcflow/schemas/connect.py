"""Kafka Connect schemas (the JSON converter's ``schema`` block) compiled into row checkers.

A struct schema is compiled **once** into a function that checks a parsed row in place
against it and converts its logical types (:func:`cdcflow.schemas.logical.converter_for`):

* every value must have its Connect type: ``boolean`` a JSON boolean, ``int8``..``int64`` an
  integer within the type's range, ``float32``/``float64`` a number, ``string`` text,
  ``bytes`` base64 text, ``struct`` an object (its fields checked the same way), ``array``
  a list (each element checked), ``map`` an object (each value checked; a list of
  ``[key, value]`` pairs when the keys are not strings, as the converter writes them);
* ``null``, or a missing field, is accepted only for an ``optional`` field (Connect's default
  is *not* optional) or a field with a ``default``: a
  null or missing required field with a default becomes the default (a missing optional
  field stays missing, as sent);
* a failure is a :class:`~cdcflow.errors.DecodeError` naming the column (``a.b`` inside a
  struct, ``a[]`` for array elements) and the expected type, never the value itself.

Fields the row has but the schema does not name are kept as sent.

Speed: a row whose value types (one ``type()`` per field) match a combination already seen
valid skips the per-field type checks; only integer ranges and the logical-type conversions
then run. A combination is remembered only when it needed no change to the row.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from cdcflow.errors import DecodeError
from cdcflow.schemas import logical

Converter = Callable[[Any], Any]
RowChecker = Callable[[dict[str, Any], "frozenset[str] | tuple[str, ...]"], None]

_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38
_SIG_LIMIT = 64


#: Type names some producers write for Connect's (Avro-style spellings).
_ALIASES = {"double": "float64", "float": "float32", "int": "int32", "long": "int64"}


def _as_sent(value: Any) -> Any:
    return value


class _Missing:
    __slots__ = ()


_MISSING = _Missing()
_object = object


def _describe(value: Any) -> str:
    if value is None or value is _MISSING:
        return "null" if value is None else "nothing (the field is missing)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, (float, Decimal)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


class _Field:
    """One compiled field: how to check and convert its non-null values."""

    __slots__ = (
        "check",
        "conv",
        "default",
        "fast_types",
        "has_default",
        "name",
        "optional",
        "path",
        "range",
    )

    def __init__(self, schema: Mapping[str, Any], name: str, path: str) -> None:
        self.name = name
        self.path = path
        self.optional = schema.get("optional") is True
        base = schema.get("type")
        base = _ALIASES.get(base, base) if isinstance(base, str) else base
        logical_name = schema.get("name")
        params = schema.get("parameters") or {}
        if not isinstance(params, dict):
            raise DecodeError(f"column {path!r}: schema parameters must be an object")
        try:
            conv = logical.converter_for(
                logical_name if isinstance(logical_name, str) else None,
                str(base),
                {str(k): str(v) for k, v in params.items()},
            )
        except DecodeError as exc:
            raise DecodeError(f"column {path!r}: {exc}") from None
        expected = f"{base}" if logical_name is None else f"{base} ({logical_name})"
        self.range: tuple[int | float, int | float] | None = None
        fast: tuple[type, ...]
        check: Converter
        if base in _INT_RANGES:
            lo, hi = _INT_RANGES[str(base)]
            fast = (int,)
            check = self._int_check(lo, hi, conv, expected)
            if conv is None:
                self.range = (lo, hi)
        elif base in ("float32", "float64"):
            fast = (float, int)
            limit = _FLOAT32_MAX if base == "float32" else None
            check = self._float_check(limit, expected)
            if limit is not None:
                self.range = (-limit, limit)
        elif base == "boolean":
            fast = (bool,)
            check = self._type_check((bool,), expected)
        elif base == "string":
            fast = (str,)
            check = self._type_check((str,), expected)
        elif base == "bytes":
            if logical_name == logical.CONNECT_DECIMAL:
                fast = (str, int, float, Decimal)
            else:
                fast = (str,)
            check = self._type_check(fast, expected)
        elif base == "struct":
            fast = (dict,)
            if conv is None:
                inner = compile_struct(schema, f"{path}.")
                conv = _struct_converter(inner)
            check = self._type_check(fast, expected)
        elif base == "array":
            items = schema.get("items")
            if not isinstance(items, dict):
                raise DecodeError(f"column {path!r}: an array schema needs 'items'")
            fast = (list,)
            conv = _array_converter(_Field(items, name, f"{path}[]"))
            check = self._type_check(fast, expected)
        elif base == "map":
            keys, values = schema.get("keys"), schema.get("values")
            if not isinstance(keys, dict) or not isinstance(values, dict):
                raise DecodeError(f"column {path!r}: a map schema needs 'keys' and 'values'")
            text_keys = keys.get("type") == "string"
            fast = (dict,) if text_keys else (dict, list)
            conv = _map_converter(
                _Field(keys, name, f"{path}{{}}"), _Field(values, name, f"{path}[]"), path
            )
            check = self._type_check(fast, expected)
        else:
            # A type Connect does not define: nothing to check it against, kept as sent.
            fast = (object,)
            check = _as_sent
        self.fast_types = frozenset(fast)
        self.conv = conv
        self.check = self._with_conv(check, conv)
        self.has_default = "default" in schema and schema["default"] is not None
        self.default = self.check(schema["default"]) if self.has_default else None

    def _fail(self, expected: str, value: Any, why: str = "") -> DecodeError:
        return DecodeError(
            f"column {self.path!r}: expected {expected}, got {_describe(value)}{why}"
        )

    def _type_check(self, types: tuple[type, ...], expected: str) -> Converter:
        def check(value: Any) -> Any:
            if type(value) not in types:
                raise self._fail(expected, value)
            return value

        return check

    def _int_check(self, lo: int, hi: int, conv: Converter | None, expected: str) -> Converter:
        def check(value: Any) -> Any:
            if type(value) is not int:
                raise self._fail(expected, value)
            if not lo <= value <= hi and conv is None:
                raise self._fail(expected, value, f" outside {lo}..{hi}")
            return value

        return check

    def _float_check(self, limit: float | None, expected: str) -> Converter:
        def check(value: Any) -> Any:
            kind = type(value)
            if kind is Decimal:
                value = float(value)  # a long number the JSON decoder kept exact
            elif kind is not float and kind is not int:
                raise self._fail(expected, value)
            if limit is not None and not -limit <= value <= limit:
                raise self._fail(expected, value, " outside the float32 range")
            return value

        return check

    def _with_conv(self, check: Converter, conv: Converter | None) -> Converter:
        if conv is None:
            return check
        path = self.path

        def check_and_convert(value: Any) -> Any:
            value = check(value)
            try:
                return conv(value)
            except DecodeError as exc:
                if str(exc).startswith("column "):
                    raise
                raise DecodeError(f"column {path!r}: {exc}") from None
            except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:
                raise DecodeError(f"column {path!r}: cannot decode ({exc})") from None

        return check_and_convert

    def value(self, value: Any) -> Any:
        """Check (and convert) one value, null and missing included."""
        if value is None or value is _MISSING:
            if self.has_default:
                return self.default
            if self.optional:
                return None
            raise DecodeError(
                f"column {self.path!r}: a value is required (the field is not optional), "
                f"got {_describe(value)}"
            )
        return self.check(value)


def _struct_converter(inner: RowChecker) -> Converter:
    def convert(value: dict[str, Any]) -> dict[str, Any]:
        inner(value, ())
        return value

    return convert


def _array_converter(item: _Field) -> Converter:
    each = item.value

    def convert(values: list[Any]) -> list[Any]:
        return [each(v) for v in values]

    return convert


def _map_converter(key: _Field, value: _Field, path: str) -> Converter:
    each = value.value
    each_key = key.value

    def convert(values: Any) -> Any:
        if type(values) is dict:
            return {k: each(v) for k, v in values.items()}
        out = []
        for pair in values:
            if type(pair) is not list or len(pair) != 2:
                raise DecodeError(f"column {path!r}: expected [key, value] pairs of a map")
            out.append([each_key(pair[0]), each(pair[1])])
        return out

    return convert


def compile_struct(schema: Mapping[str, Any], prefix: str = "") -> RowChecker:
    """Compile a struct schema into ``check(row, absent)``, which checks ``row`` in place.

    ``absent`` names columns that may be missing whatever their schema says (the TOAST
    placeholders the decoder removed); they stay missing. Raises :class:`DecodeError` for a
    schema that cannot be used (a Decimal without ``scale``, an unknown type...).
    """
    raw_fields = schema.get("fields")
    if raw_fields is None:
        raw_fields = []
    if not isinstance(raw_fields, list):
        raise DecodeError(
            f"the struct schema {prefix.rstrip('.') or 'value'!r}: 'fields' must be a list"
        )
    fields: list[_Field] = []
    for raw in raw_fields:
        if not isinstance(raw, dict) or not isinstance(raw.get("field"), str):
            raise DecodeError("a struct schema field must be an object with a 'field' name")
        fields.append(_Field(raw, raw["field"], prefix + raw["field"]))
    names = tuple(f.name for f in fields)
    if not names:
        return _no_check
    getter = operator.itemgetter(*names)
    single = len(names) == 1
    ranged = tuple((f.name, f.range[0], f.range[1], f) for f in fields if f.range is not None)
    converting = tuple((f.name, f.conv, f) for f in fields if f.conv is not None)
    known: set[tuple[type, ...]] = set()

    def slow(row: dict[str, Any], absent: frozenset[str] | tuple[str, ...]) -> bool:
        """Check every field; True when the row was valid as it was (nothing changed)."""
        clean = not absent
        for field in fields:
            name = field.name
            value = row.get(name, _MISSING)
            if value is _MISSING and name in absent:
                continue
            if value is _MISSING or value is None:
                if value is _MISSING and field.optional and not field.has_default:
                    continue  # a missing optional field stays missing
                clean = False if value is _MISSING or field.has_default else clean
                row[name] = field.value(value)
                continue
            if type(value) not in field.fast_types and _object not in field.fast_types:
                clean = False
            row[name] = field.check(value)
        return clean

    def check(row: dict[str, Any], absent: frozenset[str] | tuple[str, ...] = ()) -> None:
        try:
            found = getter(row)
        except KeyError:
            slow(row, absent)
            return
        signature = (type(found),) if single else tuple(map(type, found))
        if signature not in known:
            if slow(row, absent) and len(known) < _SIG_LIMIT:
                known.add(signature)
            return
        for name, lo, hi, field in ranged:
            value = row[name]
            if value is not None and not lo <= value <= hi:
                field.check(value)  # raises with the column and range
        for name, conv, field in converting:
            value = row[name]
            if value is not None:
                try:
                    row[name] = conv(value)
                except DecodeError as exc:
                    if str(exc).startswith("column "):
                        raise
                    raise DecodeError(f"column {field.path!r}: {exc}") from None
                except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:
                    raise DecodeError(f"column {field.path!r}: cannot decode ({exc})") from None

    return check


def _no_check(row: dict[str, Any], absent: frozenset[str] | tuple[str, ...] = ()) -> None:
    """The checker of a struct without fields."""
