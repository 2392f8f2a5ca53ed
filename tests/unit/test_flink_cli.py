"""The Flink CLI commands that need no Flink: jobs, status, cancel (against a stub REST
endpoint) and the usage errors of submit and run --engine flink."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cdcflow.cli.app import main

JOB = "a" * 32


class _Stub(BaseHTTPRequestHandler):
    calls: list[tuple[str, str, Any]] = []

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.calls.append((self.command, self.path, body))
        return body

    def do_GET(self) -> None:
        self._record()
        if self.path == "/jobs/overview":
            job = {"jid": JOB, "name": "cdcflow:shop", "state": "RUNNING"}
            self._reply(200, {"jobs": [{**job, "start-time": 1_700_000_000_000}]})
        elif self.path == f"/jobs/{JOB}":
            self._reply(200, {"jid": JOB, "name": "cdcflow:shop", "state": "RUNNING"})
        elif self.path == f"/jobs/{JOB}/checkpoints":
            self._reply(200, {"counts": {"completed": 4, "failed": 0, "restored": 1}})
        elif self.path == f"/jobs/{JOB}/savepoints/req-1":
            self._reply(200, {"status": {"id": "COMPLETED"},
                              "operation": {"location": "file:/sp/savepoint-1"}})
        else:
            self._reply(404, {"errors": [f"Job {self.path} not found"]})

    def do_PATCH(self) -> None:
        self._record()
        self._reply(202, {})

    def do_POST(self) -> None:
        self._record()
        self._reply(202, {"request-id": "req-1"})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[str]:
    _Stub.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_jobs_lists_id_state_and_name(stub: str) -> None:
    result = CliRunner().invoke(main, ["jobs", "--flink-master", stub])
    assert result.exit_code == 0, result.output
    assert JOB in result.output and "RUNNING" in result.output and "cdcflow:shop" in result.output
    assert "2023-11-14T22:13:20Z" in result.output


def test_status_of_one_job_shows_checkpoints(stub: str) -> None:
    result = CliRunner().invoke(main, ["status", JOB, "--flink-master", stub])
    assert result.exit_code == 0, result.output
    assert "state: RUNNING" in result.output
    assert "4 completed, 0 failed, 1 restored" in result.output


def test_master_from_the_environment(stub: str) -> None:
    result = CliRunner().invoke(main, ["status"], env={"CDCFLOW_FLINK_MASTER": stub})
    assert result.exit_code == 0 and JOB in result.output


def test_cancel_and_cancel_with_savepoint(stub: str) -> None:
    plain = CliRunner().invoke(main, ["cancel", JOB, "--flink-master", stub])
    assert plain.exit_code == 0 and f"cancelled {JOB}" in plain.output
    assert ("PATCH", f"/jobs/{JOB}?mode=cancel", None) in _Stub.calls
    saved = CliRunner().invoke(
        main, ["cancel", JOB, "--savepoint", "file:///sp", "--flink-master", stub]
    )
    assert saved.exit_code == 0, saved.output
    assert "savepoint: file:/sp/savepoint-1" in saved.output
    assert (
        "POST", f"/jobs/{JOB}/savepoints", {"target-directory": "file:///sp", "cancel-job": True}
    ) in _Stub.calls


def test_unknown_job_is_a_runtime_error_with_flinks_reason(stub: str) -> None:
    result = CliRunner().invoke(main, ["status", "b" * 32, "--flink-master", stub])
    assert result.exit_code == 1
    assert "answered 404" in result.output and "not found" in result.output


def test_unreachable_cluster_is_a_runtime_error() -> None:
    from tests.servers import free_port

    result = CliRunner().invoke(main, ["jobs", "--flink-master", f"127.0.0.1:{free_port()}"])
    assert result.exit_code == 1 and "cannot reach Flink" in result.output


def test_bad_master_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["jobs", "--flink-master", "nohost"])
    assert result.exit_code == 2 and "HOST:PORT" in result.output
    missing = CliRunner().invoke(main, ["jobs"], env={"CDCFLOW_FLINK_MASTER": ""})
    assert missing.exit_code == 2


def test_submit_and_run_reject_a_bad_pipeline_before_anything_else(
    tmp_path: Path, stub: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("pipeline: p\nsource: {type: kafka, bootstrap_servers: x:1, topics: [t]}\n"
                    "sinks: [{name: n, type: sqlite, path: o.sqlite, colour: red}]\n")
    submitted = CliRunner().invoke(main, ["submit", str(path), "--flink-master", stub])
    assert submitted.exit_code == 2
    assert "sinks[0].colour" in submitted.output
    assert _Stub.calls == []  # nothing was sent, not even a probe
    ran = CliRunner().invoke(main, ["run", str(path), "--engine", "flink"])
    assert ran.exit_code == 2 and "sinks[0].colour" in ran.output
