"""Content detectors: valid values are found inside longer text, look-alikes are not."""

from __future__ import annotations

import pytest

from cdcflow.transforms.redact.detectors import (
    ALL_DETECTORS,
    build_detectors,
    find_all,
    iban_valid,
    luhn_valid,
)


def spans(name: str, text: str) -> list[str]:
    (detector,) = build_detectors([name])  # type: ignore[list-item]
    return [text[a:b] for a, b in detector.find(text)]


# --- checksums -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "digits",
    ["4111111111111111", "5500000000000004", "378282246310005", "6011111111111117", "79927398713"],
)
def test_luhn_accepts_valid_numbers(digits: str) -> None:
    assert luhn_valid(digits)


@pytest.mark.parametrize("digits", ["4111111111111112", "5500000000000005", "79927398710", "12a4"])
def test_luhn_rejects_invalid_numbers(digits: str) -> None:
    assert not luhn_valid(digits)


@pytest.mark.parametrize(
    "iban",
    [
        "DE89370400440532013000",
        "GB82WEST12345698765432",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "NO9386011117947",
    ],
)
def test_iban_checksum_accepts_valid(iban: str) -> None:
    assert iban_valid(iban)


@pytest.mark.parametrize(
    "iban",
    [
        "DE89370400440532013001",  # checksum off by one
        "GB82WEST12345698765433",
        "DE8937040044053201300",  # wrong length for DE
        "XX00",
        "DE89-3704-0044-0532-0130-00",  # not alphanumeric
    ],
)
def test_iban_checksum_rejects_invalid(iban: str) -> None:
    assert not iban_valid(iban)


# --- detectors, valid and embedded -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "email",
            "write to ada.lovelace+cdc@mail.example.co.uk today",
            "ada.lovelace+cdc@mail.example.co.uk",
        ),
        ("email", "(grace@example.org).", "grace@example.org"),
        ("phone", "call +44 20 7946 0018 now", "+44 20 7946 0018"),
        ("phone", "e164:+14155552671;", "+14155552671"),
        ("phone", "tel +1 (202) 555-0143 ext", "+1 (202) 555-0143"),
        ("phone", "office (202) 555-0143", "(202) 555-0143"),
        ("phone", "cell 202-555-0143.", "202-555-0143"),
        ("phone", "cell 202.555.0143", "202.555.0143"),
        ("phone", "London 020 7946 0018", "020 7946 0018"),
        ("phone", "Berlin 030 12345678", "030 12345678"),
        ("phone", "Paris 01 23 45 67 89", "01 23 45 67 89"),
        ("phone", "mobile 07700900123", "07700900123"),
        ("card", "paid with 4111 1111 1111 1111 yesterday", "4111 1111 1111 1111"),
        ("card", "card=4111-1111-1111-1111", "4111-1111-1111-1111"),
        ("card", "amex 378282246310005.", "378282246310005"),
        ("ssn", "SSN 123-45-6789.", "123-45-6789"),
        ("ssn", "ssn 123 45 6789", "123 45 6789"),
        ("iban", "IBAN DE89 3704 0044 0532 0130 00 thanks", "DE89 3704 0044 0532 0130 00"),
        ("iban", "to GB82WEST12345698765432.", "GB82WEST12345698765432"),
        ("ipv4", "from 192.168.1.10, port 80", "192.168.1.10"),
        ("ipv4", "host 255.255.255.255", "255.255.255.255"),
        ("ipv6", "addr 2001:db8::8a2e:370:7334 up", "2001:db8::8a2e:370:7334"),
        ("ipv6", "lo ::1", "::1"),
        ("ipv6", "mapped ::ffff:192.0.2.1", "::ffff:192.0.2.1"),
        (
            "ipv6",
            "full 2001:0db8:0000:0000:0000:ff00:0042:8329",
            "2001:0db8:0000:0000:0000:ff00:0042:8329",
        ),
        (
            "jwt",
            "t=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl end",
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl",
        ),
        ("bearer", "Authorization: Bearer abc123def456ghi", "abc123def456ghi"),
        ("bearer", "authorization: bearer mF_9.B5f-4.1JqM", "mF_9.B5f-4.1JqM"),
    ],
)
def test_detector_finds_embedded_value(name: str, text: str, expected: str) -> None:
    assert spans(name, text) == [expected]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("email", "no at sign here, just example.com"),
        ("email", "user@localhost"),
        ("phone", "order 1001 shipped"),
        ("phone", "on 2024-06-10 at 10:30"),
        ("phone", "total 12345"),
        ("card", "4111 1111 1111 1112"),  # Luhn fails
        ("card", "4111111111111112"),
        ("card", "123456789012"),  # too short
        ("card", "41111111111111111111111"),  # too long, and not a card
        ("ssn", "000-12-3456"),
        ("ssn", "666-12-3456"),
        ("ssn", "912-12-3456"),
        ("ssn", "123-00-4567"),
        ("ssn", "123-45-0000"),
        ("ssn", "123-45-67890"),
        ("iban", "DE89 3704 0044 0532 0130 01"),  # bad checksum
        ("iban", "GB82WEST12345698765433"),
        ("ipv4", "version 1.2.3.4.5"),
        ("ipv4", "256.1.1.1"),
        ("ipv4", "10.0.0.256"),
        ("ipv6", "at 10:30:00"),
        ("ipv6", "mac 00:1a:2b:3c:4d:5e"),
        ("ipv6", "bad 2001:db8:::1"),
        ("jwt", "eyJub3QganNvbg.eyJhIjoxfQ.sig"),  # header is not JSON
        ("bearer", "the bearer of bad news"),
        ("bearer", "Bearer instruments"),
    ],
)
def test_detector_ignores_look_alikes(name: str, text: str) -> None:
    assert spans(name, text) == []


def test_several_values_in_one_text_are_all_found() -> None:
    text = (
        "Ada <ada@example.com>, +44 20 7946 0018, card 4111 1111 1111 1111 "
        "and 5500 0000 0000 0004, from 10.1.2.3"
    )
    found = find_all(text, build_detectors())
    names = [name for _, _, name in found]
    assert names == ["email", "phone", "card", "card", "ipv4"]


def test_overlapping_spans_are_merged() -> None:
    text = "+1 202 555 0143 4111 1111 1111 1111"
    found = find_all(text, build_detectors(["phone", "card"]))
    assert len(found) == 1
    start, end, _ = found[0]
    assert (start, end) == (0, len(text))


def test_build_detectors_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        build_detectors(["email", "passport"])  # type: ignore[list-item]


def test_every_detector_is_built_by_default() -> None:
    assert [d.name for d in build_detectors()] == list(ALL_DETECTORS)


@pytest.mark.parametrize(
    "text",
    [
        "1 " * 50_000,
        "+1" + " 2" * 50_000 + "x",
        "0" + "-12" * 30_000 + "a",
        "a" * 100_000 + "@",
        "@" + "b" * 100_000,
        "DE89" + " ABCD" * 20_000 + "z",
        "ab:" * 30_000 + "g",
        "eyJ" + "a" * 100_000,
        "bearer " * 20_000,
        "4111" * 25_000 + "x",
        "1.2.3." * 20_000,
    ],
    ids=range(11),
)
def test_adversarial_texts_give_well_formed_spans(text: str) -> None:
    # The time these take is measured in benchmarks/redact_throughput.py (``adversarial``);
    # here only the result: ordered, non-overlapping spans inside the text.
    spans = find_all(text, build_detectors())
    last = 0
    for start, end, name in spans:
        assert last <= start < end <= len(text), (start, end, name)
        last = end
