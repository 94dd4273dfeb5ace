"""`orion-etl db migrate|status`: versioned schema migrations of the warehouse and the demo source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orion_etl.adapters import migrations
from orion_etl.adapters.postgres import connect
from orion_etl.config.models import PostgresSettings
from orion_etl.errors import Verdict


@dataclass(frozen=True)
class MigrateReport:
    """The migrations applied, per target."""

    targets: list[dict[str, Any]]

    @property
    def verdict(self) -> Verdict:
        return Verdict.OK

    def to_document(self) -> dict[str, Any]:
        return {"targets": self.targets}


def migrate(targets: list[tuple[str, PostgresSettings]]) -> MigrateReport:
    """Apply pending migrations of each (name, database), one transaction under an advisory lock each."""
    results = []
    for name, pg in targets:
        with connect(pg, autocommit=True) as conn:
            applied = migrations.migrate(conn, name)
        results.append({"target": name, "database": pg.describe(), "applied": [m.path.name for m in applied]})
    return MigrateReport(results)


@dataclass(frozen=True)
class MigrationStatusReport:
    """Every migration of each target with its state: applied, pending or drifted."""

    migrations: list[dict[str, Any]]

    @property
    def verdict(self) -> Verdict:
        """Failed on drift (the history does not match the files), warnings while some are pending."""
        states = {m["state"] for m in self.migrations}
        if "drifted" in states:
            return Verdict.FAILED
        return Verdict.WARNINGS if "pending" in states else Verdict.OK

    def to_document(self) -> dict[str, Any]:
        return {"items": self.migrations}


def migration_status(targets: list[tuple[str, PostgresSettings]]) -> MigrationStatusReport:
    """The state of every migration of each (name, database)."""
    rows = []
    for name, pg in targets:
        with connect(pg) as conn:
            for st in migrations.status(conn, name):
                state_word = "drifted" if st.drifted else ("applied" if st.applied_at else "pending")
                rows.append(
                    {
                        "target": name,
                        "version": st.migration.version,
                        "name": st.migration.name,
                        "state": state_word,
                        "applied_at": st.applied_at,
                    }
                )
    return MigrationStatusReport(rows)
