"""Keep secrets out of every message: errors, log lines, dead-letter reasons, metric labels.

Two kinds of secret are removed by :func:`scrub`, the one helper every output path uses:

* **values that came from ``${...}`` substitution** in a pipeline file. The loader registers
  each resolved environment value with :func:`register`; from then on the text of that value
  is replaced by :data:`MASK` wherever it appears in a message of this process. Values too
  short or too plain to be a secret (fewer than :data:`MIN_LENGTH` characters, small integers,
  booleans) are not registered: masking them would garble unrelated text (line numbers,
  counts) and hide nothing;
* **passwords inside connection strings**, whatever their origin: the password of a URL's
  user information (``scheme://user:PASSWORD@host``) and the value of a ``password=``
  keyword (libpq keyword DSNs ``host=db password=PASSWORD``, URL query parameters), quoted or
  not. The user name and host stay visible, so the message still says where it failed.

The registry is process-wide and only grows (a value is never "unmasked"); it is safe to use
from several threads.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

#: What a secret is replaced with.
MASK = "***"
#: Resolved values shorter than this are not registered (see the module docstring).
MIN_LENGTH = 4

_PLAIN = frozenset({"true", "false", "yes", "no", "on", "off", "null", "none"})
_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_ordered: tuple[str, ...] = ()

# scheme://user:password@  (the password runs to the last '@' before whitespace or a quote)
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*:)(?P<secret>[^\s'\"]*)(?=@)"
)
# password=value, password = 'quoted value', "password": "value" (keyword DSNs, query strings,
# mappings printed by a library)
_KEYWORD_PASSWORD = re.compile(
    r"(?P<head>(?i:\b(?:ssl)?(?:password|passwd|pwd))(?:['\"]?\s*[=:]\s*))"
    r"(?P<secret>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s'\"&;,)}\]]+)"
)


def _maskable(value: str) -> bool:
    """True when ``value`` could be a secret worth masking."""
    text = value.strip()
    if len(text) < MIN_LENGTH:
        return False
    if text.lower() in _PLAIN:
        return False
    return not (text.isdigit() and len(text) <= 6)


def register(values: Iterable[str]) -> None:
    """Mask ``values`` (resolved ``${...}`` values) in every later :func:`scrub` call."""
    global _secrets, _ordered
    fresh = {v for v in values if isinstance(v, str) and _maskable(v)}
    if not fresh or fresh <= _secrets:
        return
    with _lock:
        _secrets = _secrets | fresh
        # Longest first, so a secret containing another is masked whole.
        _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def reset() -> None:
    """Forget every registered value (tests; a process that loads an unrelated pipeline)."""
    global _secrets, _ordered
    with _lock:
        _secrets = frozenset()
        _ordered = ()


def registered() -> frozenset[str]:
    """The values currently masked (for tests and diagnostics; never print them)."""
    return _secrets


def scrub(text: str) -> str:
    """``text`` with every registered secret and every connection-string password masked."""
    if not text:
        return text
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    if "pw" in text.lower() or "pass" in text.lower():
        text = _KEYWORD_PASSWORD.sub(_mask_keyword, text)
    return text


def _mask_keyword(match: re.Match[str]) -> str:
    secret = match.group("secret")
    if secret == MASK or secret in ("'***'", '"***"'):
        return match.group(0)
    return match.group("head") + MASK


def scrub_exception(exc: BaseException) -> str:
    """The scrubbed one-line text of ``exc`` (its type name when it has no message)."""
    text = str(exc) or type(exc).__name__
    return scrub(text)
