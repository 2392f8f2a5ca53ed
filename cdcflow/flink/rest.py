"""A small client for the Flink JobManager's REST API (list, inspect, cancel, savepoint).

Plain ``urllib``: listing or cancelling jobs needs neither PyFlink nor an HTTP library.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from cdcflow.errors import CdcflowError


class FlinkRestError(CdcflowError):
    """The Flink REST endpoint could not be reached or answered with an error."""


class FlinkRest:
    """Calls to one JobManager's REST endpoint (``host:port``)."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.base = f"http://{host}:{port}"
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - http(s) URL built from host:port
            self.base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                text = response.read().decode() or "null"
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            try:
                errors = json.loads(detail).get("errors", [detail])
                detail = str(errors[0]).splitlines()[0] if errors else detail
            except (ValueError, AttributeError):
                pass
            raise FlinkRestError(
                f"Flink at {self.base} answered {exc.code} to {path}: {detail}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise FlinkRestError(f"cannot reach Flink at {self.base}: {reason}") from None
        return json.loads(text)

    def overview(self) -> dict[str, Any]:
        """The cluster overview (TaskManagers, slots, Flink version)."""
        result: dict[str, Any] = self._call("GET", "/overview")
        return result

    def jobs(self) -> list[dict[str, Any]]:
        """Every job the cluster knows: ``jid``, ``name``, ``state``, ``start-time``..."""
        result = self._call("GET", "/jobs/overview")
        return list(result.get("jobs", []))

    def job(self, job_id: str) -> dict[str, Any]:
        """One job's details."""
        result: dict[str, Any] = self._call("GET", f"/jobs/{job_id}")
        return result

    def checkpoints(self, job_id: str) -> dict[str, Any]:
        """A job's checkpoint statistics (``counts.completed``, ``latest``...)."""
        result: dict[str, Any] = self._call("GET", f"/jobs/{job_id}/checkpoints")
        return result

    def cancel(self, job_id: str) -> None:
        """Cancel a job (no savepoint)."""
        self._call("PATCH", f"/jobs/{job_id}?mode=cancel")

    def cancel_with_savepoint(self, job_id: str, directory: str, timeout: float = 300.0) -> str:
        """Take a savepoint into ``directory``, cancel the job, return the savepoint's path."""
        trigger = self._call(
            "POST",
            f"/jobs/{job_id}/savepoints",
            {"target-directory": directory, "cancel-job": True},
        )
        request_id = trigger["request-id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self._call("GET", f"/jobs/{job_id}/savepoints/{request_id}")
            if status.get("status", {}).get("id") == "COMPLETED":
                operation = status.get("operation", {})
                if "failure-cause" in operation:
                    cause = operation["failure-cause"].get("stack-trace", "")
                    first = cause.splitlines()[0] if cause else "?"
                    raise FlinkRestError(f"savepoint of job {job_id} failed: {first}")
                return str(operation.get("location"))
            time.sleep(0.5)
        raise FlinkRestError(f"savepoint of job {job_id} did not complete in {timeout:.0f}s")
