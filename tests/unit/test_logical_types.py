"""Debezium / Kafka Connect logical types: wire value to Python value, exactly."""

from __future__ import annotations

import base64
import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdcflow.errors import DecodeError
from cdcflow.schemas import logical
from cdcflow.schemas.logical import converter_for

UTC = dt.UTC


def conv(name: str | None, base: str = "int64", **params: str):
    converter = converter_for(name, base, dict(params))
    assert converter is not None, name
    return converter


def connect_bytes(unscaled: int) -> str:
    """Encode an unscaled integer as Kafka Connect does: BigInteger.toByteArray(), base64."""
    length = unscaled.bit_length() // 8 + 1  # minimal two's complement, sign bit included
    return base64.b64encode(unscaled.to_bytes(length, "big", signed=True)).decode()


# -- decimals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "scale", "expected"),
    [
        ("BNI=", "2", "12.34"),  # 0x04D2 = 1234
        ("+y4=", "2", "-12.34"),  # 0xFB2E = -1234
        ("AA==", "2", "0.00"),
        ("AA==", "0", "0"),
        ("fw==", "0", "127"),
        ("AIA=", "0", "128"),  # a leading zero byte keeps it positive
        ("/4A=", "0", "-128"),
        ("/38=", "0", "-129"),
        ("AlQL4/8=", "2", "99999999.99"),
        ("AQ==", "10", "0.0000000001"),
        ("ZA==", "4", "0.0100"),
        ("DA==", "-2", "1200"),  # Oracle NUMBER(p, -2): a negative scale
        # NUMERIC(38, 0) maximum: 38 nines, no digit lost to the context precision
        ("SztMqFqGxHoJiiI//////w==", "0", "9" * 38),
        ("SztMqFqGxHoJiiI//////w==", "38", "0." + "9" * 38),
    ],
)
def test_connect_decimal_uses_the_scale_parameter(wire: str, scale: str, expected: str) -> None:
    value = conv(
        logical.CONNECT_DECIMAL, "bytes", scale=scale, **{"connect.decimal.precision": "38"}
    )(wire)
    assert isinstance(value, Decimal)
    assert value == Decimal(expected)
    # the scale is kept: 12.30 stays 12.30, 0.00 stays 0.00
    assert value.as_tuple().exponent == -int(scale)
    assert format(value, "f") == expected


def test_connect_decimal_without_scale_parameter_is_refused() -> None:
    # Kafka Connect refuses a Decimal schema without "scale"; reading it as scale 0 stored
    # values 10^scale too large (issue 9, item 2).
    with pytest.raises(DecodeError, match="no 'scale' parameter"):
        converter_for(logical.CONNECT_DECIMAL, "bytes", {})


def test_connect_decimal_huge_values_are_exact() -> None:
    unscaled = -(10**120) + 7
    value = conv(logical.CONNECT_DECIMAL, "bytes", scale="60")(connect_bytes(unscaled))
    assert value == Decimal(unscaled).scaleb(-60, logical._EXACT)
    assert format(value, "f") == "-" + "9" * 60 + "." + "9" * 59 + "3"


def test_connect_decimal_accepts_rendered_numbers() -> None:
    convert = conv(logical.CONNECT_DECIMAL, "bytes", scale="2")
    # str() compares the exponent too: every result has exactly the schema's 2 places
    assert str(convert("12.50")) == "12.50"
    assert str(convert("12.5")) == "12.50"
    assert str(convert("-3")) == "-3.00"
    assert str(convert(7)) == "7.00"
    assert str(convert(1.5)) == "1.50"
    assert str(convert(Decimal("123456789876543212345678987654321.1"))) == (
        "123456789876543212345678987654321.10"
    )


@pytest.mark.parametrize(
    ("number", "scale", "expected"),
    [
        (12345.11, "3", "12345.110"),  # the JSON number 12345.110, via its float
        (12345, "3", "12345.000"),
        (Decimal("123456789876543212345678987654321.110"), "3",
         "123456789876543212345678987654321.110"),
        ("12.5", "2", "12.50"),
        (1200, "-2", "1.2E+3"),
    ],
)  # fmt: skip
def test_connect_decimal_numbers_get_exactly_the_scale(
    number: object, scale: str, expected: str
) -> None:
    value = conv(logical.CONNECT_DECIMAL, "bytes", scale=scale)(number)
    assert str(value) == expected
    assert value.as_tuple().exponent == -int(scale)


@pytest.mark.parametrize("number", [1.234, Decimal("0.001"), "12.345", 1201])
def test_connect_decimal_digits_beyond_the_scale_are_refused(number: object) -> None:
    scale = "-2" if number == 1201 else "2"
    with pytest.raises(DecodeError, match="more digits than the schema's scale"):
        conv(logical.CONNECT_DECIMAL, "bytes", scale=scale)(number)


def test_connect_decimal_base64_wins_over_numeric_text() -> None:
    # "1000" is valid base64 (bytes d7 4d 34) and a number: the documented rule reads base64,
    # what the JSON converter writes for a Decimal schema (decimal.format=BASE64).
    convert = conv(logical.CONNECT_DECIMAL, "bytes", scale="2")
    unscaled = int.from_bytes(base64.b64decode("1000"), "big", signed=True)
    assert str(convert("1000")) == str(Decimal(unscaled).scaleb(-2))
    assert str(convert("1000.")) == "1000.00"  # not base64: the number


@pytest.mark.parametrize("bad", ["not base64!", "NaN", True, [1], {"a": 1}])
def test_connect_decimal_rejects_garbage(bad: object) -> None:
    with pytest.raises(DecodeError, match="Decimal"):
        conv(logical.CONNECT_DECIMAL, "bytes", scale="2")(bad)


def test_connect_decimal_non_integer_scale_is_reported() -> None:
    with pytest.raises(DecodeError, match="scale"):
        converter_for(logical.CONNECT_DECIMAL, "bytes", {"scale": "two"})


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ({"scale": 3, "value": "BMsv"}, "314.159"),
        ({"scale": 0, "value": "A+k="}, "1001"),
        ({"scale": 2, "value": "+y4="}, "-12.34"),
        ({"scale": 5, "value": "AA=="}, "0.00000"),
    ],
)
def test_variable_scale_decimal(wire: dict, expected: str) -> None:
    value = conv(logical.VARIABLE_SCALE_DECIMAL, "struct")(wire)
    assert value == Decimal(expected)
    assert format(value, "f") == expected


@pytest.mark.parametrize(
    "bad", [{"scale": 2}, {"value": "AA=="}, "12.3", {"scale": "2", "value": "AA=="}]
)
def test_variable_scale_decimal_rejects_malformed(bad: object) -> None:
    with pytest.raises(DecodeError, match="VariableScaleDecimal"):
        conv(logical.VARIABLE_SCALE_DECIMAL, "struct")(bad)


@given(unscaled=st.integers(min_value=-(10**60), max_value=10**60), scale=st.integers(0, 60))
def test_decimal_round_trip(unscaled: int, scale: int) -> None:
    decoded = conv(logical.CONNECT_DECIMAL, "bytes", scale=str(scale))(connect_bytes(unscaled))
    sign, digits, exponent = decoded.as_tuple()
    assert exponent == -scale
    assert int(decoded.scaleb(scale, logical._EXACT)) == unscaled
    assert (sign == 1) == (unscaled < 0)
    assert len(digits) <= max(len(str(abs(unscaled))), 1)


@given(unscaled=st.integers(min_value=-(2**256), max_value=2**256), scale=st.integers(0, 80))
def test_variable_scale_decimal_round_trip(unscaled: int, scale: int) -> None:
    decoded = conv(logical.VARIABLE_SCALE_DECIMAL, "struct")(
        {"scale": scale, "value": connect_bytes(unscaled)}
    )
    assert decoded == Decimal(unscaled).scaleb(-scale, logical._EXACT)
    assert decoded.as_tuple().exponent == -scale


# -- dates and times --------------------------------------------------------------------------


@pytest.mark.parametrize("name", [logical.DBZ_DATE, logical.CONNECT_DATE])
@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (0, dt.date(1970, 1, 1)),
        (19737, dt.date(2024, 1, 15)),
        (19782, dt.date(2024, 2, 29)),  # leap day
        (-1, dt.date(1969, 12, 31)),
        (-25567, dt.date(1900, 1, 1)),
        (-719162, dt.date(1, 1, 1)),
        (2932896, dt.date(9999, 12, 31)),
    ],
)
def test_dates(name: str, days: int, expected: dt.date) -> None:
    assert conv(name, "int32")(days) == expected


def test_date_out_of_range_is_an_error() -> None:
    with pytest.raises(DecodeError, match="out of range"):
        conv(logical.DBZ_DATE, "int32")(2932897)


@pytest.mark.parametrize("name", [logical.DBZ_TIME, logical.CONNECT_TIME])
def test_millisecond_times(name: str) -> None:
    convert = conv(name, "int32")
    assert convert(0) == dt.time(0, 0)
    assert convert(37800500) == dt.time(10, 30, 0, 500000)
    assert convert(86399999) == dt.time(23, 59, 59, 999000)


def test_micro_and_nano_times() -> None:
    assert conv(logical.DBZ_MICRO_TIME)(37800500001) == dt.time(10, 30, 0, 500001)
    assert conv(logical.DBZ_MICRO_TIME)(86399999999) == dt.time(23, 59, 59, 999999)
    # nanoseconds are truncated to microseconds
    assert conv(logical.DBZ_NANO_TIME)(37800500000999) == dt.time(10, 30, 0, 500000)
    assert conv(logical.DBZ_NANO_TIME)(1) == dt.time(0, 0)


@pytest.mark.parametrize("micros", [86_400_000_000, -1])
def test_time_of_day_out_of_range(micros: int) -> None:
    # PostgreSQL's 24:00:00 has no Python time: a clear error, not a wrong value
    with pytest.raises(DecodeError, match="out of range"):
        conv(logical.DBZ_MICRO_TIME)(micros)


@pytest.mark.parametrize("name", [logical.DBZ_TIMESTAMP, logical.CONNECT_TIMESTAMP])
def test_millisecond_timestamps(name: str) -> None:
    convert = conv(name)
    assert convert(1705314600123) == dt.datetime(2024, 1, 15, 10, 30, 0, 123000)
    assert convert(0) == dt.datetime(1970, 1, 1)
    assert convert(-1) == dt.datetime(1969, 12, 31, 23, 59, 59, 999000)
    assert convert(951782400000) == dt.datetime(2000, 2, 29)
    assert convert(1705314600123).tzinfo is None  # naive, as the architecture says


def test_micro_timestamps() -> None:
    convert = conv(logical.DBZ_MICRO_TIMESTAMP)
    assert convert(1705314600123456) == dt.datetime(2024, 1, 15, 10, 30, 0, 123456)
    assert convert(-1) == dt.datetime(1969, 12, 31, 23, 59, 59, 999999)
    assert convert(-2208988800000000) == dt.datetime(1900, 1, 1)
    assert convert(253402300799999999) == dt.datetime(9999, 12, 31, 23, 59, 59, 999999)


def test_nano_timestamps_floor_to_microseconds() -> None:
    convert = conv(logical.DBZ_NANO_TIMESTAMP)
    assert convert(1705314600123456789) == dt.datetime(2024, 1, 15, 10, 30, 0, 123456)
    # before the epoch the instant is floored, never rounded towards the epoch
    assert convert(-1) == dt.datetime(1969, 12, 31, 23, 59, 59, 999999)
    assert convert(-1000) == dt.datetime(1969, 12, 31, 23, 59, 59, 999999)
    assert convert(-1001) == dt.datetime(1969, 12, 31, 23, 59, 59, 999998)


def test_timestamp_out_of_range_is_an_error() -> None:
    with pytest.raises(DecodeError, match="out of range"):
        conv(logical.DBZ_MICRO_TIMESTAMP)(253402300800000000)


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("2024-01-15T10:30:00Z", dt.datetime(2024, 1, 15, 10, 30, tzinfo=UTC)),
        (
            "2024-01-15T12:30:00.123456+02:00",
            dt.datetime(2024, 1, 15, 10, 30, 0, 123456, tzinfo=UTC),
        ),
        (
            "2024-01-15T10:30:00.1234567-05:00",
            dt.datetime(2024, 1, 15, 15, 30, 0, 123456, tzinfo=UTC),
        ),
        (
            "2024-01-15T10:30:00.123456789+01:00",
            dt.datetime(2024, 1, 15, 9, 30, 0, 123456, tzinfo=UTC),
        ),
        ("2024-02-29T23:59:59.5Z", dt.datetime(2024, 2, 29, 23, 59, 59, 500000, tzinfo=UTC)),
        ("1969-12-31T23:59:59.999999Z", dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ],
)
def test_zoned_timestamps_are_utc_aware(wire: str, expected: dt.datetime) -> None:
    value = conv(logical.DBZ_ZONED_TIMESTAMP, "string")(wire)
    assert value == expected
    assert value.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize("bad", ["2024-01-15T10:30:00", "yesterday", 1705314600])
def test_zoned_timestamp_rejects_naive_or_garbage(bad: object) -> None:
    with pytest.raises(DecodeError, match="ZonedTimestamp"):
        conv(logical.DBZ_ZONED_TIMESTAMP, "string")(bad)


def test_zoned_time_keeps_its_offset() -> None:
    convert = conv(logical.DBZ_ZONED_TIME, "string")
    assert convert("08:00:00Z") == dt.time(8, 0, tzinfo=UTC)
    value = convert("10:15:30.123456789+02:00")
    assert value == dt.time(10, 15, 30, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with pytest.raises(DecodeError, match="ZonedTime"):
        convert("10:15:30")


@given(st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)))
def test_timestamp_round_trips(instant: dt.datetime) -> None:
    micros = (instant - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)
    assert conv(logical.DBZ_MICRO_TIMESTAMP)(micros) == instant
    assert conv(logical.DBZ_NANO_TIMESTAMP)(micros * 1000 + 999) == instant
    millis = micros // 1000
    assert conv(logical.DBZ_TIMESTAMP)(millis) == instant.replace(
        microsecond=instant.microsecond // 1000 * 1000
    )
    assert conv(logical.CONNECT_TIMESTAMP)(millis) == conv(logical.DBZ_TIMESTAMP)(millis)
    zoned = conv(logical.DBZ_ZONED_TIMESTAMP, "string")(instant.isoformat() + "Z")
    assert zoned == instant.replace(tzinfo=UTC)


@given(st.times())
def test_time_round_trips(moment: dt.time) -> None:
    micros = ((moment.hour * 60 + moment.minute) * 60 + moment.second) * 1_000_000
    micros += moment.microsecond
    assert conv(logical.DBZ_MICRO_TIME)(micros) == moment
    assert conv(logical.DBZ_NANO_TIME)(micros * 1000 + 321) == moment


@given(st.dates())
def test_date_round_trips(day: dt.date) -> None:
    assert conv(logical.DBZ_DATE, "int32")((day - dt.date(1970, 1, 1)).days) == day


@pytest.mark.parametrize(
    "name",
    [logical.DBZ_DATE, logical.DBZ_MICRO_TIMESTAMP, logical.DBZ_MICRO_TIME, logical.DBZ_TIMESTAMP],
)
@pytest.mark.parametrize("bad", ["12", 1.5, True])
def test_integer_types_reject_non_integers(name: str, bad: object) -> None:
    with pytest.raises(DecodeError, match=name.rsplit(".", 1)[-1]):
        conv(name)(bad)


# -- everything else --------------------------------------------------------------------------


def test_plain_bytes_are_base64_decoded() -> None:
    assert conv(None, "bytes")("3q2+7w==") == bytes.fromhex("deadbeef")
    with pytest.raises(DecodeError, match="base64"):
        conv(None, "bytes")("***")


@pytest.mark.parametrize("name", sorted(logical.PASS_THROUGH))
def test_pass_through_types_have_no_converter(name: str) -> None:
    assert converter_for(name, "string", {}) is None


def test_plain_types_have_no_converter() -> None:
    for base in ("int32", "int64", "string", "boolean", "float64", "struct", "array"):
        assert converter_for(None, base, {}) is None


@pytest.mark.parametrize("scale", [2**80, -(2**80), 1_000_001])
def test_absurd_scales_are_decode_errors(scale: int) -> None:
    with pytest.raises(DecodeError, match="scale"):
        conv(logical.VARIABLE_SCALE_DECIMAL, "struct")({"scale": scale, "value": "AQ=="})
    with pytest.raises(DecodeError, match="scale"):
        converter_for(logical.CONNECT_DECIMAL, "bytes", {"scale": str(scale)})
