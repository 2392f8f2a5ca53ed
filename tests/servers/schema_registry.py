"""A small Confluent-compatible schema registry for tests, run as a real HTTP server process.

No Confluent-compatible registry server can be installed on these machines (FACTS.md: Confluent
Schema Registry needs Docker or a JVM distribution from Confluent, karapace is not on the
mirror), so the tests run against this one. It implements the part of the Confluent REST API
that producers and cdcflow use, with the same status codes and error bodies:

* ``POST /subjects/{subject}/versions`` ``{"schema": "...", "schemaType": "AVRO"}`` ->
  ``{"id": N}``; the same schema text (after JSON normalisation) gets the same global id under
  every subject, as in Confluent's registry; invalid Avro JSON -> 422 ``error_code`` 42201.
* ``GET /schemas/ids/{id}`` -> ``{"schema": "..."}``; unknown id -> 404 ``error_code`` 40403.
* ``GET /subjects``, ``GET /subjects/{subject}/versions``,
  ``GET /subjects/{subject}/versions/{version|latest}``.
* Optional HTTP basic auth (``--username``/``--password``): other requests get 401.

Run: ``python tests/servers/schema_registry.py --port 8081 [--username u --password p]``.
The session fixture ``schema_registry`` starts it on a free port and yields a
:class:`RegistryInfo`.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class _Store:
    """Schemas by id and subjects' version lists, in memory."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: dict[str, int] = {}
        self.schemas: dict[int, tuple[str, str]] = {}
        self.subjects: dict[str, list[int]] = {}

    def register(self, subject: str, schema: str, schema_type: str) -> int:
        normal = json.dumps(json.loads(schema), sort_keys=True, separators=(",", ":"))
        with self.lock:
            schema_id = self.ids.get(normal)
            if schema_id is None:
                schema_id = len(self.schemas) + 1
                self.ids[normal] = schema_id
                self.schemas[schema_id] = (schema, schema_type)
            versions = self.subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            return schema_id


class _Handler(BaseHTTPRequestHandler):
    store: _Store
    credentials: tuple[str, str] | None = None
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write("registry: " + (format % args) + "\n")

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: int, message: str) -> None:
        self._send(status, {"error_code": code, "message": message})

    def _authorised(self) -> bool:
        if self.credentials is None:
            return True
        header = self.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
        if hmac.compare_digest(header.encode(), expected.encode()):
            return True
        self._error(401, 401, "Unauthorized")
        return False

    def do_GET(self) -> None:
        if not self._authorised():
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        store = self.store
        if match := re.fullmatch(r"/schemas/ids/(\d+)", path):
            found = store.schemas.get(int(match.group(1)))
            if found is None:
                self._error(404, 40403, f"Schema {match.group(1)} not found")
                return
            schema, schema_type = found
            body = {"schema": schema}
            if schema_type != "AVRO":
                body["schemaType"] = schema_type
            self._send(200, body)
        elif path == "/subjects":
            self._send(200, sorted(store.subjects))
        elif match := re.fullmatch(r"/subjects/([^/]+)/versions", path):
            versions = store.subjects.get(match.group(1))
            if versions is None:
                self._error(404, 40401, f"Subject '{match.group(1)}' not found.")
                return
            self._send(200, list(range(1, len(versions) + 1)))
        elif match := re.fullmatch(r"/subjects/([^/]+)/versions/(latest|\d+)", path):
            subject, version = match.groups()
            versions = store.subjects.get(subject)
            if not versions:
                self._error(404, 40401, f"Subject '{subject}' not found.")
                return
            number = len(versions) if version == "latest" else int(version)
            if not 1 <= number <= len(versions):
                self._error(404, 40402, f"Version {version} not found.")
                return
            schema_id = versions[number - 1]
            self._send(
                200,
                {
                    "subject": subject,
                    "version": number,
                    "id": schema_id,
                    "schema": store.schemas[schema_id][0],
                },
            )
        else:
            self._error(404, 404, f"HTTP 404 Not Found: {path}")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self._authorised():
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        match = re.fullmatch(r"/subjects/([^/]+)/versions", path)
        if match is None:
            self._error(404, 404, f"HTTP 404 Not Found: {path}")
            return
        try:
            body = json.loads(raw)
            schema = body["schema"]
            schema_type = body.get("schemaType", "AVRO")
            json.loads(schema)
        except (ValueError, KeyError, TypeError) as exc:
            self._error(422, 42201, f"Invalid schema: {exc}")
            return
        self._send(200, {"id": self.store.register(match.group(1), schema, schema_type)})


def serve(port: int, username: str | None, password: str | None) -> None:
    """Serve on 127.0.0.1:``port`` until killed."""
    handler = type(
        "Handler",
        (_Handler,),
        {"store": _Store(), "credentials": (username, password or "") if username else None},
    )
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    server.serve_forever()


@dataclass(frozen=True)
class RegistryInfo:
    """Where the test registry listens and its basic-auth credentials."""

    url: str
    username: str
    password: str

    def register(self, subject: str, schema: Any) -> int:
        """Register an Avro schema (dict or text) under ``subject``; returns its id."""
        import httpx

        text = schema if isinstance(schema, str) else json.dumps(schema)
        response = httpx.post(
            f"{self.url}/subjects/{subject}/versions",
            json={"schema": text},
            auth=(self.username, self.password),
            headers={"Content-Type": CONTENT_TYPE},
            timeout=10,
        )
        response.raise_for_status()
        return int(response.json()["id"])


try:
    import pytest
except ImportError:  # running as the server process
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryInfo]:
        """A Confluent-compatible registry with basic auth (``registry``/``s3cret``)."""
        from tests.servers import ServerProcess, free_port

        port = free_port()
        username, password = "registry", "s3cret-pw"
        server = ServerProcess(
            "schema-registry",
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--port",
                str(port),
                "--username",
                username,
                "--password",
                password,
            ],
            tmp_path_factory.mktemp("schema-registry") / "registry.log",
        )
        server.start(port=port, timeout=30)
        try:
            yield RegistryInfo(f"http://127.0.0.1:{port}", username, password)
        finally:
            server.stop()


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--username")
    parser.add_argument("--password")
    args = parser.parse_args()
    serve(args.port, args.username, args.password)


if __name__ == "__main__":
    main()
