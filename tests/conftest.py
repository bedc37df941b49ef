"""Shared fixtures: an isolated FLAMINGOCK_HOME/AIRFLOW_HOME per test, and pipeline-folder builders."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Fixture plugins, one module each in tests/fixtures/. Real servers are session fixtures started on first
# use only (each skips when its binary or package is missing). airflow_env comes first: it sets Airflow's
# environment (a session AIRFLOW_HOME and DAGs folder) when imported, before anything imports Airflow.
pytest_plugins = [
    "tests.fixtures.airflow_env",
    "tests.fixtures.http_api",
    "tests.fixtures.kafka_server",
    "tests.fixtures.mongo_server",
    "tests.fixtures.moto_server",
    "tests.fixtures.redis_server",
    "tests.fixtures.statsd_server",
    "tests.fixtures.postgres_server",
    "tests.fixtures.mariadb_server",
    "tests.fixtures.sql_databases",
]

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


# Every test of these folders carries the folder's marker: `make test-fast` leaves them out.
FOLDER_MARKERS = {"e2e": "e2e", "reliability": "reliability"}
# Over ~10 s, in files edited on main right now (so marked here, not with a decorator there).
# Tests of ~2 s and more that `make test-fast` leaves to `make test` (measured with --durations; by name,
# whatever their parameters), so the inner loop stays under 3 minutes on 2 cores.
SLOW_ELSEWHERE = {
    # over ~2.5 s each on a quiet machine (make test-fast was 3:25 after this session's merges)
    "dag_factory/test_runs.py::test_undo_without_undo_to_fails_at_once",
    "dag_factory/test_dag_shape.py::test_importing_the_package_core_and_cli_never_imports_airflow",
    "stores/test_sqlite_store.py::test_runners_opening_a_new_audit_file_at_once_all_get_in",
    "cli/test_cli.py::test_lock_timeout_exits_3_and_unlock",
    "cli/test_sql_cli.py::test_apply_status_history_and_undo_through_the_cli",
    "cli/test_race_mongo.py::test_four_cli_processes_apply_every_unit_exactly_once",
    "templates/test_s3.py::test_on_a_versioned_bucket_rollbacks_go_through_versions",
    "templates/test_s3.py::test_put_object_rollback_restores_the_previous_object_exactly",
    "templates/test_s3.py::test_bucket_configuration_templates_and_their_rollbacks",
    "templates/test_impact_and_checks.py::test_dynamodb_s3_and_http_checks",
    "templates/test_impact_and_checks.py::test_dynamodb_and_s3_impact_on_real_data",
    "cli/test_cli.py::test_plan_apply_status_history",
    "cli/test_cli.py::test_failed_apply_exits_1_and_blocked_exits_4",
    "templates/test_s3.py::test_create_bucket_and_its_rollback",
    "templates/test_dynamodb.py::test_a_failing_step_in_a_shared_transaction_leaves_no_item_and_no_started_entry",
    "templates/test_dynamodb.py::test_update_table_billing_and_indexes_and_its_rollback",
    "templates/test_dynamodb.py::test_put_items_is_tx_shared_and_its_rollback_restores_what_was_there",
    "verification/test_check_mapping.py::test_the_old_rule_model_produces_the_duplicate",
    "dag_factory/test_runs.py::test_apply_everything_then_nothing_to_do",
    "dag_factory/test_runs.py::test_task_per_stage_with_parallel_stages",
    "dag_factory/test_skips.py::test_a_rerun_with_nothing_to_do_starts_only_the_bookkeeping_tasks",
    "test_provider.py::test_airflow_providers_list_sees_the_provider",
    "core/test_crash.py::test_lost_lease_stops_the_run_before_the_next_unit",
    "core/test_heartbeat.py::test_a_hung_store_call_never_doubles_the_heartbeat_thread",
    "dag_factory/test_examples.py::test_events_example_runs_through_airflow",
    "dag_factory/test_skips.py::test_a_failure_still_stops_later_units_and_runs_its_rollback_and_clean_up",
    "dag_factory/test_skips.py::test_a_partial_rerun_starts_the_new_units_and_the_idle_units_after_the_first",
    "dag_factory/test_skips.py::test_task_per_stage_skips_each_stage_with_nothing_to_do",
    "dag_factory/test_skips.py::test_when_false_units_and_stages_are_skipped_before_they_start",
    "dag_factory/test_skips.py::test_plan_and_undo_runs_start_no_unit_or_rollback_task",
    "dag_factory/test_runs.py::test_plan_changes_nothing_and_undo_rolls_back_newest_first",
    "dag_factory/test_runs.py::test_a_failure_compensates_fails_the_run_and_a_fixed_rerun_applies_the_rest",
    "dag_factory/test_runs.py::test_a_clean_up_stage_runs_after_a_failure_and_a_blocked_unit_stops_its_stage",
    "dag_factory/test_runs.py::test_when_conditions_and_jinja_payloads_use_the_run_params",
    "cli/test_airflow_cli.py::test_airflow_still_works_and_lists_the_group",
    "cli/test_airflow_cli.py::test_status_prints_the_same_document",
    "cli/test_airflow_cli.py::test_a_failed_apply_exits_1_and_sends_metrics",
    "cli/test_airflow_cli.py::test_usage_errors_exit_2_with_the_flamingock_message",
    "stores/test_lease_contract.py::test_heartbeat_keeps_a_short_lease_alive",
    "stores/test_lease_contract.py::test_processes_racing_never_hold_the_lease_together",
    "test_metrics.py::test_lock_wait_runs_from_the_first_poke_to_the_lease",
    "templates/test_dynamodb.py::test_a_crash_before_the_shared_commit_leaves_neither_item_nor_audit_entry",
    "sensors/test_lock_and_recovery.py::test_lock_in_reschedule_mode_takes_the_lease_once_it_is_freed",
    "sensors/test_lock_and_recovery.py::test_lock_waits_for_another_owner_then_fails_naming_the_holder",
    "cli/test_lake_example.py::test_the_lake_example_applies_and_undoes_completely",
    "cli/test_sql_cli.py::test_sigkill_inside_a_tx_shared_unit_leaves_no_trace",
    "stores/test_mongo_transactions.py::test_crash_inside_a_shared_transaction_leaves_no_trace_and_the_next_run_takes_over",
}
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests/e2e as ``e2e``, tests/reliability as ``reliability`` and SLOW_ELSEWHERE as ``slow``."""
    for item in items:
        try:
            relative = Path(str(item.path)).resolve().relative_to(TESTS)
        except ValueError:
            continue
        marker = FOLDER_MARKERS.get(relative.parts[0])
        if marker is not None:
            item.add_marker(getattr(pytest.mark, marker))
        name = getattr(item, "originalname", item.name)
        if (
            f"{relative.as_posix()}::{name}" in SLOW_ELSEWHERE
            or f"{relative.as_posix()}::{item.name}" in SLOW_ELSEWHERE
        ):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the embedded store and Airflow's home at the test's own folder."""
    home = tmp_path / "flamingock_home"
    monkeypatch.setenv("FLAMINGOCK_HOME", str(home))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    if "AIRFLOW_HOME" not in os.environ:
        monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow_home"))
    yield home


@pytest.fixture
def sqlite_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SQLite database reachable as the Airflow connection ``warehouse_db``."""
    db = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DB", f"sqlite:///{db}")
    return db


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Create ``files`` (relative path -> text) under ``root``; return ``root``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def sql_unit(unit_id: str, apply: str, rollback: str | None = None, **extra: str) -> str:
    """YAML text of a ``sql`` unit."""
    lines = [f"id: {unit_id}", "author: tester", "template: sql", "apply:", f"  statements: {apply!r}"]
    if rollback is not None:
        lines += ["rollback:", f"  statements: {rollback!r}"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


WAREHOUSE_PIPELINE = "targets:\n  warehouse: {conn_id: warehouse_db}\nlock: {poke_interval_seconds: 0.1}\n"


def apply_concurrently(pipe: Path, processes: int = 4) -> list[subprocess.CompletedProcess[str]]:
    """Start ``processes`` ``flamingock apply PIPE --json`` at once (this environment); wait for all of them."""
    procs = [
        subprocess.Popen(
            [str(VENV_BIN / "flamingock"), "apply", str(pipe), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=os.environ.copy(),
        )
        for _ in range(processes)
    ]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done
