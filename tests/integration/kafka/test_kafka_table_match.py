"""``cdcflow validate`` names the tables of a Kafka source from its topics (issue 10 item 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.integration.kafka.helpers import run_cli, write_pipeline
from tests.servers.tansu import create_topic, unique_topic

pytestmark = pytest.mark.integration


def _with_redact(path: Path, rules: list[dict[str, object]], strict: bool) -> None:
    config = yaml.safe_load(path.read_text())
    config["transforms"] = [{"type": "redact", "rules": rules}]
    if strict:
        config["strict"] = True
    path.write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.mark.parametrize("strict", [False, True], ids=["warn", "strict"])
def test_validate_checks_rule_tables_against_the_topics(
    kafka_broker: str, tmp_path: Path, strict: bool
) -> None:
    topic = unique_topic("myshop.public.customers")
    create_topic(kafka_broker, topic, partitions=1)
    path = write_pipeline(tmp_path, kafka_broker, [topic], f"g-{topic}")
    # The topic's table id, as the decoder maps a topic name: db.schema.table from the left.
    db, schema = topic.split(".")[:2]
    good = f"{db}.{schema}.*"
    _with_redact(
        path,
        [
            {"table": good, "columns": ["email"], "strategy": "drop"},
            {"table": "myshop.pubic.customers", "columns": ["phone"], "strategy": "drop"},
        ],
        strict,
    )
    result = run_cli("validate", str(path))
    assert "transforms[0].rules[1].table: table pattern 'myshop.pubic.customers'" in (
        result.stderr
    )
    assert "rules[0]" not in result.stderr
    if strict:
        assert result.returncode == 2, result.stderr
        assert "error: 1 required table pattern match nothing" in result.stderr
        run = run_cli("run", str(path), "--until-caught-up")
        assert run.returncode == 2, run.stderr
        assert not (tmp_path / "out" / "mirror.sqlite").exists()
    else:
        assert result.returncode == 0, result.stderr
        assert "warning: " in result.stderr
