"""The Flink engine's job plan without Flink: options, jars, SQL, start offsets, imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from cdcflow.errors import ConfigError
from cdcflow.flink.options import (
    JARS_ENV,
    EngineConfig,
    FlinkOptions,
    default_jar_dir,
    jar_url,
    parse_master,
    resolve_jars,
)
from cdcflow.flink.plan import (
    JobSpec,
    TopicSpec,
    batch_query_sql,
    flink_options,
    java_kafka_properties,
    partition_key,
    prepare_job,
    source_table_ddl,
    topic_specs,
)
from cdcflow.pipelines.config import parse_pipeline


@pytest.fixture
def jars(tmp_path: Path) -> list[Path]:
    made = [
        tmp_path / "flink-connector-kafka-4.0.1-2.0.jar",
        tmp_path / "kafka-clients-3.9.1.jar",
    ]
    for jar in made:
        jar.write_bytes(b"PK")
    return made


def kafka_pipeline(tmp_path: Path, engine: str = "") -> str:
    return f"""
pipeline: shop
source:
  type: kafka
  bootstrap_servers: 127.0.0.1:9
  topics: [shop.public.orders, shop.public.customers]
  consumer_config: {{security.protocol: PLAINTEXT, fetch.wait.max.ms: 50, sasl.password: hunter2}}
sinks:
  - {{name: lite, type: sqlite, path: {tmp_path / 'out.sqlite'}}}
{engine}
"""


def test_options_defaults_and_validation() -> None:
    options = FlinkOptions()
    assert options.checkpoint_interval_ms == 10_000
    assert options.parallelism == 1
    assert options.batch_interval_ms == 200
    with pytest.raises(ValidationError):
        FlinkOptions(parallelism=0)
    with pytest.raises(ValidationError):
        FlinkOptions.model_validate({"checkpoint_interval_ms": 10, "nope": 1})
    coerced = FlinkOptions.model_validate({"config": {"a.b": True, "c": 5}})
    assert coerced.config == {"a.b": "true", "c": "5"}
    assert EngineConfig().flink == FlinkOptions()


def test_engine_section_in_a_pipeline_file(tmp_path: Path) -> None:
    text = kafka_pipeline(
        tmp_path, "engine:\n  flink: {parallelism: 3, checkpoint_interval_ms: 2000}"
    )
    config = parse_pipeline(text, tmp_path / "p.yaml", env={})
    options = flink_options(config)
    assert (options.parallelism, options.checkpoint_interval_ms) == (3, 2000)
    assert flink_options(parse_pipeline(kafka_pipeline(tmp_path), tmp_path / "p.yaml", {})) == (
        FlinkOptions()
    )


def test_engine_section_errors_are_located(tmp_path: Path) -> None:
    text = kafka_pipeline(tmp_path, "engine:\n  flink: {parallelism: 0, colour: red}")
    with pytest.raises(ConfigError) as caught:
        parse_pipeline(text, tmp_path / "p.yaml", env={})
    message = str(caught.value)
    assert "p.yaml:11: engine.flink.parallelism" in message
    assert "engine.flink.colour" in message


def test_jars_precedence_cli_then_file_then_env(jars: list[Path], tmp_path: Path) -> None:
    env = {JARS_ENV: ":".join(str(j) for j in jars)}
    from_env = resolve_jars(FlinkOptions(), env=env)
    assert from_env == [j.resolve().as_uri() for j in jars]
    relative = FlinkOptions(jars=[j.name for j in jars])
    assert resolve_jars(relative, env={}, base_dir=tmp_path) == from_env
    other = tmp_path / "other"
    other.mkdir()
    cli = [other / j.name for j in jars]
    for jar in cli:
        jar.write_bytes(b"PK")
    assert resolve_jars(relative, [str(c) for c in cli], env=env, base_dir=tmp_path) == [
        c.resolve().as_uri() for c in cli
    ]


def test_missing_jars_name_the_maven_artifacts(jars: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_jars(FlinkOptions(), env={}, default_dir=tmp_path / "no-jars")
    assert "org.apache.flink:flink-connector-kafka:4.0.1-2.0" in str(caught.value)
    assert f"no *.jar in {tmp_path / 'no-jars'}" in str(caught.value)
    assert "make venv-flink" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        resolve_jars(FlinkOptions(jars=[str(jars[0])]), env={})
    assert "no kafka-clients jar" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        resolve_jars(FlinkOptions(jars=[str(jars[0]), "/nowhere/kafka-clients-3.9.1.jar"]), env={})
    assert "/nowhere/kafka-clients-3.9.1.jar does not exist" in str(caught.value)


def test_jars_default_to_the_environments_jars_directory(
    jars: list[Path], tmp_path: Path
) -> None:
    # What `make venv-flink` leaves: <venv>/jars/*.jar, used when nothing else names jars.
    venv_jars = tmp_path / "venv" / "jars"
    venv_jars.mkdir(parents=True)
    for jar in jars:
        (venv_jars / jar.name).write_bytes(b"PK")
    found = resolve_jars(FlinkOptions(), env={}, default_dir=venv_jars)
    assert found == sorted((venv_jars / j.name).resolve().as_uri() for j in jars)
    # anything configured wins over the directory
    env = {JARS_ENV: ":".join(str(j) for j in jars)}
    assert resolve_jars(FlinkOptions(), env=env, default_dir=venv_jars) == [
        j.resolve().as_uri() for j in jars
    ]
    # a directory missing one of the two jars names it
    (venv_jars / jars[1].name).unlink()
    with pytest.raises(ConfigError, match=f"the jars in {venv_jars}: no"):
        resolve_jars(FlinkOptions(), env={}, default_dir=venv_jars)


def test_default_jar_dir_is_next_to_the_interpreters_environment() -> None:
    assert default_jar_dir() == Path(sys.prefix) / "jars"


def test_jar_urls_keep_remote_urls() -> None:
    assert jar_url("s3://bucket/kafka-clients.jar") == "s3://bucket/kafka-clients.jar"
    assert jar_url("/opt/x.jar") == "file:///opt/x.jar"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0.0.1:8081", ("127.0.0.1", 8081)), ("http://flink:80/", ("flink", 80))],
)
def test_parse_master(value: str, expected: tuple[str, int]) -> None:
    assert parse_master(value) == expected


@pytest.mark.parametrize("value", ["flink", ":8081", "host:0", "host:port", "host:70000"])
def test_parse_master_rejects(value: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_master(value)


def test_java_properties_drop_librdkafka_settings_and_unwrap_secrets() -> None:
    props = java_kafka_properties(
        {
            "security.protocol": "SASL_SSL",
            "fetch.wait.max.ms": 50,
            "sasl.password": SecretStr("hunter2"),
            "check.crcs": True,
        },
        {"max.poll.records": "2000"},
    )
    assert props == {
        "security.protocol": "SASL_SSL",
        "sasl.password": "hunter2",
        "check.crcs": "true",
        "max.poll.records": "2000",
    }
    with pytest.raises(ConfigError, match="managed by cdcflow"):
        java_kafka_properties({}, {"group.id": "x"})
    with pytest.raises(ConfigError, match="managed by cdcflow"):
        java_kafka_properties({}, {"commit.offsets.on.checkpoint": "true"})


def test_topic_specs_group_partitions_by_topic() -> None:
    specs = topic_specs({("b", 1): 7, ("a", 0): 0, ("b", 0): 3})
    assert specs == [TopicSpec("a", {0: 0}), TopicSpec("b", {0: 3, 1: 7})]


def _spec(tmp_path: Path, jars: list[Path]) -> JobSpec:
    text = kafka_pipeline(tmp_path, f"engine:\n  flink: {{jars: {[str(j) for j in jars]}}}")
    config = parse_pipeline(text, tmp_path / "p.yaml", env={})
    return prepare_job(config, connect=False)


def test_prepare_without_connecting(tmp_path: Path, jars: list[Path]) -> None:
    spec = _spec(tmp_path, jars)
    assert spec.job_name == "cdcflow:shop"
    assert spec.bootstrap_servers == "127.0.0.1:9"
    assert spec.group_id == "cdcflow.shop"
    assert spec.jars == [j.resolve().as_uri() for j in jars]
    assert spec.kafka_properties == {"security.protocol": "PLAINTEXT", "sasl.password": "hunter2"}
    assert spec.topics == []


def test_prepare_refuses_non_kafka_sources(tmp_path: Path, jars: list[Path]) -> None:
    (tmp_path / "c.jsonl").write_text("")
    text = (
        "pipeline: f\nsource: {type: file, path: c.jsonl}\n"
        "sinks: [{name: n, type: 'null'}]\n"
        f"engine: {{flink: {{jars: {[str(j) for j in jars]}}}}}\n"
    )
    with pytest.raises(ConfigError, match="reads Kafka sources only"):
        prepare_job(parse_pipeline(text, tmp_path / "p.yaml", env={}), connect=False)


def test_source_ddl_specific_offsets_and_quoting(tmp_path: Path, jars: list[Path]) -> None:
    spec = _spec(tmp_path, jars)
    spec.kafka_properties["sasl.jaas.config"] = "x password='p'"
    ddl = source_table_ddl("src", TopicSpec("shop.public.orders", {0: 5, 1: 0}), spec)
    assert "CREATE TEMPORARY TABLE `src`" in ddl
    assert "'topic' = 'shop.public.orders'" in ddl
    assert "'scan.startup.mode' = 'specific-offsets'" in ddl
    assert "'scan.startup.specific-offsets' = 'partition:0,offset:5;partition:1,offset:0'" in ddl
    assert "'properties.sasl.jaas.config' = 'x password=''p'''" in ddl
    assert "'key.format' = 'raw'" in ddl and "'value.format' = 'raw'" in ddl
    assert "`offset` BIGINT METADATA VIRTUAL" in ddl
    # offsets stay in the sinks: committing a checkpoint's offsets would run ahead of them
    assert "'properties.commit.offsets.on.checkpoint' = 'false'" in ddl
    earliest = source_table_ddl("src", TopicSpec("t"), spec)
    assert "'scan.startup.mode' = 'earliest-offset'" in earliest


def test_batch_query_unions_one_window_aggregate_per_table() -> None:
    sql = batch_query_sql(["a", "b"], 250)
    assert sql.count("UNION ALL") == 1
    assert "INTERVAL '0.250' SECOND" in sql
    assert "ARRAY_AGG(`offset`)" in sql and "ARRAY_AGG(`k`)" in sql and "ARRAY_AGG(`v`)" in sql
    assert "ROW(" not in sql  # ARRAY_AGG of ROW repeats the last row in Flink 2.3
    with pytest.raises(ValueError):
        batch_query_sql([], 200)


def test_partition_key_is_unique_per_partition() -> None:
    assert partition_key("a", 1) != partition_key("a", 11)
    assert partition_key("a.1", 1) != partition_key("a", 11)


def test_flink_planning_modules_import_no_engine() -> None:
    probe = (
        "import json, sys\n"
        "import cdcflow.flink.options, cdcflow.flink.plan, cdcflow.flink.processor\n"
        "import cdcflow.flink.rest, cdcflow.cli.flink_run, cdcflow.cli.app\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('pyflink', 'apache_beam'))))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


EXPLAINED = """== Optimized Physical Plan ==
Union(all=[true], union=[topic, partition, offsets, keys, vals])
:     +- Exchange(distribution=[hash[topic, partition]])
== Optimized Execution Plan ==
Union(all=[true], union=[topic, partition, offsets, keys, vals])
:- Calc(select=[topic, partition, offsets, keys, vals])
:  +- WindowAggregate(groupBy=[topic, partition], window=[TUMBLE(time_col=[pt], size=[200 ms])])
:     +- Exchange(distribution=[hash[topic, partition]])
:        +- TableSourceScan(table=[[default_catalog, default_database, a]])
+- Calc(select=[topic, partition, offsets, keys, vals])
   +- WindowAggregate(groupBy=[topic, partition], window=[TUMBLE(time_col=[pt], size=[200 ms])])
      +- Exchange(distribution=[hash[topic, partition]])
         +- TableSourceScan(table=[[default_catalog, default_database, b]])
"""


def test_forward_routing_only_when_the_plan_hashes_by_partition() -> None:
    from cdcflow.flink.plan import partitioned_by_partition

    assert partitioned_by_partition(EXPLAINED, 2)
    assert not partitioned_by_partition(EXPLAINED, 3)
    widened = EXPLAINED.replace(
        "      +- Exchange(distribution=[hash[topic, partition]])",
        "      +- Exchange(distribution=[hash[window_start, topic, partition]])",
    )
    assert not partitioned_by_partition(widened, 2)
    assert not partitioned_by_partition(EXPLAINED.replace("hash[topic, partition]", "single"), 2)


def test_jvm_args_go_before_the_users_and_only_into_a_jvm_cdcflow_starts() -> None:
    from cdcflow.flink.options import FlinkOptions, apply_jvm_args

    defaults = FlinkOptions().jvm_args
    assert "-XX:TieredStopAtLevel=1" in defaults and any(a.startswith("-Xmx") for a in defaults)
    env = {"JVM_ARGS": "-Xmx2g"}
    assert apply_jvm_args(["-Xmx1g", "-XX:+UseSerialGC"], env, gateway_running=False)
    assert env["JVM_ARGS"] == "-Xmx1g -XX:+UseSerialGC -Xmx2g"  # the user's -Xmx2g wins
    fresh: dict[str, str] = {}
    assert apply_jvm_args(["-Xmx1g"], fresh, gateway_running=False)
    assert fresh == {"JVM_ARGS": "-Xmx1g"}
    for env, running in (({}, True), ({"PYFLINK_GATEWAY_PORT": "1"}, False)):
        assert not apply_jvm_args(["-Xmx1g"], env, gateway_running=running)
        assert "JVM_ARGS" not in env
    assert not apply_jvm_args([], {}, gateway_running=False)
