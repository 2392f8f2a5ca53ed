"""Describing failures in one line: which component failed, and why, without a traceback.

The CLI ends every command's unexpected exception with one line built here. The component is
the one the executor noted on the exception (:func:`cdcflow.core.executor.component_of`), else
found from Beam's step label (``[while running 'Write:mirror']``) of a hand-written pipeline,
else from the traceback: the innermost frame that is a method of a source, a sink or the
dead-letter sink.
"""

from __future__ import annotations

import re

from cdcflow.errors import CdcflowError
from cdcflow.scrub import scrub

_BEAM_STEP = re.compile(r"while running '([^']+)'")


def _component_of(exc: BaseException, default: str) -> str:
    """Which part of the pipeline ``exc`` came from, from Beam's step label when it has one.

    ``Write:mirror`` is ``sink 'mirror'``, ``StoreDeadLetters`` is ``dead_letter``,
    ``Transform0:redact`` is ``transforms[0] (redact)``; otherwise ``default``.
    """
    named = _component_noted(exc)
    if named is not None:
        return named
    found = _BEAM_STEP.findall(_chain_text(exc))
    if not found:
        return _component_in_traceback(exc) or default
    label = found[-1].split("/")[0]
    if label.startswith("Write:"):
        return f"sink {label.removeprefix('Write:')!r}"
    if label.startswith("StoreDeadLetters"):
        return "dead_letter"
    if label.startswith("Transform"):
        index, _, name = label.removeprefix("Transform").partition(":")
        return f"transforms[{index}] ({name})" if name else f"transforms[{index}]"
    if label.startswith("Decode"):
        return "decode"
    if label.startswith("Read"):
        return "source"
    return default


def _component_noted(exc: BaseException) -> str | None:
    """The component the executor noted on the innermost exception of the chain that has one."""
    from cdcflow.core.executor import component_of

    for error in reversed(_chain(exc)):
        named = component_of(error)
        if named is not None:
            return named
    return None


def _component_in_traceback(exc: BaseException) -> str | None:
    """The innermost source, sink, dead-letter sink or step whose method raised ``exc``."""
    from cdcflow.core.source import Source
    from cdcflow.core.writer import DeadLetterWriter, Writer

    found: str | None = None
    for error in reversed(_chain(exc)):
        tb = error.__traceback__
        while tb is not None:
            owner = tb.tb_frame.f_locals.get("self")
            if isinstance(owner, Writer):
                found = f"sink {owner.name!r}"
            elif isinstance(owner, DeadLetterWriter):
                found = "dead_letter"
            elif isinstance(owner, Source):
                found = "source"
            tb = tb.tb_next
        if found is not None:
            return found
    return None


def without_step_label(exc: BaseException) -> str:
    """A cdcflow error's text without the ``[while running 'STEP']`` Beam appends to it.

    cdcflow's messages name their component themselves (``sink 'mirror': ...``,
    ``dead_letter: ...``); Beam's label names the step that happened to call it.
    """
    text = str(exc) or type(exc).__name__
    return re.sub(r"\s*\[while running '[^']*'\]", "", text)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes/contexts, outermost first (cycles cut)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _chain_text(exc: BaseException) -> str:
    return "\n".join(str(e) for e in _chain(exc))


def describe_unexpected(exc: BaseException, component: str) -> str:
    """One line for an unexpected exception: ``COMPONENT: TYPE: first line of the message``.

    The innermost exception of the chain is the one named (Beam wraps a step's error in its
    own); its message is cut to the first line and scrubbed.
    """
    where = _component_of(exc, component)
    inner = _chain(exc)[-1]
    text = (str(inner).strip().splitlines() or [""])[0]
    text = _BEAM_STEP.sub("", text).replace("[]", "").strip()
    if len(text) > 300:
        text = text[:297] + "..."
    detail = f"{type(inner).__name__}: {text}" if text else type(inner).__name__
    return scrub(f"{where}: unexpected error: {detail} (traceback with --log-level debug)")


def root_cause(exc: BaseException) -> BaseException:
    """Beam wraps worker errors; surface the cdcflow error inside when there is one."""
    seen = exc
    while seen is not None:
        if isinstance(seen, CdcflowError):
            return seen
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    return exc
