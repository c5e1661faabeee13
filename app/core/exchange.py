"""One component's export and import: its tables, what a request picks, how a load is checked."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.core import transfer
from app.core.transfer import TableSpec

Tables = dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class Exchange:
    """Export and import for one component, on the shared `transfer` machinery.

    `groups` says which table groups an export request includes; `check` validates the rows an
    import just loaded (references, statuses) and raises to roll the whole import back.
    """

    component: str
    tables: tuple[TableSpec, ...]
    groups: Callable[[Any], Mapping[str, bool]]
    check: Callable[[Session, Tables], None]

    def export(
        self, session: Session, folder: Path, body: Any, revision: str | None
    ) -> dict[str, Any]:
        """Write an export file into the export folder and say what was written."""
        chosen = self.groups(body)
        specs = [spec for spec in self.tables if chosen[spec.group]]
        return transfer.export(session, self.component, folder, body, specs, self.tables, revision)

    def import_document(self, session: Session, document: dict[str, Any]) -> dict[str, int]:
        """Load an export document atomically; loading it twice changes nothing."""
        counts = transfer.import_document(session, self.component, self.tables, document)
        # The rows are loaded (and typed) in this transaction: a broken reference or an unknown
        # status raises here, and the route rolls everything back.
        self.check(session, document["tables"])
        return counts
