"""Loading and validating pipeline YAML files.

:func:`load_pipeline` reads a file, resolves ``${NAME}`` / ``${NAME:-default}`` references
from the environment (``$${`` writes a literal ``${``), validates the top level and every
component against its registered model, and raises one :class:`ConfigError` listing every
problem as ``FILE:LINE: KEY: what was expected``.

Hostile input is bounded (a 4 MiB file, nesting, alias uses and alias expansion; see
:mod:`cdcflow.pipelines.yaml_limits`) and refused with a located error before anything walks
the document. Every value resolved from the environment is registered with
:mod:`cdcflow.scrub`, so it never appears in a message.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from cdcflow import scrub
from cdcflow.core.components import BuildContext, ComponentConfig
from cdcflow.errors import ConfigError
from cdcflow.pipelines.engine_config import EngineConfig
from cdcflow.pipelines.registry import Kind, model_for
from cdcflow.pipelines.yaml_limits import (
    MAX_FILE_BYTES,
    Loc,
    load_yaml,
)

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PIPELINE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"

class PipelineConfig(BaseModel):
    """A validated pipeline file (ARCHITECTURE §6).

    Top-level keys: ``pipeline``, ``source``/``sources``, ``transforms``, ``sinks``,
    ``dead_letter`` and ``engine`` (engine options, e.g. ``engine.flink``; see docs/flink.md).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    pipeline: str = Field(pattern=_PIPELINE_NAME)
    source: ComponentConfig | None = None
    sources: list[ComponentConfig] = []
    transforms: list[ComponentConfig] = []
    sinks: list[ComponentConfig]
    dead_letter: ComponentConfig | None = None
    engine: EngineConfig | None = None
    #: Table patterns that match no table are errors, not warnings (docs/redaction.md).
    strict: bool = False
    path: Path
    _lines: dict[Loc, int] = PrivateAttr(default_factory=dict)

    @field_validator("sinks")
    @classmethod
    def _names_unique(cls, sinks: list[ComponentConfig]) -> list[ComponentConfig]:
        names = [getattr(s, "name", None) for s in sinks]
        seen = [n for n in names if n is not None and names.count(n) > 1]
        if seen:
            raise ValueError(f"sink names must be unique; repeated: {sorted(set(seen))}")
        return sinks

    @property
    def context(self) -> BuildContext:
        """The build context for this pipeline's components."""
        return BuildContext(pipeline=self.pipeline, base_dir=self.path.parent)

    @property
    def all_sources(self) -> list[ComponentConfig]:
        """``source`` and ``sources`` together."""
        return ([self.source] if self.source is not None else []) + list(self.sources)

    def locate(self, loc: Loc) -> str:
        """``FILE:LINE: key`` for a key path such as ``("sinks", 0, "path")``.

        Used to locate errors found after validation (e.g. while building components).
        """
        problems = _Problems(self.path, self._lines)
        line = problems.line_of(loc)
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        key = _format_loc(loc)
        return f"{where}: {key}" if key else where


class _Top(BaseModel):
    """The top-level shape, with components still as raw mappings."""

    model_config = ConfigDict(extra="forbid")

    pipeline: str = Field(pattern=_PIPELINE_NAME)
    source: dict[str, Any] | None = None
    sources: list[dict[str, Any]] = []
    transforms: list[dict[str, Any]] = []
    sinks: list[dict[str, Any]] = Field(min_length=1)
    dead_letter: dict[str, Any] | None = None
    engine: dict[str, Any] | None = None
    strict: bool = False


class _Problems:
    """Collects located error messages."""

    def __init__(self, path: Path, lines: Mapping[Loc, int]) -> None:
        self.path = path
        self.lines = lines
        self.items: list[str] = []
        self._order: list[int] = []
        #: Key paths whose value could not be interpolated: validation errors there are noise.
        self.unresolved: set[Loc] = set()
        #: Key paths whose value holds ``${NAME}`` substitutions -> the names (never show it).
        self.substituted: dict[Loc, list[str]] = {}
        #: Unset variables (no default) -> every key path that references them, in order.
        self.unset: dict[str, list[Loc]] = {}
        #: The values substituted from the environment (registered for masking).
        self.resolved: list[str] = []

    def line_of(self, loc: Loc) -> int | None:
        probe = tuple(loc)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return self.lines.get((), 1)

    def add(self, loc: Loc, message: str, line: int | None = None) -> None:
        line = self.line_of(loc) if line is None else line
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        key = _format_loc(loc)
        self.items.append(f"{where}: {key}: {message}" if key else f"{where}: {message}")
        self._order.append(line or 0)

    def add_validation(
        self, prefix: Loc, error: ValidationError, model: type[BaseModel] | None = None
    ) -> None:
        for item in error.errors(include_url=False):
            loc = prefix + tuple(p for p in item["loc"] if not _is_union_tag(p))
            if any(_related(loc, bad) for bad in self.unresolved):
                # The unresolved value is already reported; the error its empty replacement
                # causes (here or in a check of the whole component) would repeat it.
                continue
            names = [
                n for at, found in self.substituted.items() if _related(loc, at) for n in found
            ]
            self.add(loc, _explain(item, model, hidden=names))

    def report_unset(self) -> None:
        """One problem per unset variable, at its first reference, naming the others."""
        for name, locs in self.unset.items():
            others = [
                f"{_format_loc(loc)} (line {self.line_of(loc)})"
                if self.line_of(loc) is not None
                else _format_loc(loc)
                for loc in locs[1:]
            ]
            also = f"; also referenced at {', '.join(others)}" if others else ""
            self.add(
                locs[0],
                f"environment variable {name} is not set (referenced as ${{{name}}}; "
                f"set it or write ${{{name}:-default}}){also}",
            )

    def raise_if_any(self) -> None:
        if self.items:
            count = len(self.items)
            head = f"{count} problem{'s' if count > 1 else ''} in {self.path}:"
            pairs = sorted(zip(self._order, self.items, strict=True), key=lambda pair: pair[0])
            text = "\n".join([head, *("  " + item for _, item in pairs)])
            raise ConfigError(scrub.scrub(text))


def _related(loc: Loc, other: Loc) -> bool:
    """True when one key path contains the other (``other`` must not be the file's root)."""
    if not loc or not other:
        return loc == other
    shorter = min(len(loc), len(other))
    return loc[:shorter] == other[:shorter]


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _explain(
    item: Mapping[str, Any],
    model: type[BaseModel] | None = None,
    hidden: list[str] | None = None,
) -> str:
    """A plain-English message for one pydantic error.

    When ``hidden`` names variables whose values went into the key, the value is never shown:
    the message says which reference it came from instead.
    """
    kind = item.get("type", "")
    message = str(item.get("msg", "invalid value"))
    loc = tuple(item.get("loc", ()))
    if kind == "missing":
        field = model.model_fields.get(str(loc[0])) if model is not None and len(loc) == 1 else None
        if field is not None and field.annotation is not None:
            return f"is required but missing (expected {_describe_type(field.annotation)})"
        return "is required but missing"
    if kind == "extra_forbidden":
        if model is not None and len(loc) > 1:
            model, loc = _nested_model(model, loc[:-1]), loc[-1:]
        if model is not None and len(loc) == 1:
            known = [name for name in model.model_fields if name != "path" or model is not _Top]
            if model is not _Top:
                known = [name for name in known if name != "type"]
            guess = difflib.get_close_matches(str(loc[0]), known, n=1)
            hint = f"did you mean {guess[0]!r}? " if guess else ""
            page = getattr(model, "docs_page", None)
            see = f" (see {page})" if page else ""
            return f"is not a known key here; {hint}expected one of: {', '.join(known)}{see}"
        return "is not a known key here (check the spelling; see docs/configuration.md)"
    if kind == "dict_type":
        got = type(item.get("input")).__name__.replace("NoneType", "nothing")
        return f"expected a mapping of keys to values, got {got}"
    if kind == "too_short" and loc == ("sinks",):
        return "needs at least one sink (a list of mappings with 'name' and 'type')"
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    shown = item.get("input")
    got = _shown(shown, hidden)
    if hidden:
        # A validator's own "(got VALUE)": the value is masked, say where it came from instead.
        message = re.sub(r"\s*\(got '\*\*\*'\)", "", scrub.scrub(message))
        if not isinstance(shown, (dict, list)):
            return f"{message} (got {got})"
    if kind == "string_pattern_mismatch" and item.get("loc") == ("pipeline",):
        return (
            "must be 1-100 characters of letters, digits, '_', '.', '-' "
            f"starting with a letter or digit (got {got})"
        )
    if kind not in ("missing",) and not isinstance(shown, (dict, list)) and shown is not None:
        return f"{message} (got {got})"
    return message


def _shown(value: Any, hidden: list[str] | None) -> str:
    """A short repr of an offending value, or where it came from when it came from ``${...}``."""
    if hidden:
        refs = ", ".join(f"${{{name}}}" for name in dict.fromkeys(hidden))
        return f"the value of {refs}, not shown"
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        text = f"a {type(value).__name__} too long to show"
    if len(text) > 60:
        text = text[:57] + "..."
    return text


def _nested_model(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model that holds the last key of ``loc`` (through lists, optionals, unions)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", {})
        field = fields.get(str(part))
        if field is None:
            return None
        current = _model_in(field.annotation)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _describe_type(annotation: Any) -> str:
    """A short English name for a field's type, for "expected ..." messages."""
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if annotation in names:
        return names[annotation]
    origin = typing.get_origin(annotation)
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "")


def _interpolate(
    value: Any, env: Mapping[str, str], loc: Loc, problems: _Problems
) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, env, (*loc, str(k)), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, (*loc, i), problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        body = match.group(1)
        if body.startswith("vault:"):
            problems.unresolved.add(loc)
            problems.add(
                loc,
                f"Vault reference ${{{body}}} cannot be resolved: Vault support is not "
                "configured in this version; pass the value through an environment variable",
            )
            return ""
        name, sep, default = body.partition(":-")
        if not _NAME.match(name):
            problems.unresolved.add(loc)
            problems.add(
                loc, f"bad reference ${{{body}}}: expected ${{NAME}} or ${{NAME:-default}}"
            )
            return ""
        if name in env:
            problems.substituted.setdefault(loc, []).append(name)
            problems.resolved.append(env[name])
            return env[name]
        if sep:
            return default
        problems.unresolved.add(loc)
        problems.unset.setdefault(name, []).append(loc)
        return ""

    return _REFERENCE.sub(replace, value)


def _validate_component(
    kind: Kind, raw: Any, loc: Loc, problems: _Problems
) -> ComponentConfig | None:
    if not isinstance(raw, dict):
        problems.add(loc, f"must be a mapping with a 'type' key, got {type(raw).__name__}")
        return None
    type_name = raw.get("type")
    if not isinstance(type_name, str):
        problems.add((*loc, "type"), "is required: say which kind of component this is")
        return None
    try:
        model: type[BaseModel] = model_for(kind, type_name)
    except ConfigError as exc:
        problems.add((*loc, "type"), str(exc))
        return None
    try:
        component = model.model_validate(raw)
    except ValidationError as exc:
        problems.add_validation(loc, exc, model)
        return None
    assert isinstance(component, ComponentConfig)
    return component


def parse_pipeline(text: str, path: Path, env: Mapping[str, str] | None = None) -> PipelineConfig:
    """Parse and validate pipeline YAML ``text`` as if read from ``path``."""
    env = os.environ if env is None else env
    duplicates: list[tuple[Loc, int, int]] = []
    lines, data = load_yaml(text, path, duplicates)
    problems = _Problems(path, lines)
    for loc, first, again in duplicates:
        problems.add(
            loc,
            f"appears twice in the same mapping (lines {first} and {again}); "
            "expected each key once",
            line=again,
        )
    if not isinstance(data, dict):
        problems.add((), "a pipeline file must be a mapping with 'pipeline', 'source' and 'sinks'")
        problems.raise_if_any()
    data = _interpolate(data, env, (), problems)
    scrub.register(problems.resolved)
    problems.report_unset()
    try:
        top = _Top.model_validate(data)
    except ValidationError as exc:
        problems.add_validation((), exc, _Top)
        problems.raise_if_any()
        raise AssertionError("unreachable") from None
    if top.source is None and not top.sources:
        problems.add((), "needs a 'source' (or a list of 'sources')")
    if top.source is not None and top.sources:
        problems.add(("sources",), "give either 'source' or 'sources', not both")
    source = (
        _validate_component("source", top.source, ("source",), problems) if top.source else None
    )
    sources = [
        _validate_component("source", s, ("sources", i), problems)
        for i, s in enumerate(top.sources)
    ]
    transforms = [
        _validate_component("transform", t, ("transforms", i), problems)
        for i, t in enumerate(top.transforms)
    ]
    sinks = [
        _validate_component("sink", s, ("sinks", i), problems) for i, s in enumerate(top.sinks)
    ]
    first_index: dict[str, int] = {}
    for index, raw_sink in enumerate(top.sinks):
        name = raw_sink.get("name")
        if not isinstance(name, str):
            continue
        if name in first_index:
            problems.add(
                ("sinks", index, "name"),
                f"sink name {name!r} is already used by sinks[{first_index[name]}]; "
                "expected a unique name per sink (positions are stored under it)",
            )
        first_index.setdefault(name, index)
    dead_letter = (
        _validate_component("dead_letter", top.dead_letter, ("dead_letter",), problems)
        if top.dead_letter is not None
        else None
    )
    engine: EngineConfig | None = None
    if top.engine is not None:
        try:
            engine = EngineConfig.model_validate(top.engine)
        except ValidationError as exc:
            problems.add_validation(("engine",), exc, EngineConfig)
    problems.raise_if_any()
    try:
        config = PipelineConfig(
            pipeline=top.pipeline,
            source=source,
            sources=[s for s in sources if s is not None],
            transforms=[t for t in transforms if t is not None],
            sinks=[s for s in sinks if s is not None],
            dead_letter=dead_letter,
            engine=engine,
            strict=top.strict,
            path=path,
        )
    except ValidationError as exc:
        problems.add_validation((), exc)
        problems.raise_if_any()
        raise AssertionError("unreachable") from None
    config._lines = lines
    return config


def load_pipeline(path: str | Path, env: Mapping[str, str] | None = None) -> PipelineConfig:
    """Read, interpolate and validate the pipeline file at ``path``."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such pipeline file") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the pipeline file: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{file}: the pipeline file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; "
            "expected a pipeline file, not data"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{file.resolve()}:{line}: column {column}: not UTF-8 text "
            f"(byte 0x{raw[exc.start]:02x}); "
            "a pipeline file must be UTF-8"
        ) from None
    return parse_pipeline(text, file.resolve(), env)
