"""Plant distinct secrets, as ``${VAR}`` references, in the config fields of built-in components.

The fields are found from the registry's built-in types and their pydantic models, so a new
component or a new field is covered without editing the tests. Every secret is a distinct
alphanumeric token of 24 characters (long enough for fields with a minimum length, such as
redaction keys), so a test can grep any output for it.
"""

from __future__ import annotations

import secrets
import types
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, SecretStr

from cdcflow.pipelines import registry

#: Field names never planted: the discriminator (it selects the model).
SKIPPED = frozenset({"type"})


def builtin_components() -> list[tuple[str, str, type[BaseModel]]]:
    """Every built-in ``(kind, type, model)`` of the registry."""
    found = []
    for kind, type_name in sorted(registry._BUILTINS):
        model = registry.model_for(kind, type_name)  # type: ignore[arg-type]
        assert issubclass(model, BaseModel)
        found.append((kind, type_name, model))
    return found


class Planter:
    """Hands out ``${CDCFLOW_PLANTED_N}`` references and remembers the secret behind each."""

    def __init__(self) -> None:
        self.env: dict[str, str] = {}

    def ref(self) -> str:
        """A new reference to a new distinct secret."""
        name = f"CDCFLOW_PLANTED_{len(self.env) + 1}"
        self.env[name] = f"Pq{secrets.token_hex(10)}Zx"
        return "${" + name + "}"

    @property
    def secrets(self) -> list[str]:
        """Every secret handed out so far."""
        return list(self.env.values())

    def value(self, annotation: Any, everything: bool) -> Any:
        """A planted YAML value for a field of type ``annotation`` (None: leave the default).

        ``everything=False`` plants only where a string is accepted (literals get their first
        allowed value, so the secret-bearing fields are what is checked); ``everything=True``
        plants a secret in every field, whatever its type (an invalid file).
        """
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is typing.Annotated:
            return self.value(args[0], everything)
        if origin in (typing.Union, types.UnionType):
            members = [a for a in args if a is not type(None)]
            for member in members:
                if _accepts_text(member):
                    return self.value(member, everything)
            for member in members:
                planted = self.value(member, everything)
                if planted is not None:
                    return planted
            return self.ref() if everything else None
        if annotation in (str, SecretStr):
            return self.ref()
        if origin is typing.Literal:
            return self.ref() if everything else args[0]
        if origin is list:
            item = self.value(args[0], everything)
            return [item] if item is not None else (self.ref() if everything else None)
        if origin is dict:
            item = self.value(args[1], everything)
            if item is None:
                return self.ref() if everything else None
            return {"planted.key": item}
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return self.model(annotation, everything)
        return self.ref() if everything else None

    def model(self, model: type[BaseModel], everything: bool) -> dict[str, Any]:
        """A planted mapping for every field of ``model`` (aliases as YAML keys)."""
        out: dict[str, Any] = {}
        for name, field in model.model_fields.items():
            if name in SKIPPED:
                continue
            planted = self.value(field.annotation, everything)
            if planted is not None:
                out[field.alias or name] = planted
        return out


def _accepts_text(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _accepts_text(typing.get_args(annotation)[0])
    return annotation in (str, SecretStr)


def planted_component(
    kind: str, type_name: str, model: type[BaseModel], planter: Planter, everything: bool
) -> dict[str, Any]:
    """The YAML mapping of one component with secrets planted in its fields."""
    return {"type": type_name, **planter.model(model, everything)}


def pipelines(everything: bool) -> Iterator[tuple[str, dict[str, Any], Planter]]:
    """One pipeline mapping per built-in component, that component planted.

    The other parts are valid and secret-free: a ``file`` source reading ``in.jsonl``, a
    ``sqlite`` sink and a ``file`` dead-letter sink (relative paths).
    """
    for kind, type_name, model in builtin_components():
        planter = Planter()
        component = planted_component(kind, type_name, model, planter, everything)
        pipeline: dict[str, Any] = {
            "pipeline": "planted",
            "source": {"type": "file", "path": "in.jsonl"},
            "sinks": [{"name": "mirror", "type": "sqlite", "path": "out/mirror.sqlite"}],
            "dead_letter": {"type": "file", "path": "out/dead.jsonl"},
        }
        if kind == "source":
            pipeline["source"] = component
        elif kind == "sink":
            pipeline["sinks"] = [component]
        elif kind == "transform":
            pipeline["transforms"] = [component]
        else:
            pipeline["dead_letter"] = component
        yield f"{kind}.{type_name}", pipeline, planter
