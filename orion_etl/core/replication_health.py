"""Turn replication-slot, publication and heartbeat facts into findings and a verdict (pure).

The classic Debezium outage is a slot nobody reads any more: PostgreSQL keeps every WAL segment
from the slot's ``restart_lsn`` on, until the disk fills or ``max_slot_wal_keep_size`` invalidates
the slot (``wal_status = lost``), after which the connector can never resume without a new
snapshot. The rules, with thresholds from ``[cdc]``:

* failure (checks failed, exit 4): ``wal_level`` is not logical; the configured slot is missing
  or ``lost``; an inactive slot retains more than ``max_retained_wal_bytes``; the publication is
  missing, misses a configured table or does not publish insert/update/delete;
* warning (exit 1): a slot is inactive; ``wal_status = unreserved`` (about to be lost); retained
  WAL above ``warn_retained_wal_bytes`` (or above ``max_retained_wal_bytes`` while active, i.e. the
  connector is lagging); the publication has extra tables; the heartbeat is older than
  ``max_heartbeat_age_s`` or missing while heartbeats are configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from orion_etl.errors import Verdict

Level = Literal["ok", "warning", "failure"]


@dataclass(frozen=True)
class Thresholds:
    """`cdc status` limits."""

    warn_retained_wal_bytes: int
    max_retained_wal_bytes: int
    max_heartbeat_age_s: int


@dataclass(frozen=True)
class Finding:
    """One observation with its severity."""

    check: str
    level: Level
    message: str

    def to_document(self) -> dict[str, str]:
        return {"check": self.check, "level": self.level, "message": self.message}


def verdict(findings: list[Finding]) -> Verdict:
    """Failed if any failure, warnings if any warning, else ok."""
    return Verdict.worst(_VERDICTS[f.level] for f in findings)


_VERDICTS = {"ok": Verdict.OK, "warning": Verdict.WARNINGS, "failure": Verdict.FAILED}


def human_bytes(n: int | None) -> str:
    """1536 -> '1.5 KiB'."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - loop always returns


def check_slots(slots: list[dict[str, Any]], configured: str, limits: Thresholds) -> list[Finding]:
    """Findings for every logical slot of the source database; the configured one must exist."""
    findings: list[Finding] = []
    if not any(s["slot_name"] == configured for s in slots):
        findings.append(
            Finding(
                "slot",
                "failure",
                f"replication slot {configured!r} does not exist (connector never started, or the slot "
                "was dropped: changes made since are not captured)",
            )
        )
    for slot in slots:
        name = slot["slot_name"]
        ours = name == configured
        check = "slot" if ours else "other-slot"
        retained = slot.get("retained_wal_bytes") or 0
        wal_status = slot.get("wal_status")
        active = bool(slot.get("active"))
        if wal_status == "lost":
            findings.append(
                Finding(
                    check,
                    "failure",
                    f"slot {name!r} is lost (wal_status=lost): required WAL was removed; "
                    "drop it and re-snapshot",
                )
            )
            continue
        if not active and retained > limits.max_retained_wal_bytes:
            findings.append(
                Finding(
                    check,
                    "failure",
                    f"inactive slot {name!r} retains {human_bytes(retained)} of WAL "
                    f"(limit {human_bytes(limits.max_retained_wal_bytes)}): an abandoned slot fills the disk",
                )
            )
            continue
        if wal_status == "unreserved":
            findings.append(
                Finding(check, "warning", f"slot {name!r} is about to be invalidated (wal_status=unreserved)")
            )
        if not active:
            findings.append(
                Finding(
                    check,
                    "warning",
                    f"slot {name!r} is inactive (no connector reading it); retains {human_bytes(retained)}",
                )
            )
        elif retained > limits.max_retained_wal_bytes:
            findings.append(
                Finding(
                    check,
                    "warning",
                    f"slot {name!r} is active but retains {human_bytes(retained)} of WAL "
                    f"(limit {human_bytes(limits.max_retained_wal_bytes)}): the connector is lagging",
                )
            )
        elif retained > limits.warn_retained_wal_bytes:
            findings.append(
                Finding(
                    check,
                    "warning",
                    f"slot {name!r} retains {human_bytes(retained)} of WAL "
                    f"(warn above {human_bytes(limits.warn_retained_wal_bytes)})",
                )
            )
        elif ours:
            findings.append(
                Finding(check, "ok", f"slot {name!r} active, retains {human_bytes(retained)} of WAL")
            )
    return findings


def publication_drift(configured: set[str], published: set[str], all_tables: bool) -> dict[str, list[str]]:
    """Tables configured but not published (`missing`) and published but not configured (`extra`)."""
    missing = sorted(configured - published)
    extra = [] if all_tables else sorted(published - configured)
    return {"missing": missing, "extra": extra}


def check_publication(
    name: str, exists: bool, drift: dict[str, list[str]], operations: dict[str, bool]
) -> list[Finding]:
    """Findings about the publication Debezium reads."""
    if not exists:
        return [
            Finding(
                "publication", "failure", f"publication {name!r} does not exist (run `orion-etl cdc prepare`)"
            )
        ]
    findings: list[Finding] = []
    if drift["missing"]:
        findings.append(
            Finding(
                "publication",
                "failure",
                f"publication {name!r} lacks {', '.join(drift['missing'])}: their changes are not captured",
            )
        )
    not_published = [op for op in ("insert", "update", "delete") if not operations.get(op)]
    if not_published:
        findings.append(
            Finding(
                "publication", "failure", f"publication {name!r} does not publish {', '.join(not_published)}"
            )
        )
    if drift["extra"]:
        findings.append(
            Finding(
                "publication", "warning", f"publication {name!r} also publishes {', '.join(drift['extra'])}"
            )
        )
    if not findings:
        findings.append(Finding("publication", "ok", f"publication {name!r} matches the configured tables"))
    return findings


def check_heartbeat(enabled: bool, age_s: float | None, limits: Thresholds) -> list[Finding]:
    """Heartbeat freshness (only when the connector has a heartbeat table)."""
    if not enabled:
        return []
    if age_s is None:
        return [Finding("heartbeat", "warning", "no heartbeat recorded yet (connector not running?)")]
    if limits.max_heartbeat_age_s and age_s > limits.max_heartbeat_age_s:
        return [
            Finding(
                "heartbeat",
                "warning",
                f"last heartbeat {age_s:.0f}s ago (limit {limits.max_heartbeat_age_s}s): "
                "the connector is stopped, paused or stuck",
            )
        ]
    return [Finding("heartbeat", "ok", f"last heartbeat {age_s:.0f}s ago")]
