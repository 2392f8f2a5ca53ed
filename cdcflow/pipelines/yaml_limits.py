"""Reading pipeline YAML safely: PyYAML's safe loader with limits, and a line map.

:func:`load_yaml` refuses hostile or generated input before anything walks it (nesting deeper
than :data:`MAX_DEPTH`, more than :data:`MAX_ALIASES` alias uses, a document that expands to
more than :data:`MAX_NODES` values, an alias inside the node it names) and turns every YAML
problem, and every value Python refuses, into a :class:`~cdcflow.errors.ConfigError` located
as ``FILE:LINE: column N: invalid YAML: ...``. It also maps every key path to its line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cdcflow.errors import ConfigError

Loc = tuple[str | int, ...]

#: Largest pipeline file read (bytes).
MAX_FILE_BYTES = 4 * 1024 * 1024
#: Deepest nesting of mappings and lists (a real pipeline needs fewer than 10 levels).
MAX_DEPTH = 64
#: Most alias uses (``*name``) in one file.
MAX_ALIASES = 1000
#: Most nodes the document may hold once every alias is expanded.
MAX_NODES = 100_000


def _line_map(
    node: yaml.Node | None, duplicates: list[tuple[Loc, int, int]] | None = None
) -> dict[Loc, int]:
    """Map every key path in a composed YAML document to its 1-based line.

    Keys repeated within one mapping are appended to ``duplicates`` as
    ``(key path, first line, repeated line)``.
    """
    lines: dict[Loc, int] = {}

    def walk(current: yaml.Node, loc: Loc) -> None:
        lines.setdefault(loc, current.start_mark.line + 1)
        if isinstance(current, yaml.MappingNode):
            first_seen: dict[str, int] = {}
            for key_node, value_node in current.value:
                key = str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in first_seen and duplicates is not None:
                    duplicates.append(((*loc, key), first_seen[key], line))
                first_seen.setdefault(key, line)
                lines[(*loc, key)] = key_node.start_mark.line + 1
                walk(value_node, (*loc, key))
                lines[(*loc, key)] = key_node.start_mark.line + 1
        elif isinstance(current, yaml.SequenceNode):
            for index, item in enumerate(current.value):
                walk(item, (*loc, index))

    if node is not None:
        walk(node, ())
    return lines


class _LimitError(yaml.MarkedYAMLError):
    """The document exceeds one of the loader's limits (depth, aliases, expanded size)."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a nesting limit, an alias-use limit and located value errors."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """Compose one node, refusing too deep nesting and too many alias uses."""
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _LimitError(
                    None,
                    None,
                    f"more than {MAX_ALIASES} alias uses (*name); expected a pipeline file, "
                    "not generated data",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _LimitError(
                    None,
                    None,
                    f"nested deeper than {MAX_DEPTH} levels of mappings and lists; "
                    "expected a pipeline file (a few levels deep)",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """Construct one value; a located YAML error for a value Python refuses.

        For example a 5,000-digit integer, or the date 2024-13-45.
        """
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError, TypeError, RecursionError) as exc:
            detail = str(exc).split(";")[0].split(":")[0].strip() or type(exc).__name__
            raise _LimitError(
                None, None, f"cannot read this value: {detail}", node.start_mark
            ) from None


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document too large once its aliases are expanded, or one that contains itself.

    Expanded means more than :data:`MAX_NODES` nodes; containing itself is ``&a [*a]``. The
    check is linear in the number of distinct nodes (each node's size is computed once).
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise _LimitError(
                None,
                None,
                "an alias refers to a mapping or list that contains it (a recursive "
                "structure); expected plain values",
                node.start_mark,
            )
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                total += size(key_node) + size(value_node)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item)
        open_nodes.discard(key)
        if total > MAX_NODES:
            raise _LimitError(
                None,
                None,
                f"aliases here expand to more than {MAX_NODES:,} values (an alias bomb?); "
                "expected a pipeline file",
                node.start_mark,
            )
        sizes[key] = total
        return total

    size(root)


def load_yaml(
    text: str, path: Path, duplicates: list[tuple[Loc, int, int]]
) -> tuple[dict[Loc, int], Any]:
    """Compose and construct one YAML document within the limits; ConfigError when invalid.

    Returns the line map (see :func:`_line_map`, built before merge keys are flattened, so
    a key given next to ``<<: *anchor`` is not a duplicate) and the data.
    """
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node)
        lines = _line_map(node, duplicates)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{mark.line + 1}: column {mark.column + 1}" if mark is not None else "?"
        hint = (
            ""
            if isinstance(exc, _LimitError)
            else " (check the indentation, and quote values that contain ': ' or ' #')"
        )
        raise ConfigError(f"{path}:{where}: invalid YAML: {exc.problem}{hint}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        raise ConfigError(
            f"{path}:{line}: invalid YAML: character U+{int(exc.character):04X} is not allowed "
            "in a YAML file (control characters must be escaped in a double-quoted string)"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}:1: invalid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(
            f"{path}:1: invalid YAML: nested too deeply; expected a pipeline file"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    return lines, data
