"""``type: drop_table``: a step with its own YAML model, registered by entry point."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cdcflow.core.components import BuildContext, TransformConfig, check_table_patterns
from cdcflow.core.writer import TableFilter
from cdcflow.schemas.model import ChangeEvent
from cdcflow.transforms import EventStep


class DropTable(EventStep):
    """Drop (deliberately, counted as ``dropped``) every event of the matching tables."""

    def __init__(self, name: str, tables: str | list[str]) -> None:
        super().__init__(name)
        self.filter = TableFilter(tables)

    def process_event(self, event: ChangeEvent) -> ChangeEvent | None:
        """None for a matching table's event, the event otherwise."""
        return None if self.filter(event.table) else event


class DropTableConfig(TransformConfig):
    """``type: drop_table`` with ``tables`` (globs) and an optional ``name``."""

    type: Literal["drop_table"]
    name: str = Field(default="drop-table", min_length=1)
    tables: str | list[str]

    def build(self, context: BuildContext) -> DropTable:
        """The step."""
        return DropTable(self.name, check_table_patterns(self.tables))
