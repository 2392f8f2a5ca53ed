"""The name-to-factory registry that resolves YAML ``type:`` values."""

from __future__ import annotations

import subprocess
import sys
import typing
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, Literal

import pytest

from cdcflow.core.components import BuildContext, ComponentConfig
from cdcflow.errors import ConfigError
from cdcflow.io.files import FileSourceConfig
from cdcflow.io.sqlite import SqliteSinkConfig
from cdcflow.pipelines import registry
from cdcflow.pipelines.config import parse_pipeline


class CustomSinkConfig(ComponentConfig):
    """A third-party sink used by these tests."""

    type: Literal["custom"]
    name: str
    endpoint: str

    def build(self, context: BuildContext) -> Any:
        return ("custom", self.endpoint)


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_extra", {})
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [])


def test_builtins_resolve_to_models_of_their_type() -> None:
    assert registry._BUILTINS, "no built-in components"
    for (kind, type_name), path in registry._BUILTINS.items():
        model = registry.model_for(kind, type_name)  # type: ignore[arg-type]
        assert issubclass(model, ComponentConfig), path
        allowed = typing.get_args(model.model_fields["type"].annotation)
        assert type_name in allowed, f"{path} does not accept type: {type_name}"


def test_embedded_default_components() -> None:
    assert registry.model_for("source", "file") is FileSourceConfig
    assert registry.model_for("sink", "sqlite") is SqliteSinkConfig
    assert {"file"} <= set(registry.known_types("source"))
    assert {"null", "sqlite"} <= set(registry.known_types("sink"))
    assert registry.known_types("dead_letter") == sorted(registry.known_types("dead_letter"))
    assert "file" in registry.known_types("dead_letter")


def test_unknown_type_lists_what_exists() -> None:
    with pytest.raises(ConfigError) as info:
        registry.model_for("sink", "sqlit")
    message = str(info.value)
    assert message.startswith("unknown sink type 'sqlit'; expected one of: ")
    assert "sqlite" in message and "null" in message


def test_unknown_type_of_an_empty_kind(
    clean_registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "_BUILTINS", {("sink", "null"): "cdcflow.io.null:NullSinkConfig"})
    with pytest.raises(ConfigError) as info:
        registry.model_for("transform", "redact")
    assert str(info.value) == (
        "unknown transform type 'redact'; expected one of: (none: no transform types exist)"
    )


def test_kind_and_type_are_separate_namespaces() -> None:
    with pytest.raises(ConfigError, match="unknown source type 'sqlite'"):
        registry.model_for("source", "sqlite")


def test_register_adds_a_type(clean_registry: None) -> None:
    registry.register("sink", "custom", f"{__name__}:CustomSinkConfig")
    assert registry.model_for("sink", "custom") is CustomSinkConfig
    assert "custom" in registry.known_types("sink")
    config = parse_pipeline(
        "pipeline: p\nsource: {type: file, path: x}\n"
        "sinks: [{name: c, type: custom, endpoint: 'http://h'}]\n",
        Path("/p.yaml"),
        env={},
    )
    assert isinstance(config.sinks[0], CustomSinkConfig)
    assert config.sinks[0].build(config.context) == ("custom", "http://h")


def test_registered_model_validates_its_keys(clean_registry: None) -> None:
    registry.register("sink", "custom", f"{__name__}:CustomSinkConfig")
    with pytest.raises(ConfigError, match=r"/p.yaml:3: sinks\[0\].endpoint: is required"):
        parse_pipeline(
            "pipeline: p\nsource: {type: file, path: x}\nsinks: [{name: c, type: custom}]\n",
            Path("/p.yaml"),
            env={},
        )


def test_register_overrides_a_builtin(clean_registry: None) -> None:
    registry.register("sink", "sqlite", f"{__name__}:CustomSinkConfig")
    assert registry.model_for("sink", "sqlite") is CustomSinkConfig


def test_entry_points_are_loaded_once(
    clean_registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    group = "cdcflow.connectors"
    points = [
        EntryPoint(name="sink.custom", value=f"{__name__}:CustomSinkConfig", group=group),
        EntryPoint(name="widget.thing", value="nowhere:Nothing", group=group),
        EntryPoint(name="sink", value="nowhere:Nothing", group=group),
    ]

    def entry_points(group: str) -> list[EntryPoint]:
        calls.append(group)
        return points

    monkeypatch.setattr(registry.metadata, "entry_points", entry_points)
    assert registry.model_for("sink", "custom") is CustomSinkConfig
    assert "custom" in registry.known_types("sink")
    assert calls == ["cdcflow.connectors"]
    assert "thing" not in registry.known_types("widget")  # type: ignore[arg-type]
    assert "" not in registry.known_types("sink")


def test_explicit_registration_wins_over_an_entry_point(
    clean_registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.register("sink", "custom", f"{__name__}:CustomSinkConfig")
    point = EntryPoint(name="sink.custom", value="nowhere:Nothing", group="cdcflow.connectors")
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [point])
    assert registry.model_for("sink", "custom") is CustomSinkConfig


def test_core_imports_no_engine() -> None:
    """Config, registry, plan and the embedded connectors load without Beam or Flink."""
    code = (
        "import sys\n"
        "import cdcflow.pipelines.config, cdcflow.pipelines.plan, cdcflow.pipelines.registry\n"
        "import cdcflow.io.files, cdcflow.io.sqlite, cdcflow.io.null\n"
        "from cdcflow.pipelines.registry import _BUILTINS, model_for\n"
        "for kind, name in _BUILTINS: model_for(kind, name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('apache_beam', 'pyflink'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
