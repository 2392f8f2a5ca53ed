"""The ``engine.flink`` section of a pipeline file and where the connector jars come from.

```yaml
engine:
  flink:
    jars:
      - /opt/flink/usrlib/flink-connector-kafka-4.0.1-2.0.jar
      - /opt/flink/usrlib/kafka-clients-3.9.1.jar
    checkpoint_interval_ms: 10000
    parallelism: 2
```

Jar locations are configuration: the CLI's ``--jar`` option, else ``jars`` here, else the
``CDCFLOW_FLINK_JARS`` environment variable (paths or ``file://`` URLs separated by ``:`` or
``,``), else the ``*.jar`` files of the ``jars/`` directory of the environment cdcflow runs in
(``sys.prefix``: ``make venv-flink`` puts them in ``.venv-flink/jars/``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path

from cdcflow.errors import ConfigError
from cdcflow.pipelines.engine_config import EngineConfig, FlinkOptions

__all__ = [
    "EngineConfig",
    "FlinkOptions",
    "apply_jvm_args",
    "jar_url",
    "parse_master",
    "resolve_jars",
]

JARS_ENV = "CDCFLOW_FLINK_JARS"
MASTER_ENV = "CDCFLOW_FLINK_MASTER"

#: The Maven artifacts the Kafka source needs (documented; the files are configuration).
REQUIRED_ARTIFACTS = (
    "org.apache.flink:flink-connector-kafka:4.0.1-2.0",
    "org.apache.kafka:kafka-clients:3.9.1",
)
_JAR_HINTS = {
    "flink-connector-kafka": "org.apache.flink:flink-connector-kafka:4.0.1-2.0",
    "kafka-clients": "org.apache.kafka:kafka-clients:3.9.1",
}


def _split(value: str) -> list[str]:
    return [part for part in re.split(r"[,:](?!//)", value) if part.strip()]


def jar_url(path: str, base_dir: Path | None = None) -> str:
    """A ``file://`` URL for a jar path (URLs other than ``file:`` are kept as they are)."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", path):
        return path
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and base_dir is not None:
        candidate = base_dir / candidate
    return candidate.resolve().as_uri()


def resolve_jars(
    options: FlinkOptions,
    cli_jars: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    default_dir: Path | None = None,
) -> list[str]:
    """The connector jar URLs to ship with the job; ConfigError when they are missing.

    Precedence: ``--jar`` options, then ``engine.flink.jars``, then ``$CDCFLOW_FLINK_JARS``,
    then every ``*.jar`` in ``default_dir`` (:func:`default_jar_dir` unless given). Relative
    paths in the pipeline file are relative to it. Every ``file:`` jar must exist, and
    together they must include the Kafka connector and the Kafka client.
    """
    env = os.environ if env is None else env
    default_dir = default_jar_dir() if default_dir is None else default_dir
    found = sorted(default_dir.glob("*.jar")) if default_dir.is_dir() else []
    if cli_jars:
        raw, where = list(cli_jars), "--jar"
    elif options.jars:
        raw, where = list(options.jars), "engine.flink.jars"
    elif env.get(JARS_ENV, "").strip():
        raw, where = _split(env[JARS_ENV]), f"${JARS_ENV}"
    elif found:
        raw, where = [str(j) for j in found], f"the jars in {default_dir}"
    else:
        raise ConfigError(
            "the Flink engine needs the Kafka connector jars and found none: no --jar, no "
            f"engine.flink.jars in the pipeline file, no ${JARS_ENV}, and no *.jar in "
            f"{default_dir} (in a clone, 'make venv-flink' puts them there; elsewhere the "
            f"Maven artifacts {', '.join(REQUIRED_ARTIFACTS)}; see docs/flink.md)"
        )
    urls = [jar_url(p, base_dir if where == "engine.flink.jars" else None) for p in raw]
    problems = []
    for url in urls:
        if url.startswith("file:"):
            local = Path(url[len("file://") :])
            if not local.is_file():
                problems.append(f"{where}: jar {local} does not exist")
    names = " ".join(Path(u).name for u in urls)
    for stem, artifact in _JAR_HINTS.items():
        if stem not in names:
            problems.append(f"{where}: no {stem} jar given (Maven artifact {artifact})")
    if problems:
        raise ConfigError("\n".join(problems))
    return urls


def default_jar_dir() -> Path:
    """``<sys.prefix>/jars``: the jars next to the running interpreter's environment."""
    return Path(sys.prefix) / "jars"


def parse_master(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``http://HOST:PORT``) of a Flink REST endpoint."""
    text = value.strip()
    text = re.sub(r"^https?://", "", text).rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"--flink-master must be HOST:PORT of the JobManager's REST endpoint (got {value!r})"
        )
    return host, int(port)


def apply_jvm_args(
    args: Sequence[str], environ: MutableMapping[str, str], gateway_running: bool
) -> bool:
    """Put ``args`` in front of ``environ["JVM_ARGS"]``, the options PyFlink starts its JVM with.

    Options given in ``JVM_ARGS`` already stay after ours, so they win. Nothing changes when
    PyFlink's JVM is already running (``gateway_running``) or is not PyFlink's to start
    (``PYFLINK_GATEWAY_PORT`` set, as under ``flink run``), or ``args`` is empty. Returns
    whether ``args`` will apply to the JVM started next.
    """
    if not args or gateway_running or "PYFLINK_GATEWAY_PORT" in environ:
        return False
    environ["JVM_ARGS"] = " ".join([*args, environ.get("JVM_ARGS", "")]).strip()
    return True
