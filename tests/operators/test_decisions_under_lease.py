"""Issue 12's reproductions: a unit task decides only from what it reads while holding the lease.

A hand-written DAG with ``FlamingockApplyOperator`` and no lock task takes the lease for the task
itself. While a ``flamingock apply`` process holds the lease inside an earlier unit, the task waits;
once it gets the lease it must see what the other runner did: apply nothing twice, and never call
the other runner's unit blocked. ``status`` during the other run shows that unit ``running``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flamingock_provider import commands
from flamingock_provider.exceptions import ChangeRunningError
from tests.conftest import VENV_BIN, sql_unit, write_tree
from tests.fixtures.airflow_env import DAGS_FOLDER

PIPELINE = (
    "targets:\n  warehouse: {conn_id: warehouse_db}\n"
    "lock: {lease_seconds: 60, poke_interval_seconds: 0.2, wait_timeout_seconds: 120}\n"
)


def gated_unit(gate: Path) -> str:
    """A non-transactional unit that records itself, then waits until ``gate`` exists (at most 90 s)."""
    return textwrap.dedent(f"""
        import os, time
        ID = "u1"
        AUTHOR = "t"
        TARGET = "warehouse"
        TRANSACTIONAL = False

        def apply(ctx):
            ctx.target.cursor().execute("INSERT INTO ledger VALUES ('u1')")
            ctx.target.commit()
            deadline = time.time() + 90
            while not os.path.exists({str(gate)!r}) and time.time() < deadline:
                time.sleep(0.05)

        def rollback(ctx):
            ctx.target.cursor().execute("DELETE FROM ledger WHERE unit = 'u1'")
    """)


def ledger(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT unit FROM ledger ORDER BY rowid")]


def hand_written_dag(name: str, pipeline: Path, unit_id: str, gate: Path) -> object:
    """Write and load a DAG with one FlamingockApplyOperator and no lock task, as a user would.

    Its task opens ``gate`` a second after it starts, so the other runner finishes only once the task
    has read what it reads before waiting for the lease.
    """
    from airflow.dag_processing.dagbag import DagBag

    dag_file = DAGS_FOLDER / f"hand_{name}.py"
    dag_file.write_text(
        textwrap.dedent(f"""
            import pathlib, threading
            from datetime import datetime
            from airflow.sdk import DAG
            from flamingock_provider.operators.apply import FlamingockApplyOperator

            def open_gate(context):
                threading.Timer(1.0, pathlib.Path({str(gate)!r}).touch).start()

            with DAG("hand_{name}", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
                FlamingockApplyOperator(
                    task_id="apply_{unit_id}", pipeline_dir={str(pipeline)!r}, unit_id="{unit_id}",
                    on_execute_callback=open_gate,
                )
        """)
    )
    bag = DagBag(dag_folder=str(dag_file))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[f"hand_{name}"]


@pytest.fixture
def other_runner(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def start_cli_apply(pipe: Path, procs: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [str(VENV_BIN / "flamingock"), "apply", "--json", str(pipe)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    procs.append(proc)
    return proc


def wait_until_started(pipe: Path, unit_id: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        states = {c["id"]: c["state"] for c in commands.status(pipe)["changes"]}
        if states.get(unit_id) == "STARTED":
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{unit_id} never started")


def status_json(pipe: Path) -> dict[str, object]:
    done = subprocess.run(
        [str(VENV_BIN / "flamingock"), "status", "--json", str(pipe)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["different_stages", "same_stage"])
def test_task_without_lock_task_applies_each_unit_once_while_the_cli_holds_the_lease(
    layout: str,
    changes: Path,
    sqlite_target: Path,
    tmp_path: Path,
    other_runner: list[subprocess.Popen[str]],
) -> None:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    gate = tmp_path / "gate"
    second = "02_later/0003_u2.yaml" if layout == "different_stages" else "01_first/0003_u2.yaml"
    pipe = write_tree(
        changes / f"race_{layout}",
        {
            "pipeline.yaml": PIPELINE,
            "01_first/0001_ledger.yaml": sql_unit("ledger", "CREATE TABLE ledger (unit TEXT)"),
            "01_first/0002_u1.py": gated_unit(gate),
            second: sql_unit("u2", "INSERT INTO ledger VALUES ('u2')", "DELETE FROM ledger WHERE unit = 'u2'"),
        },
    )
    dag = hand_written_dag(layout, pipe, "u2", gate)
    cli = start_cli_apply(pipe, other_runner)
    wait_until_started(pipe, "u1", cli)

    # While the CLI is inside u1: u1 is running, not blocked, and offered no fix; `fix` refuses it.
    running = {c["id"]: c for c in status_json(pipe)["changes"]}  # type: ignore[union-attr]
    assert running["u1"]["action"] == "running" and running["u1"]["fix"] is None, running["u1"]
    with pytest.raises(ChangeRunningError, match="u1"):
        commands.fix(pipe, "u1", "rolled-back")

    # The task starts while u2 is pending and waits for the lease; then the CLI finishes u1 and u2.
    dr = dag.test(run_conf={})  # type: ignore[attr-defined]
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, err
    assert json.loads(out)["applied"] == ["ledger", "u1", "u2"]

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=dr.run_id).one()  # type: ignore[attr-defined]
        state = str(ti.state)
    assert str(dr.state) == "success" and state == "skipped"  # it found u2 applied, and u1 was never blocked
    assert ledger(sqlite_target) == ["u1", "u2"]
    applied = [e for e in commands.history(pipe, "u2")["entries"] if e["state"] == "APPLIED"]
    assert len(applied) == 1 and applied[0]["triggered_by"] == "cli"
