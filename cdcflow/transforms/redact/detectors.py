"""Content detectors: find personal data embedded anywhere in a text value.

Each detector returns the ``(start, end)`` spans of the values it found. A cheap pre-filter
(a character the value must contain) runs first, then a compiled regular expression finds
candidates, then a validator rejects candidates that only look like the real thing:

========  ===================================================================================
email     ``local@domain.tld``; the local part takes every RFC 5322 atom character
phone     E.164 (``+44 20 7946 0018``, ``+14155552671``), NANP (``(202) 555-0143``,
          ``202-555-0143``, ``202.555.0143``) and national trunk-``0`` formats
          (``020 7946 0018``, ``030 12345678``, ``01 23 45 67 89``, ``07700900123``)
card      13-19 digits, optionally grouped by single spaces or dashes, **Luhn-checked**
ssn       US social security numbers ``AAA-GG-SSSS`` (or space-separated); invalid areas
          (000, 666, 9xx), group 00 and serial 0000 are not detected
iban      upper-case IBANs, compact or in groups of four, **mod-97 checked** (and the country's
          length when the country is known)
ipv4      dotted quads with octets 0-255
ipv6      any form :mod:`ipaddress` accepts (``::1``, ``2001:db8::8a2e:370:7334``,
          ``::ffff:192.0.2.1``, zone ids)
jwt       ``header.payload.signature`` whose header is base64url JSON (``eyJ...``)
bearer    the token after ``Bearer`` (case-insensitive), not the word itself
========  ===================================================================================

Detectors never log or raise with the text they scan.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

DetectorName = Literal["email", "phone", "card", "ssn", "iban", "ipv4", "ipv6", "jwt", "bearer"]

#: Every detector, in the order they are applied (the order only matters for naming overlaps).
ALL_DETECTORS: tuple[DetectorName, ...] = (
    "jwt",
    "bearer",
    "email",
    "iban",
    "card",
    "ssn",
    "phone",
    "ipv6",
    "ipv4",
)

Span = tuple[int, int]


# --- checksums -------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn (mod 10) check."""
    total = 0
    parity = len(digits) % 2
    for index, char in enumerate(digits):
        value = ord(char) - 48
        if value < 0 or value > 9:
            return False
        if index % 2 == parity:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


#: Lengths of IBANs per country (ISO 13616 registry, the common ones).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20,
    "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18,
    "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30,
    "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_valid(iban: str) -> bool:
    """True when ``iban`` (no spaces, upper case) has a valid length and mod-97 checksum."""
    if not 15 <= len(iban) <= 34 or not iban.isalnum() or not iban.isascii():
        return False
    country = iban[:2]
    if not country.isalpha() or not iban[2:4].isdigit():
        return False
    expected = IBAN_LENGTHS.get(country)
    if expected is not None and expected != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


# --- detectors -------------------------------------------------------------------------------


class Detector:
    """One kind of personal data: ``find(text)`` returns the spans it occupies in ``text``."""

    def __init__(
        self,
        name: DetectorName,
        pattern: str,
        *,
        needs: str | Callable[[str], bool] | None = None,
        digits: bool = False,
        validate: Callable[[re.Match[str]], Span | list[Span] | None] | None = None,
        flags: int = 0,
        retry: bool = True,
    ) -> None:
        self.name = name
        self.retry = retry
        self.regex = re.compile(pattern, flags)
        self.needs = needs
        self.digits = digits
        self.validate = validate
        self.search = self.regex.search

    def may_match(self, text: str, has_digit: bool) -> bool:
        """The cheap pre-filters: a required digit or substring, then one regex search."""
        if self.digits and not has_digit:
            return False
        needs = self.needs
        if needs is not None:
            if type(needs) is str:
                if needs not in text:
                    return False
            elif not needs(text):  # type: ignore[operator]
                return False
        return self.search(text) is not None

    def find(self, text: str) -> list[Span]:
        """The spans of every valid match in ``text`` (non-overlapping, in order)."""
        if not self.may_match(text, _DIGIT(text) is not None):
            return []
        return self.find_candidates(text)

    def find_candidates(self, text: str) -> list[Span]:
        """Like :meth:`find`, without the pre-filters (the caller has applied them)."""
        if self.validate is None:
            return [m.span() for m in self.regex.finditer(text)]
        spans: list[Span] = []
        search = self.search
        position = 0
        while True:
            match = search(text, position)
            if match is None:
                return spans
            found = self.validate(match)
            if isinstance(found, list):
                spans.extend(found)
            elif found is not None:
                spans.append(found)
            elif self.retry:
                # Rejected: the real value may start inside the candidate (an IBAN after a
                # postcode the pattern swallowed), so try the next start, not the match's end.
                position = match.start() + 1
                continue
            # A validator may accept less than the regex consumed (a phone number followed by
            # more digit groups): search again right after what it accepted.
            position = match.end()
            if spans and match.start() < spans[-1][1] < position:
                position = spans[-1][1]

    def __repr__(self) -> str:
        return f"Detector({self.name!r})"


_DIGIT = re.compile(r"[0-9]").search
#: Every detector needs one of these in the text (the ipv6 forms all contain ':').
_GATE = re.compile(r"[0-9@:]|eyJ|(?i:bearer)").search


def _groups(text: str, offset: int) -> list[tuple[int, int]]:
    """Spans (absolute) of the digit groups of ``text`` (which starts at ``offset``)."""
    return [(m.start() + offset, m.end() + offset) for m in re.finditer(r"\d+", text)]


def _validate_card(match: re.Match[str]) -> list[Span]:
    """Every Luhn-valid run of 13-19 digits in the candidate (the longest at each group).

    Runs may overlap (the spans are merged later): a card number next to other numbers is
    found wherever its groups start.
    """
    groups = _groups(match.group(0), match.start())
    text = match.string
    spans: list[Span] = []
    covered = -1
    for first in range(len(groups)):
        count = 0
        best: Span | None = None
        for last in range(first, len(groups)):
            count += groups[last][1] - groups[last][0]
            if count > 19:
                break
            if count >= 13:
                digits = "".join(text[a:b] for a, b in groups[first : last + 1])
                if luhn_valid(digits):
                    best = (groups[first][0], groups[last][1])
        if best is not None and best[1] > covered:
            spans.append(best)
            covered = best[1]
    return spans


def _card_detector() -> Detector:
    return Detector(
        "card",
        r"(?<![\d])\d(?:[ \-]?\d){12,}(?![\d])",
        digits=True,
        validate=_validate_card,
        retry=False,  # the validator itself tries every digit group as a start
    )


def _validate_phone(match: re.Match[str]) -> Span | None:
    """Accept a candidate with enough digits: 7 after ``+``, 9 with a trunk ``0``.

    A candidate with more digits than one number can hold (15 in E.164) is numbers written
    next to each other; it is accepted whole, since cutting it at a guessed boundary could
    leave part of a number behind.
    """
    text = match.group(0)
    digits = sum(map(str.isdigit, text))
    if text.startswith("+"):
        return match.span() if digits >= 7 else None
    if text.startswith("0"):
        return match.span() if digits >= 9 else None
    return match.span()


_PHONE = r"""
(?<![\w+])
(?:
   \+\d++(?:[ .\-]?\(?\d++\)?(?![A-Za-z_@]))*+   # international: + and the run of groups
 | \(\d{3}\)[ ]?\d{3}[ .\-]\d{4}          # NANP (202) 555-0143
 | [2-9]\d{2}[.\-]\d{3}[.\-]\d{4}          # NANP 202-555-0143, 202.555.0143
 | 0\d++(?:[ .\-]\d++(?![A-Za-z_@]))*+         # national trunk 0, compact or grouped
)
(?!\w)
"""


def _validate_ssn(match: re.Match[str]) -> Span | None:
    area, group, serial = match.group("area"), match.group("group"), match.group("serial")
    if area in ("000", "666") or area.startswith("9") or group == "00" or serial == "0000":
        return None
    return match.span()


def _validate_iban(match: re.Match[str]) -> Span | None:
    """The longest prefix of the candidate that is a valid IBAN (spaces ignored)."""
    text = match.group(0)
    start = match.start()
    # Map every non-space character to its position so a shorter valid prefix can be found.
    chars = [(start + i, ch) for i, ch in enumerate(text) if ch != " "][:34]
    expected = IBAN_LENGTHS.get(text[:2])
    if expected is not None:
        if expected <= len(chars) and iban_valid("".join(ch for _, ch in chars[:expected])):
            return (start, chars[expected - 1][0] + 1)
        return None
    # An unlisted country: the mod-97 remainder of every prefix in one pass (the check
    # characters move behind the body: remainder = body * 10**6 + check, mod 97).
    check = int("".join(str(int(ch, 36)) for _, ch in chars[:4]))
    remainder = 0
    best: Span | None = None
    for index in range(4, len(chars)):
        value = int(chars[index][1], 36)
        remainder = (remainder * (10 if value < 10 else 100) + value) % 97
        if index >= 14 and (remainder * 1_000_000 + check) % 97 == 1:
            best = (start, chars[index][0] + 1)
    return best


def _validate_ipv6(match: re.Match[str]) -> Span | None:
    """The address in the candidate, trying each group as its start (leftmost first).

    A candidate may carry a look-alike in front (``8080:2001:db8::1`` after a port); the
    pattern cannot start inside it, so the group starts are tried here.
    """
    text = match.group(0)
    if text.count(":") < 2 or len(text) > 100:
        return None
    starts = [0] + [i + 1 for i in range(len(text) - 1) if text[i] == ":" != text[i + 1]]
    for offset in starts:
        found = _ipv6_at(text[offset:], match.start() + offset)
        if found is not None:
            return found
    return None


def _ipv6_at(text: str, start: int) -> Span | None:
    if text.count(":") < 2:
        return None
    end = start + len(text)
    for trim_left in (0, 1):
        for trim_right in (0, 1):
            if trim_left and (not text.startswith(":") or text.startswith("::")):
                continue
            if trim_right and not text.endswith((":", ".")):
                continue
            candidate = text[trim_left : len(text) - trim_right]
            if candidate.count(":") < 2:
                continue
            try:
                ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            return (start + trim_left, end - trim_right)
    return None


def _validate_jwt(match: re.Match[str]) -> Span | None:
    header = match.group(1)
    padded = header + "=" * (-len(header) % 4)
    try:
        decoded = json.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return match.span() if isinstance(decoded, dict) else None


def _validate_bearer(match: re.Match[str]) -> Span | None:
    token = match.group(1)
    if len(token) < 8:
        return None
    if len(token) < 20 and token.isalpha():
        return None  # an ordinary word ("bearer instruments"), not a credential
    return match.span(1)


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"

_FACTORIES: dict[DetectorName, Callable[[], Detector]] = {
    "email": lambda: Detector(
        "email",
        r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+"
        r"[A-Za-z](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?",
        needs="@",
    ),
    "phone": lambda: Detector(
        "phone", _PHONE, digits=True, validate=_validate_phone, flags=re.VERBOSE
    ),
    "card": _card_detector,
    "ssn": lambda: Detector(
        "ssn",
        r"(?<![\d\-])(?P<area>\d{3})(?P<sep>[\- ])(?P<group>\d{2})(?P=sep)"
        r"(?P<serial>\d{4})(?![\d\-])",
        digits=True,
        validate=_validate_ssn,
    ),
    "iban": lambda: Detector(
        "iban",
        # Bounded (at most 34 characters without the spaces) so that a rejected candidate
        # is retried at the next start in linear time; the validator picks the prefix.
        r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}",
        digits=True,
        validate=_validate_iban,
    ),
    "ipv4": lambda: Detector(
        "ipv4",
        rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)",
        digits=True,
        needs=".",
    ),
    "ipv6": lambda: Detector(
        "ipv6",
        r"(?<![0-9A-Fa-f:.])[0-9A-Fa-f.]*+:[0-9A-Fa-f:.]*+(?:%[\w.\-]+)?",
        needs=":",
        validate=_validate_ipv6,
    ),
    "jwt": lambda: Detector(
        "jwt",
        r"(?<![A-Za-z0-9_\-])(eyJ[A-Za-z0-9_\-]+)\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*",
        needs="eyJ",
        validate=_validate_jwt,
    ),
    "bearer": lambda: Detector(
        "bearer",
        r"\bbearer[ \t]+([A-Za-z0-9\-._~+/]+=*)",
        needs=lambda text: "earer" in text or "EARER" in text,
        validate=_validate_bearer,
        flags=re.IGNORECASE,
    ),
}


def build_detectors(names: Iterable[DetectorName] | None = None) -> list[Detector]:
    """Compile the named detectors (all of them by default), in :data:`ALL_DETECTORS` order."""
    wanted = set(ALL_DETECTORS if names is None else names)
    unknown = wanted - set(ALL_DETECTORS)
    if unknown:
        raise ValueError(
            f"unknown detector(s) {sorted(unknown)}; expected some of {list(ALL_DETECTORS)}"
        )
    return [_FACTORIES[name]() for name in ALL_DETECTORS if name in wanted]


def find_all(text: str, detectors: Sequence[Detector]) -> list[tuple[int, int, str]]:
    """Every detected span in ``text`` as ``(start, end, detector)``, overlaps merged.

    When spans of different detectors overlap they are merged into one span named after the
    detector that found the earliest of them, so no part of either value survives.
    """
    found: list[tuple[int, int, str]] = []
    if _GATE(text) is None:
        return found  # nothing any detector needs: no digit, '@', ':', JWT or bearer
    has_digit = _DIGIT(text) is not None
    for detector in detectors:
        if not detector.may_match(text, has_digit):
            continue
        for start, end in detector.find_candidates(text):
            if end > start:
                found.append((start, end, detector.name))
    if len(found) <= 1:
        return found
    found.sort()
    merged = [found[0]]
    for start, end, name in found[1:]:
        last_start, last_end, last_name = merged[-1]
        if start < last_end:
            merged[-1] = (last_start, max(last_end, end), last_name)
        else:
            merged.append((start, end, name))
    return merged
