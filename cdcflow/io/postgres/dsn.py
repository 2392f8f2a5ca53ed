"""PostgreSQL connection strings: where a DSN points, never its credentials."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit


def dsn_target(dsn: str) -> str:
    """``host:port/dbname`` of a libpq DSN (URL or ``key=value`` form), never its credentials.

    Parsed by psycopg when it is installed, else by a small parser of the two forms, so that a
    missing psycopg is not reported as a bad DSN. ``<unparsable dsn>`` when neither can read it
    (the DSN itself is never echoed: it may hold a password).
    """
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        info = _split_dsn(dsn)
    else:
        try:
            info = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
        except Exception:  # noqa: BLE001 - never echo an unparsable DSN (it may hold a secret)
            info = None
    if info is None:
        return "<unparsable dsn>"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def _split_dsn(dsn: str) -> dict[str, str] | None:
    """host, port and dbname of a DSN without psycopg (None when it is not a DSN)."""
    if dsn.startswith(("postgresql://", "postgres://")):
        try:
            url = urlsplit(dsn)
            port = url.port
        except ValueError:
            return None
        info = {"dbname": unquote(url.path.lstrip("/"))}
        if url.hostname:
            info["host"] = url.hostname
        if port is not None:
            info["port"] = str(port)
        return info
    pairs = [token.partition("=") for token in dsn.split()]
    if not pairs or any(not sep or not key for key, sep, _ in pairs):
        return None
    return {key: value.strip("'") for key, _, value in pairs if key in ("host", "port", "dbname")}

