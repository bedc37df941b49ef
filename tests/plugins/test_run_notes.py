"""Each Flamingock run's note says what it does; the listener never overwrites a note, never touches other DAGs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flamingock_provider.core.plan import run_label
from flamingock_provider.plugins import run_notes
from flamingock_provider.plugins.flamingock import FlamingockPlugin


@dataclass
class Tag:
    name: str


@dataclass
class DagModel:
    tags: list[Tag] = field(default_factory=list)


@dataclass
class DagRunRow:
    """The attributes of Airflow's DagRun row that the listener reads and writes."""

    dag_id: str
    conf: dict[str, Any] | None
    note: str | None = None
    run_id: str = "manual__1"
    dag_model: DagModel = field(default_factory=DagModel)


def test_the_label_names_the_action_and_the_undo_target() -> None:
    assert [run_label(None), run_label("apply"), run_label("plan")] == ["apply", "apply", "plan"]
    assert run_label("undo", "0003_x") == "undo to 0003_x"
    assert run_label("undo") == "undo (no undo_to: fails at once)"


def test_a_flamingock_run_gets_its_note_when_it_starts() -> None:
    undo = DagRunRow("flamingock_shop", {"action": "undo", "undo_to": "a"})
    scheduled = DagRunRow("flamingock_shop", None)
    custom_id = DagRunRow("changes", {"action": "plan"}, dag_model=DagModel([Tag("flamingock")]))
    for run in (undo, scheduled, custom_id):
        run_notes.on_dag_run_running(dag_run=run, msg="started")
    assert [undo.note, scheduled.note, custom_id.note] == ["undo to a", "apply", "plan"]


def test_a_note_given_at_trigger_time_and_other_dags_are_left_alone() -> None:
    given = DagRunRow("flamingock_shop", {"action": "plan"}, note="checking before the release")
    other = DagRunRow("etl", {"action": "plan"})
    for run in (given, other):
        run_notes.on_dag_run_running(dag_run=run, msg="started")
    assert (given.note, other.note) == ("checking before the release", None)


def test_the_plugin_registers_the_listener() -> None:
    assert run_notes in FlamingockPlugin.listeners
