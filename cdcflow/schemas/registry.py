"""A client for Confluent-compatible schema registries (REST API), with a schema cache.

Only what decoding needs: ``GET /schemas/ids/{id}`` fetches a writer schema by its global id
(cached for the life of the client: an id never changes meaning), plus ``register`` for tools
and tests. Basic auth and TLS (CA bundle, client certificate and key, verification on/off) are
configured by :class:`SchemaRegistryConfig`; passwords are :class:`pydantic.SecretStr` and
never appear in logs, errors or reprs.

Errors
    An id the registry does not know raises :class:`UnknownSchemaError` (a
    :class:`~cdcflow.errors.DecodeError`: the record goes to the dead letters). A registry that
    cannot be reached or answers 5xx is retried with backoff, then raises
    :class:`SchemaRegistryUnavailable` (transient: the run stops and resumes later, nothing is
    dead-lettered). Rejected credentials raise :class:`SchemaRegistryAuthError` (terminal).
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from cdcflow.errors import CdcflowError, DecodeError, TerminalError, TransientError, missing_extra

log = logging.getLogger(__name__)


class SchemaRegistryError(CdcflowError):
    """The schema registry could not answer a request."""


class SchemaRegistryUnavailable(SchemaRegistryError, TransientError):
    """The registry is unreachable or failing (5xx) after retries."""


class SchemaRegistryAuthError(SchemaRegistryError, TerminalError):
    """The registry rejected the credentials (401/403)."""


class UnknownSchemaError(DecodeError):
    """A record names a schema id the registry does not have."""


#: The errors a decoder raises that are not the record's fault: a transient failure (an
#: unreachable or failing registry, after retries) or any other registry failure (rejected
#: credentials). Whoever decodes stops on them (the decode step, ``cdcflow decode``) instead of
#: dead-lettering the record; an unknown schema id is a :class:`DecodeError`, not one of them.
FATAL_DECODE_ERRORS: tuple[type[BaseException], ...] = (TransientError, SchemaRegistryError)


class SchemaRegistryConfig(BaseModel):
    """``schema_registry:`` — where and how to reach a Confluent-compatible registry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(min_length=1)
    username: str | None = None
    password: SecretStr | None = None
    ca_location: str | None = None
    certificate_location: str | None = None
    key_location: str | None = None
    key_password: SecretStr | None = None
    verify: bool = True
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    retries: int = Field(default=3, ge=0, le=20)
    cache_size: int = Field(default=10_000, ge=1)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (got {value!r})")
        return value.rstrip("/")

    def client(self) -> SchemaRegistryClient:
        """A client for this registry (create it on the worker)."""
        return SchemaRegistryClient(self)


def _ssl_context(config: SchemaRegistryConfig) -> ssl.SSLContext | bool:
    """The TLS settings for httpx: a context when any TLS option is set, else ``verify``."""
    if not (config.ca_location or config.certificate_location or not config.verify):
        return True
    context = ssl.create_default_context(cafile=config.ca_location)
    if not config.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if config.certificate_location:
        password = config.key_password.get_secret_value() if config.key_password else None
        context.load_cert_chain(config.certificate_location, config.key_location, password)
    return context


class SchemaRegistryClient:
    """Fetch (and cache) schemas by id from a Confluent-compatible registry.

    Thread-safe; the HTTP client is created lazily on first use so the object pickles.
    """

    def __init__(self, config: SchemaRegistryConfig, transport: Any = None) -> None:
        self.config = config
        self._schemas: dict[int, str] = {}
        self._lock = threading.Lock()
        self._http: Any = None
        self._transport = transport  # an httpx transport, for tests

    def __repr__(self) -> str:
        return f"SchemaRegistryClient(url={self.config.url!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])  # type: ignore[misc]

    def _client(self) -> Any:
        if self._http is None:
            try:
                import httpx
            except ImportError as exc:  # pragma: no cover - only without the extra
                raise missing_extra("httpx", "kafka") from exc
            auth = None
            if self.config.username is not None:
                secret = self.config.password.get_secret_value() if self.config.password else ""
                auth = httpx.BasicAuth(self.config.username, secret)
            self._http = httpx.Client(
                base_url=self.config.url,
                auth=auth,
                verify=_ssl_context(self.config),
                timeout=self.config.timeout_s,
                transport=self._transport,
                headers={"Accept": "application/vnd.schemaregistry.v1+json, application/json"},
            )
        return self._http

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        attempts = self.config.retries + 1
        last: str = ""
        for attempt in range(attempts):
            try:
                response = self._client().request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code in (401, 403):
                    raise SchemaRegistryAuthError(
                        f"schema registry {self.config.url} rejected the credentials "
                        f"(HTTP {response.status_code}) for {method} {path}"
                    )
                if response.status_code < 500:
                    return response
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            if attempt + 1 < attempts:
                delay = min(5.0, 0.2 * 2**attempt) * (0.5 + random.random())  # noqa: S311
                time.sleep(delay)
        raise SchemaRegistryUnavailable(
            f"schema registry {self.config.url} did not answer {method} {path} after "
            f"{attempts} attempt(s): {last}"
        )

    def get_schema(self, schema_id: int) -> str:
        """The schema text registered under ``schema_id`` (cached)."""
        cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        response = self._request("GET", f"/schemas/ids/{schema_id}")
        if response.status_code == 404:
            raise UnknownSchemaError(
                f"schema id {schema_id} is not in the schema registry at {self.config.url}"
            )
        if response.status_code != 200:
            raise SchemaRegistryError(
                f"schema registry {self.config.url} answered HTTP {response.status_code} "
                f"for schema id {schema_id}: {response.text[:200]}"
            )
        body = response.json()
        schema_type = body.get("schemaType", "AVRO")
        if schema_type != "AVRO":
            raise DecodeError(f"schema id {schema_id} is a {schema_type} schema, not Avro")
        text = body.get("schema")
        if not isinstance(text, str):
            raise SchemaRegistryError(f"schema registry answer for id {schema_id} has no schema")
        with self._lock:
            if len(self._schemas) >= self.config.cache_size:
                self._schemas.clear()
            self._schemas[schema_id] = text
        return text

    def register(self, subject: str, schema: str) -> int:
        """Register ``schema`` (Avro JSON text) under ``subject``; returns its id."""
        response = self._request(
            "POST",
            f"/subjects/{subject}/versions",
            json={"schema": schema},
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        )
        if response.status_code != 200:
            raise SchemaRegistryError(
                f"schema registry {self.config.url} refused to register under {subject!r}: "
                f"HTTP {response.status_code} {response.text[:200]}"
            )
        return int(response.json()["id"])

    def check(self) -> list[str]:
        """Problems reaching the registry (``GET /subjects``); empty when fine."""
        try:
            response = self._request("GET", "/subjects")
        except SchemaRegistryError as exc:
            return [str(exc)]
        if response.status_code != 200:
            return [f"schema registry {self.config.url}: HTTP {response.status_code} on /subjects"]
        return []

    def close(self) -> None:
        """Close the HTTP connection pool."""
        if self._http is not None:
            self._http.close()
            self._http = None
