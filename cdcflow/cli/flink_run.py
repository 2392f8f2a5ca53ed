"""The Flink commands of the ``cdcflow`` CLI: ``run --engine flink``, submit, jobs, status, cancel.

``run --engine flink`` and ``submit`` need PyFlink (``pip install cdcflow[flink]``); ``jobs``,
``status`` and ``cancel`` only talk to the JobManager's REST endpoint. ``submit`` validates the
pipeline completely (configuration, jars, reachability of Kafka and every sink, start offsets)
and checks the cluster answers before it sends anything.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from cdcflow.cli.exit_codes import EXIT_RUNTIME, EXIT_USAGE
from cdcflow.errors import CdcflowError, ConfigError
from cdcflow.flink.options import MASTER_ENV, parse_master

log = logging.getLogger("cdcflow.cli.flink")

JAR_OPTION_HELP = (
    "Connector jar (path or URL), repeatable; overrides engine.flink.jars and "
    "$CDCFLOW_FLINK_JARS."
)


def _fail(error: BaseException, code: int) -> None:
    from cdcflow.logs import error_line

    click.echo(error_line(str(error) or type(error).__name__), err=True)
    sys.exit(code)


def _prepare(pipeline_file: Path, jars: Sequence[str]) -> Any:
    """Load and validate the pipeline for Flink; exits 2 on bad config, 1 when unreachable."""
    from cdcflow.flink.plan import prepare_job
    from cdcflow.pipelines.config import load_pipeline

    try:
        return prepare_job(load_pipeline(pipeline_file), jars)
    except ConfigError as exc:
        _fail(exc, EXIT_USAGE)
    except CdcflowError as exc:
        _fail(exc, EXIT_RUNTIME)
    return None


def _job_module() -> Any:
    try:
        from cdcflow.flink import job
    except ImportError as exc:
        _fail(exc, EXIT_RUNTIME)
    return job


def run_flink(pipeline_file: Path, until_caught_up: bool, jars: Sequence[str]) -> None:
    """``cdcflow run --engine flink``: run on a local Flink mini cluster.

    Streams until SIGINT or SIGTERM (the job is cancelled, exit 0; a restart resumes from
    the sinks' positions). With ``until_caught_up`` it reads to the end offsets seen at start, waits
    until every position-keeping sink has stored them, cancels the job and exits. The summary
    gives the records read, the events written per sink and the dead letters, as on Beam. A
    failing job is reported with the first error its Python operator raised; an error no
    restart can cure (a module that cannot be imported when the operator opens) stops the
    run at once instead of after every restart attempt.
    """
    from cdcflow.flink.stats import read_stats

    spec = _prepare(pipeline_file, jars)
    plan = spec.plan
    ends: dict[tuple[str, str], int] = {}
    if until_caught_up:
        if not any(w.keeps_positions for w in plan.writers):
            _fail(
                ConfigError(
                    "--until-caught-up on the Flink engine needs a sink that stores positions "
                    "(postgres, sqlite...): progress is read from it"
                ),
                EXIT_USAGE,
            )
        starts = {(t.topic, p): o for t in spec.topics for p, o in t.start_offsets.items()}
        for (topic, part), end in plan.source.end_offsets().items():
            if end > starts.get((topic, part), 0):
                ends[(topic, str(part))] = end
    with tempfile.TemporaryDirectory(prefix="cdcflow-flink-run-") as stats_dir:
        spec.stats_dir = stats_dir
        started = time.monotonic()
        _watch(spec, Path(stats_dir), ends if until_caught_up else None)
        elapsed = time.monotonic() - started
        stats = read_stats(Path(stats_dir))
    click.echo(f"pipeline {spec.pipeline!r} stopped after {elapsed:.1f}s")
    click.echo(f"  records read: {stats.records_read}")
    for sink, count in sorted(stats.written.items()):
        click.echo(f"  events written to {sink}: {count}")
    for writer in plan.writers:
        writer.open()
        try:
            for line in writer.describe():
                click.echo(f"  {line}")
        finally:
            writer.close()
    click.echo(f"  dead letters this run: {stats.dead_letters}")
    for line in plan.dead_letters.describe():
        click.echo(f"  {line}")


def _watch(spec: Any, stats_dir: Path, ends: dict[tuple[str, str], int] | None) -> None:
    """Start the job and follow it until it ends, is caught up (``ends``) or is stopped.

    Caught up: every position-keeping sink stored each partition's end offset seen at start
    (:func:`cdcflow.pipelines.plan.caught_up`, the resume rule's own measure).
    """
    from cdcflow.flink.stats import first_error, python_error_in_logs, read_stats
    from cdcflow.pipelines.plan import caught_up

    job = _job_module()
    started = time.time() - 1
    try:
        client = job.start(spec)
    except Exception as exc:  # noqa: BLE001 - any Flink start failure is a runtime error
        _fail(RuntimeError(_first_line(exc)), EXIT_RUNTIME)
        return
    job_id = str(client.get_job_id())
    click.echo(f"pipeline {spec.pipeline!r} running on a local Flink mini cluster (job {job_id})")

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    def failed(cause: BaseException | None) -> None:
        error = first_error(stats_dir)
        if error is not None:
            how = "" if error.restartable else " (a restart cannot help: stopped at once)"
            _fail(
                RuntimeError(
                    f"Flink job {job_id} failed: its Python operator raised "
                    f"{error.summary}{how}"
                ),
                EXIT_RUNTIME,
            )
        logged = python_error_in_logs(_flink_log_dir(), started)
        if logged is not None:
            _fail(
                RuntimeError(
                    f"Flink job {job_id} failed: its Python operator raised {logged[0]} "
                    f"(Flink log: {logged[1]})"
                ),
                EXIT_RUNTIME,
            )
        detail = _first_line(cause) if cause is not None else "see the Flink log"
        _fail(RuntimeError(f"Flink job {job_id} failed: {detail}"), EXIT_RUNTIME)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            error = first_error(stats_dir)
            if error is not None and not error.restartable:
                _cancel(client)
                failed(None)
            try:
                state = str(client.get_job_status().result())
            except Exception as exc:  # noqa: BLE001 - the mini cluster went away
                failed(exc)
                return
            if state in ("FAILED", "CANCELED", "FINISHED"):
                if state == "FAILED":
                    try:
                        client.get_job_execution_result().result()
                    except Exception as exc:  # noqa: BLE001 - surface the failure cause
                        failed(exc)
                    failed(None)
                break
            if ends is not None and caught_up(spec.plan.writers, ends):
                _settle(stats_dir, ends, read_stats)
                _cancel(client)
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        # Batches already written keep their positions; the rest is read again next time.
        click.echo("interrupted: cancelling the job", err=True)
        _cancel(client)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _flink_log_dir() -> Path:
    """Where the local mini cluster writes its log (``pyflink/log``, inside the environment)."""
    import importlib.util

    spec = importlib.util.find_spec("pyflink")
    origin = spec.origin if spec is not None else None
    return Path(origin).parent / "log" if origin else Path(sys.prefix) / "log"


def _cancel(client: Any) -> None:
    """Cancel the job; a job that already ended is fine."""
    try:
        client.cancel().result()
    except Exception:  # already finished, failed or gone
        log.debug("cancelling the Flink job failed", exc_info=True)


def _settle(stats_dir: Path, ends: dict[tuple[str, str], int], read_stats: Any) -> None:
    """Wait (a few seconds at most) until the operators' counts include the end offsets.

    The sinks store a batch's position before the operator records its counts, so right
    after the positions reach the ends the last batch may not be counted yet.
    """
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        seen = read_stats(stats_dir).last_offsets
        if all(seen.get(k, -1) >= end - 1 for k, end in ends.items()):
            return
        time.sleep(0.1)


def _first_line(exc: BaseException) -> str:
    """The most telling line of a Flink/py4j error.

    A Python error's last line if there is one (``ModuleNotFoundError: ...``), else the first
    ``Caused by:`` or exception line.
    """
    text = str(exc).strip()
    raw = text.splitlines()
    in_traceback = False
    for line in raw:  # the line that ends the first Python traceback
        if line.strip() == "Traceback (most recent call last):":
            in_traceback = True
        elif in_traceback and not line.startswith(" ") and _PYTHON_ERROR.match(line):
            return line.strip()
    lines = [line.strip() for line in raw]
    for line in lines:
        if "Caused by:" in line or "Exception" in line:
            return line
    return lines[0] if lines else type(exc).__name__


#: The last line of a Python traceback (``ModuleNotFoundError: No module named 'x'``).
_PYTHON_ERROR = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception): ")


def _master_option(function: Any) -> Any:
    return click.option(
        "--flink-master",
        "master",
        envvar=MASTER_ENV,
        required=True,
        metavar="HOST:PORT",
        help=f"REST endpoint of the Flink JobManager (or ${MASTER_ENV}).",
    )(function)


def _rest(master: str) -> Any:
    from cdcflow.flink.rest import FlinkRest

    try:
        host, port = parse_master(master)
    except ConfigError as exc:
        _fail(exc, EXIT_USAGE)
    return FlinkRest(host, port)


@click.command()
@click.argument("pipeline_file", type=click.Path(dir_okay=False, path_type=Path))
@_master_option
@click.option("--jar", "jars", multiple=True, metavar="PATH", help=JAR_OPTION_HELP)
@click.option(
    "--from-savepoint",
    default=None,
    metavar="PATH",
    help="Start from this savepoint or retained checkpoint (upgrading a running pipeline).",
)
@click.option(
    "--allow-non-restored-state",
    is_flag=True,
    help="With --from-savepoint: skip state that no longer maps to an operator.",
)
def submit(
    pipeline_file: Path,
    master: str,
    jars: tuple[str, ...],
    from_savepoint: str | None,
    allow_non_restored_state: bool,
) -> None:
    """Validate PIPELINE_FILE, then submit it to the Flink cluster and print the job id.

    Nothing is sent unless the whole pipeline is valid (configuration, jars, Kafka and every
    sink reachable) and the cluster at --flink-master answers.
    """
    rest = _rest(master)
    spec = _prepare(pipeline_file, jars)
    try:
        rest.overview()
    except CdcflowError as exc:
        _fail(exc, EXIT_RUNTIME)
    if from_savepoint:
        config = dict(spec.options.config)
        config["execution.savepoint.path"] = from_savepoint
        if allow_non_restored_state:
            config["execution.savepoint.ignore-unclaimed-state"] = "true"
        spec.options = spec.options.model_copy(update={"config": config})
    job = _job_module()
    try:
        client = job.start(spec, parse_master(master))
    except Exception as exc:  # noqa: BLE001 - report Flink's refusal with exit code 1
        _fail(RuntimeError(_first_line(exc)), EXIT_RUNTIME)
        return
    click.echo(str(client.get_job_id()))


def _format_time(millis: Any) -> str:
    if not isinstance(millis, int) or millis <= 0:
        return "-"
    moment = dt.datetime.fromtimestamp(millis / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_jobs(jobs: list[dict[str, Any]]) -> None:
    if not jobs:
        click.echo("no jobs")
        return
    click.echo(f"{'JOB ID':<32}  {'STATE':<12}  {'STARTED':<20}  NAME")
    for item in sorted(jobs, key=lambda j: j.get("start-time", 0), reverse=True):
        click.echo(
            f"{item.get('jid', '?'):<32}  {item.get('state', '?'):<12}  "
            f"{_format_time(item.get('start-time')):<20}  {item.get('name', '')}"
        )


@click.command()
@_master_option
def jobs(master: str) -> None:
    """List the jobs of the Flink cluster at --flink-master with their state."""
    rest = _rest(master)
    try:
        _print_jobs(rest.jobs())
    except CdcflowError as exc:
        _fail(exc, EXIT_RUNTIME)


@click.command()
@click.argument("job_id", required=False)
@_master_option
def status(job_id: str | None, master: str) -> None:
    """Show one job's state and checkpoints (JOB_ID), or list every job."""
    rest = _rest(master)
    try:
        if job_id is None:
            _print_jobs(rest.jobs())
            return
        info = rest.job(job_id)
        click.echo(f"job {info.get('jid')}: {info.get('name')}")
        click.echo(f"  state: {info.get('state')}")
        click.echo(f"  started: {_format_time(info.get('start-time'))}")
        checkpoints = rest.checkpoints(job_id)
        counts = checkpoints.get("counts", {})
        click.echo(
            f"  checkpoints: {counts.get('completed', 0)} completed, "
            f"{counts.get('failed', 0)} failed, {counts.get('restored', 0)} restored"
        )
    except CdcflowError as exc:
        _fail(exc, EXIT_RUNTIME)


@click.command()
@click.argument("job_id")
@_master_option
@click.option(
    "--savepoint",
    "savepoint_dir",
    default=None,
    metavar="DIR",
    help="Take a savepoint into DIR (on storage the JobManager can write) before cancelling.",
)
def cancel(job_id: str, master: str, savepoint_dir: str | None) -> None:
    """Cancel JOB_ID on the Flink cluster, optionally after a savepoint (printed)."""
    rest = _rest(master)
    try:
        if savepoint_dir:
            location = rest.cancel_with_savepoint(job_id, savepoint_dir)
            click.echo(f"cancelled {job_id}; savepoint: {location}")
        else:
            rest.cancel(job_id)
            click.echo(f"cancelled {job_id}")
    except CdcflowError as exc:
        _fail(exc, EXIT_RUNTIME)


def register(group: click.Group) -> None:
    """Add the Flink commands to the ``cdcflow`` command group."""
    for command in (submit, jobs, status, cancel):
        group.add_command(command)
