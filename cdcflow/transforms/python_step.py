"""The ``type: python`` transform: a plain Python function or step class as a pipeline step.

::

    transforms:
      - type: python
        name: add-region                  # optional; defaults to the function's name
        function: mypkg.enrich:add_region # "module:attribute", importable where cdcflow runs
        options: {default: eu-west-1}     # optional mapping

``function`` names either

* a function ``f(event, **options)`` returning the event, a changed event, a list of events
  or ``None`` (see :mod:`cdcflow.transforms.event_step`); ``options`` are passed as keyword
  arguments on every call; or
* a class, a subclass of :class:`~cdcflow.core.step.Step` (usually of
  :class:`~cdcflow.transforms.event_step.EventStep`), instantiated once as ``cls(**options)``
  when the pipeline is built.

Everything is checked when the file is validated (``cdcflow validate``): the module imports,
the attribute exists (with a "did you mean"), it is a function or a step class, and its
signature accepts the event and the given options (:func:`inspect.signature`).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from cdcflow.core.components import BuildContext, TransformConfig
from cdcflow.core.step import Step

_TARGET = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$"


def load_target(path: str) -> Any:
    """Import ``"package.module:attribute"`` (the attribute may be dotted); ValueError if not."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(
            f"cannot import module {module_name!r} ({exc}); install the package that "
            "provides it or put its directory on PYTHONPATH"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a broken user module must be a config error
        raise ValueError(
            f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    target: Any = module
    walked = module_name
    for part in attr.split("."):
        if not hasattr(target, part):
            names = [n for n in dir(target) if not n.startswith("_")]
            guess = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean {guess[0]!r}?" if guess else ""
            raise ValueError(f"{walked!r} has no attribute {part!r}{hint}")
        target = getattr(target, part)
        walked = f"{walked}.{part}" if walked != module_name else f"{module_name}:{part}"
    return target


def _check_function(function: Any, options: dict[str, Any]) -> None:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return  # a builtin without a signature: cannot check, call it as documented
    try:
        signature.bind(object(), **options)
    except TypeError as exc:
        given = f"with options {sorted(options)}" if options else "(no options given)"
        raise ValueError(
            f"the function's signature {signature} does not accept (event, **options) "
            f"{given}: {exc}; expected a function such as "
            "def step(event, **options) -> event | list | None"
        ) from None


def _check_class(cls: type, options: dict[str, Any]) -> None:
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(**options)
    except TypeError as exc:
        shown = signature.replace(return_annotation=inspect.Signature.empty)
        raise ValueError(
            f"{cls.__name__}{shown} cannot be built from options {sorted(options)}: {exc}"
        ) from None


class PythonTransformConfig(TransformConfig):
    """``type: python`` — a function ``event -> event | list | None`` or a step class."""

    type: Literal["python"]
    name: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    function: str = Field(pattern=_TARGET)
    options: dict[str, Any] = Field(default_factory=dict, validate_default=True)

    @field_validator("function")
    @classmethod
    def _check_target(cls, value: str) -> str:
        target = load_target(value)
        if isinstance(target, type):
            if not issubclass(target, Step):
                raise ValueError(
                    f"{value} is a class but not a cdcflow step; subclass "
                    "cdcflow.transforms.EventStep (or name a function)"
                )
        elif not callable(target):
            raise ValueError(
                f"{value} is a {type(target).__name__}, not a function or a step class"
            )
        return value

    @field_validator("options")
    @classmethod
    def _check_signature(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        path = info.data.get("function")
        if path is None:  # the function itself is wrong: reported there
            return value
        target = load_target(path)
        if isinstance(target, type):
            _check_class(target, value)
        else:
            _check_function(target, value)
        return value

    def build(self, context: BuildContext) -> Step:
        """The step: the class instantiated with ``options``, or a function step."""
        from cdcflow.transforms.event_step import FunctionStep

        target = load_target(self.function)
        if isinstance(target, type):
            step: Step = target(**self.options)
            if self.name is not None:
                step.name = self.name
            return step
        return FunctionStep(target, name=self.name, options=self.options)
