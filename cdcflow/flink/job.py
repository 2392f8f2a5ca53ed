"""Build and start the PyFlink job for a :class:`~cdcflow.flink.plan.JobSpec` (imports PyFlink).

See :mod:`cdcflow.flink.plan` for the job's shape and why it is built this way.
"""

from __future__ import annotations

import logging
import os
import pickle
import site
import sys
import uuid
from pathlib import Path
from typing import Any

from cdcflow.core.executor import BatchExecutor
from cdcflow.errors import missing_extra
from cdcflow.flink import sitedirs
from cdcflow.flink.options import apply_jvm_args
from cdcflow.flink.plan import (
    JobSpec,
    batch_query_sql,
    partition_key,
    partitioned_by_partition,
    source_table_ddl,
)
from cdcflow.flink.processor import raw_batch
from cdcflow.flink.stats import RunStats, StatsFile, worker_error, write_error
from cdcflow.metrics import Labels
from cdcflow.pipelines.config import PipelineConfig
from cdcflow.pipelines.plan import plan_pipeline

try:
    from pyflink.common import Configuration, Types
    from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment
    from pyflink.datastream.functions import MapFunction, RuntimeContext
    from pyflink.table import StreamTableEnvironment
except ImportError as exc:  # pragma: no cover - only without the extra
    raise missing_extra("apache-flink", "flink") from exc

PROCESS_UID = "cdcflow-process"

log = logging.getLogger(__name__)


def _site_dirs() -> list[str]:
    """The driver's site-packages directories (their ``.pth`` files are processed on workers)."""
    return [d for d in site.getsitepackages() if os.path.isdir(d)]


def _python_path() -> str:
    """Where the TaskManager's embedded Python finds cdcflow and its dependencies.

    The driver's site-packages plus the directory holding the ``cdcflow`` package: an editable
    install is found through a ``.pth`` file, which ``PYTHONPATH`` entries do not process,
    and cdcflow must be importable before :mod:`cdcflow.flink.sitedirs` can process them (it
    does so for plugins' editable installs, see :class:`ProcessBatches`).
    """
    entries = [*_site_dirs(), str(Path(__file__).resolve().parents[2])]
    seen: list[str] = []
    for entry in entries:
        if entry not in seen and os.path.isdir(entry):
            seen.append(entry)
    return os.pathsep.join(seen)


def flink_configuration(spec: JobSpec) -> Any:
    """The Flink configuration of the job."""
    options = spec.options
    conf = Configuration()
    conf.set_string("python.execution-mode", "thread")
    conf.set_string("python.executable", options.python_executable or sys.executable)
    if options.python_archives:
        conf.set_string("python.archives", options.python_archives)
    else:
        conf.set_string("python.pythonpath", _python_path())
    conf.set_string("pipeline.name", spec.job_name)
    # The window rows (arrays of every record's bytes) are otherwise deep-copied at each
    # chained operator (window -> calc -> to-DataStream -> Python): docs/flink.md "Cost per
    # event". Safe here: no operator of the job keeps a reference to a record it emitted, and
    # the Python operator converts each row before it returns.
    conf.set_string("pipeline.object-reuse", "true")
    conf.set_string("restart-strategy.type", "fixed-delay")
    conf.set_string("restart-strategy.fixed-delay.attempts", str(options.restart_attempts))
    conf.set_string("restart-strategy.fixed-delay.delay", f"{options.restart_delay_ms} ms")
    for key, value in options.config.items():
        conf.set_string(key, value)
    return conf


def executor_for(config: PipelineConfig) -> BatchExecutor:
    """Build the pipeline's components on the worker and wrap them in the executor.

    Window rows of one partition reach one operator instance in offset order, so the
    executor checks the order (a batch going back would be skipped by the writers).
    """
    plan = plan_pipeline(config, check_tables=False)  # checked by the driver
    return BatchExecutor(
        plan.decode, plan.steps, plan.writers, plan.dead_letters, check_order=True
    )


class ProcessBatches(MapFunction):  # type: ignore[misc]
    """The Python operator: turns window rows into raw batches and runs the executor.

    It ships the validated pipeline config, not built components: the components are built
    on the worker in :meth:`open` (clients and locks never cross a pickle). The config
    travels pickled on its own and is unpickled in :meth:`open`, after the driver's
    site-packages ``.pth`` files were processed (:mod:`cdcflow.flink.sitedirs`): a plugin
    installed with ``pip install -e`` is then importable on the worker as in the driver, and
    a module that still cannot be imported is an error of :meth:`open`, reported with what
    Python said (:mod:`cdcflow.flink.stats`) instead of failing inside Flink's deserializer.
    """

    def __init__(self, config: PipelineConfig, stats_dir: str | None = None) -> None:
        import cloudpickle

        self._config_blob = cloudpickle.dumps(config)
        self.site_dirs = _site_dirs()
        self.stats_dir = stats_dir
        self.executor: BatchExecutor | None = None
        self._stats: RunStats | None = None
        self._stats_file: StatsFile | None = None
        self._instance = ""
        self._failed = False
        self._group: Any = None
        self._step_counters: dict[tuple[str, Labels], Any] = {}
        self._records: Any = None
        self._dead: Any = None

    def open(self, runtime_context: RuntimeContext) -> None:
        """Build the components, connect the writers and register the operator's metrics."""
        self._instance = f"{os.getpid()}-{uuid.uuid4().hex}"
        try:
            sitedirs.activate(self.site_dirs)
            config = pickle.loads(self._config_blob)  # noqa: S301 - written by the driver
            self.executor = executor_for(config)
            self.executor.open()
        except BaseException as exc:
            self._report(exc, "open")
            raise
        group = runtime_context.get_metrics_group().add_group("cdcflow")
        self._records = group.counter("records_processed")
        self._dead = group.counter("dead_letters")
        self._group = group
        self._step_counters = {}
        if self.stats_dir is not None:
            self._stats = RunStats()
            self._stats_file = StatsFile(self.stats_dir, self._instance)

    def _report(self, exc: BaseException, phase: str) -> None:
        """Store this instance's first error for the local CLI (when it asked for them)."""
        if self.stats_dir is None or self._failed:
            return
        self._failed = True
        try:
            write_error(self.stats_dir, self._instance, worker_error(exc, phase))
        except OSError:
            log.exception("could not store the operator's error for the CLI")

    def map(self, row: Any) -> int:
        """Process one window row (topic, partition, offsets, keys, values).

        Returns the batch's last offset.
        """
        raw = raw_batch(row[0], int(row[1]), row[2], row[3], row[4])
        assert self.executor is not None
        counters = self.executor.counters
        dead_before = counters.all_dead_letters
        try:
            self.executor.process(raw)
        except Exception as exc:
            self._report(exc, "batch")
            raise
        self._records.inc(len(raw.records))
        self._dead.inc(counters.all_dead_letters - dead_before)
        for name, labels, amount in self.executor.drain_step_metrics():
            self._step_counter(name, labels).inc(amount)
        if self._stats is not None and self._stats_file is not None:
            self._stats.records_read = counters.records
            self._stats.dead_letters = counters.all_dead_letters
            self._stats.written = dict(counters.written)
            self._stats.last_offsets[raw.partition_key] = raw.last_offset
            self._stats_file.write(self._stats)
        return raw.last_offset

    def _step_counter(self, name: str, labels: Labels) -> Any:
        """The Flink counter for one step counter, created on first use.

        Group ``cdcflow.<name>``, one user variable per label (``table``, ``column`` ...),
        metric ``count``.
        """
        counter = self._step_counters.get((name, labels))
        if counter is None:
            group = self._group.add_group(name)
            for label, value in labels:
                group = group.add_group(label, value)
            counter = self._step_counters[(name, labels)] = group.counter("count")
        return counter

    def close(self) -> None:
        """Close the writers."""
        if self.executor is not None:
            self.executor.close()


def build(env: Any, spec: JobSpec) -> None:
    """Add the job's source tables, batching query and Python operator to ``env``."""
    options = spec.options
    env.set_parallelism(options.parallelism)
    mode = (
        CheckpointingMode.EXACTLY_ONCE
        if options.checkpoint_mode == "exactly_once"
        else CheckpointingMode.AT_LEAST_ONCE
    )
    env.enable_checkpointing(options.checkpoint_interval_ms, mode)
    env.add_jars(*spec.jars)
    t_env = StreamTableEnvironment.create(env)
    tables = []
    for index, topic in enumerate(spec.topics):
        name = f"cdcflow_source_{index}"
        t_env.execute_sql(source_table_ddl(name, topic, spec))
        tables.append(name)
    query = batch_query_sql(tables, options.batch_interval_ms)
    batches = t_env.to_data_stream(t_env.sql_query(query))
    if not partitioned_by_partition(t_env.explain_sql(query), len(tables)):
        # Cannot prove each partition's windows run on one subtask: route by key instead.
        log.warning("Flink's plan does not hash by (topic, partition): adding a key_by")
        batches = batches.key_by(
            lambda row: partition_key(row[0], row[1]), key_type=Types.STRING()
        )
    (
        batches.map(ProcessBatches(spec.plan.config, spec.stats_dir), output_type=Types.LONG())
        .name(f"cdcflow:{spec.pipeline}")
        .uid(PROCESS_UID)
    )


def use_jvm_args(args: list[str]) -> bool:
    """Have the JVM PyFlink starts next run with ``args`` (see :func:`options.apply_jvm_args`)."""
    import pyflink.java_gateway as java_gateway

    running = getattr(java_gateway, "_gateway", None) is not None
    return apply_jvm_args(args, os.environ, gateway_running=running)


def environment(spec: JobSpec, master: tuple[str, int] | None = None) -> Any:
    """A StreamExecutionEnvironment for ``spec``: local mini cluster, or the cluster at ``master``.

    PyFlink's ``get_execution_environment`` always runs locally outside ``flink run``, so the
    remote environment is created through the Java API (``createRemoteEnvironment``) with the
    REST endpoint ``master``.
    """
    use_jvm_args(spec.options.jvm_args)  # before anything starts PyFlink's JVM
    conf = flink_configuration(spec)
    if master is None:
        return StreamExecutionEnvironment.get_execution_environment(conf)
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    jvm = gateway.jvm
    jars = gateway.new_array(jvm.String, 0)
    java_env = jvm.org.apache.flink.streaming.api.environment.StreamExecutionEnvironment
    j_env = java_env.createRemoteEnvironment(master[0], master[1], conf._j_configuration, jars)
    return StreamExecutionEnvironment(j_env)


def start(spec: JobSpec, master: tuple[str, int] | None = None) -> Any:
    """Build the job and start it without waiting; returns Flink's JobClient."""
    env = environment(spec, master)
    build(env, spec)
    return env.execute_async(spec.job_name)
