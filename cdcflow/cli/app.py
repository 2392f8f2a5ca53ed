"""The ``cdcflow`` command line.

Exit codes: 0 success, 2 bad usage or configuration, 1 runtime failure (ARCHITECTURE §6).

No traceback reaches a user unless ``--log-level debug`` is given: every command ends an
unexpected exception with one ``error:`` line naming the component that failed (exit 1), a
:class:`~cdcflow.errors.ConfigError` with exit 2. Error lines follow ``--log-format`` and are
scrubbed of secrets (:mod:`cdcflow.logs`, :mod:`cdcflow.scrub`).
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import time
from pathlib import Path
from typing import IO, Any, Literal, NoReturn

import click

from cdcflow import __version__
from cdcflow.cli.exit_codes import EXIT_RUNTIME, EXIT_USAGE
from cdcflow.cli.failures import describe_unexpected, root_cause, without_step_label
from cdcflow.errors import CdcflowError, ConfigError
from cdcflow.logs import configure_logging, error_line, json_logs
from cdcflow.scrub import scrub

log = logging.getLogger("cdcflow.cli")


def report_error(message: object) -> None:
    """Print one ``error:`` line (or JSON object) to stderr, scrubbed of secrets."""
    click.echo(error_line(str(message)), err=True)


def say(text: str) -> None:
    """Print one line of command output to stdout, scrubbed of secrets."""
    click.echo(scrub(text))


def _fail_config(error: ConfigError) -> NoReturn:
    report_error(without_step_label(error))
    sys.exit(EXIT_USAGE)


def _fail_runtime(error: BaseException | str) -> NoReturn:
    report_error(str(error) or type(error).__name__)
    sys.exit(EXIT_RUNTIME)


class _Main(click.Group):
    """The command group, ending every command's unexpected exceptions with one error line.

    The commands in :data:`LAZY_COMMANDS` are imported only when they are looked up to run
    (or for their own ``--help``); ``cdcflow --help`` lists them from :data:`LAZY_SHORT_HELP`.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, the lazy ones included (sorted, as click lists them)."""
        return sorted({*self.commands, *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name``, importing its module if it is a lazy one."""
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in LAZY_COMMANDS:
            command = _load_command(cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help``, without importing the lazy commands."""
        rows: list[tuple[str, str]] = []
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        for name in names:
            command = self.commands.get(name)
            if command is None:
                stand_in = click.Command(name, help=LAZY_SHORT_HELP[name])
                rows.append((name, stand_in.get_short_help_str(limit)))
            elif not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; ConfigError -> exit 2, other errors -> one ``error:`` line, exit 1."""
        try:
            return super().invoke(ctx)
        except click.exceptions.ClickException as exc:
            if not json_logs():
                raise
            # --log-format json: a usage error is one JSON object too (click prints text).
            report_error(exc.format_message())
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.Abort):
            raise
        except ConfigError as exc:
            log.debug("configuration error", exc_info=True)
            _fail_config(exc)
        except CdcflowError as exc:
            log.debug("command failed", exc_info=True)
            _fail_runtime(exc)
        except Exception as exc:  # the last line of defence: no tracebacks
            log.debug("unexpected error", exc_info=True)
            command = ctx.invoked_subcommand or "cdcflow"
            report_error(describe_unexpected(exc, f"cdcflow {command}"))
            sys.exit(EXIT_RUNTIME)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cdcflow")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log line format (json: one object per line).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
)
def main(log_format: str, log_level: str) -> None:
    """cdcflow: change-data-capture pipelines on Apache Beam and Apache Flink."""
    configure_logging(log_format, log_level)


@main.command()
@click.argument("pipeline_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--until-caught-up",
    is_flag=True,
    help="Read every partition to the end offset seen at start, write, commit and exit. "
    "Without it a Kafka source streams until SIGINT/SIGTERM, then finishes the batch in "
    "hand, commits and exits 0. (File sources are bounded and always stop at the end.)",
)
@click.option(
    "--runner",
    default="DirectRunner",
    show_default=True,
    help="Beam runner (DirectRunner, or PortableRunner with --beam-option job_endpoint=...).",
)
@click.option(
    "--beam-option",
    "beam_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra Beam pipeline option, repeatable (e.g. --beam-option direct_num_workers=2).",
)
@click.option(
    "--engine",
    type=click.Choice(["beam", "flink"]),
    default="beam",
    show_default=True,
    help="beam: Apache Beam (--runner); flink: a local Flink mini cluster (cdcflow[flink]).",
)
@click.option("--jar", "jars", multiple=True, metavar="PATH", help="Flink connector jar.")
def run(
    pipeline_file: Path,
    until_caught_up: bool,
    runner: str,
    beam_options: tuple[str, ...],
    engine: str,
    jars: tuple[str, ...],
) -> None:
    """Run PIPELINE_FILE on Apache Beam (or --engine flink) and print a summary."""
    from cdcflow.pipelines.config import load_pipeline

    if engine == "flink":
        from cdcflow.cli.flink_run import run_flink

        run_flink(pipeline_file, until_caught_up, jars)
        return

    try:
        config = load_pipeline(pipeline_file)
    except ConfigError as exc:
        _fail_config(exc)
    args = [f"--runner={runner}"]
    for option in beam_options:
        if "=" not in option:
            report_error(f"--beam-option expects KEY=VALUE (got {option!r})")
            sys.exit(EXIT_USAGE)
        args.append(f"--{option.lstrip('-')}")
    started = time.monotonic()
    try:
        from cdcflow.beam.runner import run as run_beam

        report = run_beam(config, args, until_caught_up=until_caught_up)
    except ConfigError as exc:
        _fail_config(exc)
    except CdcflowError as exc:
        log.debug("pipeline failed", exc_info=True)
        _fail_runtime(without_step_label(exc))
    except Exception as exc:
        log.debug("pipeline failed", exc_info=True)
        cause = root_cause(exc)
        if isinstance(cause, CdcflowError):
            _fail_runtime(without_step_label(cause))
        report_error(describe_unexpected(exc, f"pipeline {config.pipeline!r}"))
        sys.exit(EXIT_RUNTIME)
    except KeyboardInterrupt:
        # Ctrl-C where no stop handler runs (file sources; Kafka sources stop cleanly on the
        # first signal): nothing after the last committed batch is lost by stopping here.
        report_error("aborted by signal before the run finished")
        sys.exit(EXIT_RUNTIME)
    elapsed = time.monotonic() - started
    how = "stopped by signal after" if report.stopped_by_signal else "finished in"
    say(f"pipeline {config.pipeline!r} {how} {elapsed:.1f}s")
    say(f"  records read: {report.records_read}")
    for sink, count in sorted(report.written.items()):
        say(f"  events written to {sink}: {count}")
    for line in report.sink_lines:
        say(f"  {line}")
    for line in report.dead_letter_lines:
        say(f"  {line}")


def _warn_unmatched_tables(config: Any, plan: Any) -> None:
    """Warn for every table pattern that matches none of the sources' tables."""
    from cdcflow.pipelines.inputs import AllTables
    from cdcflow.pipelines.table_match import warnings

    tables = plan.source if len(plan.inputs) == 1 else AllTables(plan.inputs)
    for line in warnings(config, tables, plan.inputs[0].decode):
        click.echo(scrub(f"warning: {line}"), err=True)


@main.command()
@click.argument("pipeline_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--engine",
    type=click.Choice(["beam", "flink"]),
    default="beam",
    show_default=True,
    help="The engine the pipeline will run on: flink also checks its limits (Kafka sources "
    "only), and what each sink must be able to do depends on how the engine replays.",
)
def validate(pipeline_file: Path, engine: Literal["beam", "flink"]) -> None:
    """Check PIPELINE_FILE without moving data: configuration, reachability, permissions.

    The file is validated first (every problem listed as FILE:LINE: KEY: ...; exit code 2),
    including what the pipeline asks of each sink against what the sink can do on --engine;
    with --engine flink, a source the Flink engine cannot read is a configuration error too.
    Then the source, every sink and the dead-letter destination are checked (files readable,
    directories creatable, servers reachable): one error line per problem, exit code 1.
    Exit code 0 when the pipeline is valid and every check passed.
    """
    from cdcflow.pipelines.config import load_pipeline
    from cdcflow.pipelines.plan import plan_pipeline

    try:
        config = load_pipeline(pipeline_file)
        if engine == "flink":
            from cdcflow.flink.plan import check_flink_sources

            check_flink_sources(config)
        plan = plan_pipeline(config, engine=engine)
    except ConfigError as exc:
        _fail_config(exc)
    if engine == "beam" and config.engine is not None:
        # engine.flink options with a source only Beam runs: say so before anyone submits it.
        from cdcflow.flink.plan import flink_source_problem

        problem = flink_source_problem(config)
        if problem is not None:
            click.echo(scrub(f"warning: {problem}; its engine.flink options go unused"), err=True)
    checks: list[tuple[str, Any]] = [
        ("source" if len(plan.inputs) == 1 else f"source {i.name!r}", i.source)
        for i in plan.inputs
    ]
    checks.extend((f"sink {writer.name!r}", writer) for writer in plan.writers)
    checks.append(("dead_letter", plan.dead_letters))
    problems: list[str] = []
    for component, target in checks:
        try:
            problems.extend(target.check())
        except Exception as exc:  # a check that crashes is a failed check
            log.debug("checking %s failed", component, exc_info=True)
            problems.append(describe_unexpected(exc, component))
    if not problems:
        _warn_unmatched_tables(config, plan)
    if problems:
        for problem in problems:
            report_error(problem)
        sys.exit(EXIT_RUNTIME)
    say(
        f"{pipeline_file}: pipeline {config.pipeline!r} is valid "
        f"({len(config.sinks)} sink{'s' if len(config.sinks) != 1 else ''}, "
        f"{len(config.transforms)} transform{'s' if len(config.transforms) != 1 else ''})"
    )


@main.command()
@click.argument("input_file", default="-", type=click.File("rb"))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["debezium-json", "debezium-avro"]),
    default="debezium-json",
    show_default=True,
    help="debezium-json: one JSON message per line; debezium-avro: one Confluent wire-format "
    "message per line, base64 or hex (--encoding), schemas from --schema-registry-url.",
)
@click.option(
    "--encoding",
    type=click.Choice(["base64", "hex"]),
    default=None,
    help="debezium-avro only: how each line encodes the message bytes  [default: base64]",
)
@click.option(
    "--schema-registry-url",
    default=None,
    metavar="URL",
    help="debezium-avro only (required): Confluent-compatible schema registry.",
)
@click.option("--schema-registry-user", default=None, help="Registry basic-auth user name.")
@click.option(
    "--schema-registry-password",
    default=None,
    envvar="CDCFLOW_SCHEMA_REGISTRY_PASSWORD",
    show_envvar=True,
    help="Registry basic-auth password (prefer the environment variable).",
)
@click.option(
    "--schema-registry-ca",
    default=None,
    metavar="PEM",
    type=click.Path(exists=True, dir_okay=False),
    help="CA bundle to verify the registry's TLS certificate.",
)
@click.option(
    "--key-separator",
    default=None,
    help="Text between the message key and value on each line (e.g. a tab, as kcat -K writes).",
)
@click.option(
    "--topic",
    default=None,
    help="Topic the messages came from; names the table when a message does not.",
)
@click.option(
    "--tombstones",
    type=click.Choice(["marker", "delete"]),
    default="marker",
    show_default=True,
    help="Print a null value as a tombstone marker, or as a delete of its key.",
)
def decode(
    input_file: IO[bytes],
    fmt: str,
    encoding: str | None,
    schema_registry_url: str | None,
    schema_registry_user: str | None,
    schema_registry_password: str | None,
    schema_registry_ca: str | None,
    key_separator: str | None,
    topic: str | None,
    tombstones: Any,
) -> None:
    """Decode Debezium messages, one per line of INPUT_FILE (default: stdin).

    Prints canonical JSON, one object per line. Undecodable lines print an error object and
    decoding goes on; the exit code is 1 if any line failed. Blank lines are skipped.
    With --format debezium-avro each line is base64 (or hex) of a Confluent wire-format
    message; an unreachable schema registry stops the command with exit code 1.
    """
    from cdcflow.errors import as_decode_error
    from cdcflow.schemas.canonical import decoded_dict, dumps
    from cdcflow.schemas.debezium import DebeziumJsonDecoder
    from cdcflow.schemas.model import Position

    decoder: Any
    unpack: Any = None  # text of a line part -> message bytes (debezium-avro)
    fatal: tuple[type[BaseException], ...] = ()
    if fmt == "debezium-avro":
        from cdcflow.cli import decode_avro as avro
        from cdcflow.schemas.registry import FATAL_DECODE_ERRORS

        try:
            decoder = avro.avro_decoder(
                schema_registry_url,
                schema_registry_user,
                schema_registry_password,
                schema_registry_ca,
                tombstones,
            )
        except ConfigError as exc:
            _fail_config(exc)
            return
        unpack = avro.line_decoder("hex" if encoding == "hex" else "base64")
        fatal = FATAL_DECODE_ERRORS
    else:
        avro_only = {
            "--encoding": encoding,
            "--schema-registry-url": schema_registry_url,
            "--schema-registry-user": schema_registry_user,
            "--schema-registry-ca": schema_registry_ca,
        }
        for option, given in avro_only.items():
            if given is not None:
                _fail_config(ConfigError(f"{option} is only used with --format debezium-avro"))
        decoder = DebeziumJsonDecoder(tombstones=tombstones)
    name = getattr(input_file, "name", "-")
    stream = "stdin" if name in ("-", "<stdin>") else Path(str(name)).name
    separator = key_separator.encode() if key_separator else None
    out = sys.stdout.buffer
    failed = 0
    chunk: list[bytes] = []
    # A pipe or terminal may stay open (kcat -C | cdcflow decode): print each line as it comes.
    per_write = 1000 if _is_regular_file(input_file) else 1
    for index, line in enumerate(input_file):
        body = line.rstrip(b"\r\n")
        if not body.strip():
            continue
        key = None
        if separator is not None and separator in body:
            key, body = body.split(separator, 1)
        position = Position(stream, 0, index)
        try:
            value: bytes | None = body
            if unpack is not None:
                key, value = unpack(key), unpack(body)
            item = decoder.decode(value, position, key=key, topic=topic)
            chunk.append(dumps(decoded_dict(item)))
        except fatal as exc:  # the schema registry is unreachable: stop, exit 1
            out.write(b"".join(line + b"\n" for line in chunk))
            out.flush()
            _fail_runtime(exc)
        except Exception as exc:  # noqa: BLE001 - every bad line becomes an error object
            if not isinstance(exc, CdcflowError):
                exc = as_decode_error(exc)  # e.g. a value too deep to encode
            failed += 1
            chunk.append(
                dumps(
                    {
                        "kind": "error",
                        "line": index + 1,
                        "error": str(exc) or type(exc).__name__,
                        "error_type": type(exc).__name__,
                    }
                )
            )
        if len(chunk) >= per_write:
            out.write(b"\n".join(chunk) + b"\n")
            chunk = []
            if per_write == 1:
                out.flush()
    if chunk:
        out.write(b"\n".join(chunk) + b"\n")
    out.flush()
    if failed:
        click.echo(f"{failed} line{'s' if failed > 1 else ''} could not be decoded", err=True)
        sys.exit(EXIT_RUNTIME)


def _is_regular_file(handle: IO[bytes]) -> bool:
    """True when ``handle`` reads a regular file (not a pipe, terminal or in-memory stream)."""
    try:
        return stat.S_ISREG(os.fstat(handle.fileno()).st_mode)
    except (AttributeError, OSError, ValueError):
        return False


#: Commands defined in other modules, imported only when the command is looked up: ``--help``,
#: ``validate`` and ``decode`` must not pay for (or need) the Flink CLI, PyFlink or Beam.
#: ``status`` (``status_cli``) serves pipeline files and Flink job ids both (the Flink part is
#: the same command, invoked for a job id), so the Flink module's own ``status`` is not listed.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "cancel": ("cdcflow.cli.flink_run", "cancel"),
    "jobs": ("cdcflow.cli.flink_run", "jobs"),
    "produce": ("cdcflow.cli.produce", "produce"),
    "status": ("cdcflow.cli.status", "status"),
    "submit": ("cdcflow.cli.flink_run", "submit"),
}

#: One-line help of the lazy commands for ``cdcflow --help`` (which then imports none of them);
#: tests/unit/test_cli_lazy.py checks each line is the command's own short help.
LAZY_SHORT_HELP: dict[str, str] = {
    "cancel": "Cancel JOB_ID on the Flink cluster, optionally after a savepoint (printed).",
    "jobs": "List the jobs of the Flink cluster at --flink-master with their state.",
    "produce": "Send each line of INPUT_FILE (default: stdin) to a Kafka topic as one message.",
    "status": "Show where PIPELINE.yaml's sinks stand, or a Flink job's state.",
    "submit": "Validate PIPELINE_FILE, then submit it to the Flink cluster and print the job id.",
}


def _load_command(name: str) -> click.Command:
    """Import the module of lazy command ``name`` and return the command."""
    import importlib

    module_name, attribute = LAZY_COMMANDS[name]
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):  # pragma: no cover - a wiring mistake
        raise TypeError(f"{module_name}.{attribute} is not a click command")
    return command
