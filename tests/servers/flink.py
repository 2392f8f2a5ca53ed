"""A standalone Apache Flink cluster started from the apache-flink wheel in ``.venv-flink``.

Fixtures
    ``flink_venv`` (session): the Flink environment (``.venv-flink``, or ``$CDCFLOW_FLINK_VENV``)
    with its python, cdcflow CLI and connector jars; ``make test`` builds it.
    ``flink_cluster`` (session): one JobManager and one TaskManager on free 127.0.0.1 ports,
    running from their OWN ``FLINK_HOME`` (a copy of the wheel's ``pyflink`` layout with
    ``flink-python-2.3.0.jar`` in ``lib/`` and ``opt/`` a real directory: without that, thread
    mode loops on ``NoSuchFieldException: loadedLibraryNames`` for the second job on a
    TaskManager; see FACTS.md). Configured through a generated ``conf/config.yaml``; stopped
    at the end of the session. :meth:`FlinkCluster.kill_taskmanager` and
    :meth:`FlinkCluster.start_taskmanager` let chaos tests kill and replace the TaskManager.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import ServerProcess, free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class FlinkVenv:
    """The separate environment the Flink engine runs in."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def cdcflow(self) -> Path:
        return self.root / "bin" / "cdcflow"

    @property
    def pyflink(self) -> Path:
        matches = sorted(self.root.glob("lib/python3*/site-packages/pyflink"))
        if not matches:
            raise RuntimeError(f"no pyflink in {self.root}: run 'make venv-flink'")
        return matches[0]

    @property
    def jars(self) -> list[Path]:
        return [
            self.root / "jars" / "flink-connector-kafka-4.0.1-2.0.jar",
            self.root / "jars" / "kafka-clients-3.9.1.jar",
        ]


def flink_venv_path() -> FlinkVenv:
    venv = FlinkVenv(Path(os.environ.get("CDCFLOW_FLINK_VENV", REPO / ".venv-flink")))
    missing = [p for p in (venv.python, venv.cdcflow, *venv.jars) if not p.exists()]
    if missing:
        raise RuntimeError(
            f"the Flink environment is incomplete ({', '.join(map(str, missing))} missing): "
            "run 'make venv-flink'"
        )
    return venv


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def make_flink_home(pyflink: Path, home: Path, settings: dict[str, Any]) -> Path:
    """A FLINK_HOME of the cluster's own: real lib/ and opt/ dirs, generated conf/config.yaml."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copytree(pyflink / "bin", home / "bin", dirs_exist_ok=True)
    for name in ("lib", "opt", "plugins"):
        (home / name).mkdir(exist_ok=True)
        for item in (pyflink / name).iterdir():
            target = home / name / item.name
            if not target.exists():
                target.symlink_to(item)
    python_jar = next((pyflink / "opt").glob("flink-python-*.jar"))
    shutil.copy2(python_jar, home / "lib" / python_jar.name)
    (home / "conf").mkdir(exist_ok=True)
    for item in (pyflink / "conf").iterdir():
        if item.name != "config.yaml":
            shutil.copy2(item, home / "conf" / item.name)
    config = yaml.safe_load((pyflink / "conf" / "config.yaml").read_text()) or {}
    for key, value in settings.items():
        _set(config, key, value)
    (home / "conf" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=True))
    (home / "log").mkdir(exist_ok=True)
    return home


class FlinkCluster:
    """A running standalone cluster: JobManager plus one replaceable TaskManager."""

    def __init__(self, home: Path, rest_port: int, venv: FlinkVenv) -> None:
        self.home = home
        self.rest_port = rest_port
        self.venv = venv
        self.jobmanager: ServerProcess | None = None
        self.taskmanager: ServerProcess | None = None
        self._tm_count = 0

    @property
    def master(self) -> str:
        """``HOST:PORT`` of the REST endpoint (what ``--flink-master`` takes)."""
        return f"127.0.0.1:{self.rest_port}"

    def env(self) -> dict[str, str]:
        return {
            "FLINK_HOME": str(self.home),
            "FLINK_CONF_DIR": str(self.home / "conf"),
            "FLINK_LOG_DIR": str(self.home / "log"),
            "FLINK_BIN_DIR": str(self.home / "bin"),
            "FLINK_LIB_DIR": str(self.home / "lib"),
            "FLINK_OPT_DIR": str(self.home / "opt"),
            "FLINK_PLUGINS_DIR": str(self.home / "plugins"),
        }

    def rest(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://{self.master}{path}", timeout=10) as response:
            return json.loads(response.read().decode())

    def start_jobmanager(self) -> None:
        self.jobmanager = ServerProcess(
            "flink-jobmanager",
            [str(self.home / "bin" / "jobmanager.sh"), "start-foreground"],
            self.home / "log" / "jobmanager.out",
            env=self.env(),
            cwd=self.home,
        ).start(port=self.rest_port, timeout=90)

    def start_taskmanager(self, timeout: float = 90.0) -> None:
        """Start a TaskManager and wait until the JobManager lists it."""
        self._tm_count += 1
        before = self.taskmanager_ids()
        self.taskmanager = ServerProcess(
            "flink-taskmanager",
            [str(self.home / "bin" / "taskmanager.sh"), "start-foreground"],
            self.home / "log" / f"taskmanager-{self._tm_count}.out",
            env=self.env(),
            cwd=self.home,
        ).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.taskmanager_ids() - before:
                return
            if self.taskmanager.process is not None and self.taskmanager.process.poll() is not None:
                break
            time.sleep(0.3)
        raise RuntimeError(f"the TaskManager did not register:\n{self.taskmanager.tail()}")

    def taskmanager_ids(self) -> set[str]:
        try:
            return {tm["id"] for tm in self.rest("/taskmanagers").get("taskmanagers", [])}
        except OSError:
            return set()

    def kill_taskmanager(self) -> None:
        """SIGKILL the TaskManager's process group (the JVM and its embedded Python)."""
        assert self.taskmanager is not None and self.taskmanager.process is not None
        os.killpg(self.taskmanager.process.pid, signal.SIGKILL)
        self.taskmanager.process.wait(timeout=30)

    def jobs(self) -> list[dict[str, Any]]:
        return list(self.rest("/jobs/overview").get("jobs", []))

    def cancel_all(self) -> None:
        for job in self.jobs():
            if job.get("state") in ("RUNNING", "CREATED", "RESTARTING", "INITIALIZING"):
                request = urllib.request.Request(
                    f"http://{self.master}/jobs/{job['jid']}?mode=cancel", method="PATCH"
                )
                urllib.request.urlopen(request, timeout=10).close()

    def logs(self, lines: int = 60) -> str:
        parts = []
        for name in sorted((self.home / "log").glob("*.log")):
            text = name.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"== {name.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def stop(self) -> None:
        for server in (self.taskmanager, self.jobmanager):
            if server is not None:
                server.stop()


@pytest.fixture(scope="session")
def flink_venv() -> FlinkVenv:
    """The Flink environment (built by ``make venv-flink``)."""
    return flink_venv_path()


@pytest.fixture(scope="session")
def flink_cluster(
    flink_venv: FlinkVenv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FlinkCluster]:
    """A standalone Flink cluster (one JobManager, one TaskManager with 2 slots)."""
    rest_port = free_port()
    settings = {
        "jobmanager.bind-host": "127.0.0.1",
        "jobmanager.rpc.address": "127.0.0.1",
        "jobmanager.rpc.port": free_port(),
        "jobmanager.memory.process.size": "800m",
        "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.host": "127.0.0.1",
        "taskmanager.rpc.port": "0",
        "taskmanager.numberOfTaskSlots": 2,
        "taskmanager.memory.process.size": "1400m",
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "rest.port": rest_port,
        "blob.server.port": free_port(),
        "heartbeat.interval": 1000,
        "heartbeat.timeout": 8000,
        "parallelism.default": 1,
    }
    home = make_flink_home(flink_venv.pyflink, tmp_path_factory.mktemp("flink") / "home", settings)
    cluster = FlinkCluster(home, rest_port, flink_venv)
    try:
        cluster.start_jobmanager()
        cluster.start_taskmanager()
        yield cluster
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()
