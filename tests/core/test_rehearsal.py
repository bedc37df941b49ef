"""The rehearsal's comparison (pure): what differs between two snapshots, worded per phase."""

from __future__ import annotations

from flamingock_provider.core.rehearsal import Mismatch, RehearsalReport, Snapshot, differences

BEFORE: Snapshot = {"warehouse": {"table orders": {"column id": "INTEGER NOT NULL", "rows": 2}}}


def test_extra_missing_and_changed_facts_are_named_with_their_object() -> None:
    after: Snapshot = {
        "warehouse": {
            "table orders": {"column id": "BIGINT NOT NULL", "column discount": "INTEGER NULL"},
            "table tmp": {"rows": 0},
        }
    }
    found = differences(BEFORE, after, "undo")
    assert sorted(found.values()) == [
        "table orders: column discount still present",
        "table orders: column id is BIGINT NOT NULL, was INTEGER NOT NULL before",
        "table orders: rows missing after the rollback",
        "table tmp still present",
    ]
    assert differences(BEFORE, BEFORE, "undo") == {}
    reapplied = differences(after, BEFORE, "reapply")
    assert reapplied[("warehouse", "table orders", "column discount")] == (
        "table orders: column discount missing after the second apply"
    )


def test_the_report_is_ok_only_without_mismatches() -> None:
    report = RehearsalReport("shop", rehearsed=["a"])
    assert report.to_json()["ok"] is True and report.exit_code == 0
    report.mismatches.append(Mismatch("a", "undo", "table t still present"))
    doc = report.to_json()
    assert doc["ok"] is False and doc["mismatches"] == [{"id": "a", "phase": "undo", "detail": "table t still present"}]
    assert report.exit_code == 1
