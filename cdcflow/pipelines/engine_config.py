"""The optional top-level ``engine`` section of a pipeline file (docs/flink.md).

Only models live here, so ``pipelines.config`` can validate the section without importing an
engine; :mod:`cdcflow.flink.options` resolves what they name (jars, the cluster address).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class FlinkOptions(BaseModel):
    """Options of the Flink engine (every one has a default; see docs/flink.md).

    ``checkpoint_interval_ms``: how often Flink checkpoints (source offsets and the batching
    windows); a restore replays at most this much, and the sinks skip what they already hold.
    ``batch_interval_ms``: how long records of one partition are collected into one batch
    before the Python operators see them. ``parallelism``: of every operator (the batches of
    one partition always go to one writer subtask, in offset order). ``restart_attempts`` and
    ``restart_delay_ms``: the fixed-delay restart strategy after a failure. ``kafka_properties``:
    extra Java Kafka client properties (``properties.*`` of Flink's Kafka connector), on top of
    the source's ``consumer_config``. ``python_executable``: the Python the TaskManagers run
    (default: the one submitting, which is right for a local run and for a cluster sharing the
    machine; on Kubernetes point it into the ``python.archives`` environment). ``config``: any
    further Flink configuration (``key: value`` strings), applied last. ``jvm_args``: options
    of the JVM cdcflow itself starts for PyFlink (the local mini cluster of ``cdcflow run
    --engine flink``, and the client JVM of ``cdcflow submit`` that plans the job); the
    default keeps start-up CPU and resident memory low (C1 JIT only, serial GC, a 1 GB heap,
    docs/flink.md "Cost per event"). They do not reach a cluster's TaskManagers, and they are
    ignored when PyFlink's JVM is already running (``flink run``). ``JVM_ARGS`` from the
    environment is appended, so it wins over them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    jars: list[str] = []
    checkpoint_interval_ms: int = Field(default=10_000, ge=100, le=86_400_000)
    checkpoint_mode: Literal["exactly_once", "at_least_once"] = "exactly_once"
    batch_interval_ms: int = Field(default=200, ge=10, le=60_000)
    parallelism: int = Field(default=1, ge=1, le=1024)
    restart_attempts: int = Field(default=10, ge=0, le=1_000_000)
    restart_delay_ms: int = Field(default=2_000, ge=0, le=3_600_000)
    kafka_properties: dict[str, str] = {}
    python_executable: str | None = Field(default=None, min_length=1)
    python_archives: str | None = Field(default=None, min_length=1)
    job_name: str | None = Field(default=None, min_length=1, max_length=200)
    config: dict[str, str] = {}
    jvm_args: list[str] = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx1g"]

    @field_validator("jars")
    @classmethod
    def _jars_not_empty(cls, jars: list[str]) -> list[str]:
        if any(not j.strip() for j in jars):
            raise ValueError("jar paths must not be empty")
        return jars

    @field_validator("config", "kafka_properties", mode="before")
    @classmethod
    def _stringify(cls, value: object) -> object:
        if isinstance(value, dict):
            return {
                str(k): (str(v).lower() if isinstance(v, bool) else str(v))
                for k, v in value.items()
            }
        return value


class EngineConfig(BaseModel):
    """The optional top-level ``engine`` section; only ``flink`` is defined today."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flink: FlinkOptions = FlinkOptions()
