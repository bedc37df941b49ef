"""``airflow flamingock ...``: the provider's ``cli`` group mirrors the ``flamingock`` commands."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import pytest

from flamingock_provider.cli.airflow_cli import GROUP, subcommands, to_argv
from flamingock_provider.cli.main import build_parser
from tests.conftest import VENV_BIN, sql_unit, write_tree
from tests.fixtures.statsd_server import StatsdServer, counted

COMMANDS = ["validate", "plan", "apply", "status", "history", "undo", "fix", "unlock", "rehearse"]
PIPELINE = "targets:\n  warehouse: {conn_id: warehouse_db}\nlock: {poke_interval_seconds: 0.1}\n"


def run(program: str, *args: str, home: Path, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``airflow`` or ``flamingock`` in a subprocess with its own AIRFLOW_HOME."""
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", **(extra or {})}
    return subprocess.run(
        [str(VENV_BIN / program), *args], capture_output=True, text=True, env=env, timeout=180, check=False
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AIRFLOW_HOME of this module's own: the first ``airflow`` run writes its airflow.cfg, the others reuse it."""
    return tmp_path_factory.mktemp("airflow_cli") / "airflow_home"


@pytest.fixture
def pipe(tmp_path: Path, sqlite_target: Path) -> Path:
    return write_tree(
        tmp_path / "sales",
        {
            "pipeline.yaml": PIPELINE,
            "01_schema/0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a"),
            "01_schema/0002_b.yaml": sql_unit("b", "CREATE TABLE b (x INT)", "DROP TABLE b"),
        },
    )


def test_airflow_still_works_and_lists_the_group(home: Path) -> None:
    version = run("airflow", "version", home=home)
    assert version.returncode == 0 and version.stdout.strip().startswith("3."), version.stderr[-2000:]
    helped = run("airflow", GROUP, "--help", home=home)
    assert helped.returncode == 0, helped.stderr[-2000:]
    for command in COMMANDS:
        assert f"\n    {command} " in helped.stdout, helped.stdout
    assert "Failed to load CLI commands" not in helped.stderr


def test_status_prints_the_same_document(pipe: Path, home: Path) -> None:
    applied = run("flamingock", "apply", str(pipe), "--until", "a", home=home)
    assert applied.returncode == 0, applied.stderr
    ours = run("airflow", GROUP, "status", str(pipe), "--json", home=home)
    theirs = run("flamingock", "status", str(pipe), "--json", home=home)
    assert (ours.returncode, theirs.returncode) == (0, 0), ours.stderr[-2000:]
    assert ours.stdout == theirs.stdout
    assert [c["state"] for c in json.loads(ours.stdout)["changes"]] == ["APPLIED", None]


def test_usage_errors_exit_2_with_the_flamingock_message(pipe: Path, home: Path) -> None:
    ours = run("airflow", GROUP, "undo", str(pipe), "--to", "a", "--last", "1", home=home)
    theirs = run("flamingock", "undo", str(pipe), "--to", "a", "--last", "1", home=home)
    assert (ours.returncode, theirs.returncode) == (2, 2), ours.stderr[-2000:]
    message = "FAILED: argument --last: not allowed with argument --to"
    assert message in ours.stderr and message in theirs.stderr


def test_a_failed_apply_exits_1_and_sends_metrics(pipe: Path, home: Path, statsd_server: StatsdServer) -> None:
    pytest.importorskip("statsd", reason="Airflow's StatsD needs the statsd package (apache-airflow[statsd])")
    (pipe / "01_schema/0003_c.yaml").write_text(sql_unit("c", "INSERT INTO nope VALUES (1)"))
    statsd_server.clear()
    done = run("airflow", GROUP, "apply", str(pipe), "--json", home=home, extra=statsd_server.env)
    assert done.returncode == 1, done.stderr[-2000:]
    doc = json.loads(done.stdout)
    assert doc["applied"] == ["a", "b"] and doc["failed"]["id"] == "c"
    lines = statsd_server.wait_for(lambda got: counted(got, "flamingock.unit.failed.sales") == 1)
    assert counted(lines, "flamingock.unit.applied.sales") == 2, lines


SAMPLES = [
    ["validate", "/p", "--json"],
    ["plan", "/p", "-v"],
    ["status", "/p", "--traceback", "--json"],
    ["apply", "/p", "--until", "0002"],
    ["history", "/p", "--change=-odd-id"],
    ["undo", "/p", "--last", "2"],
    ["undo", "/p", "--to", "a", "--json"],
    ["fix", "/p", "a", "--as", "rolled-back", "--accept-checksum"],
    ["unlock", "/p", "--force"],
    ["status", "/p", "--member", "acme", "--json"],
    ["rehearse", "/p", "--scratch", "app=app_scratch", "--scratch", "docs=docs_scratch"],
]


@pytest.mark.parametrize("argv", SAMPLES, ids=[" ".join(s) for s in SAMPLES])
def test_airflow_arguments_round_trip_to_the_flamingock_parser(argv: list[str]) -> None:
    from airflow.cli import cli_parser

    parsed = cli_parser.get_parser().parse_args([GROUP, *argv])
    flamingock = build_parser()
    sub = dict((name, parser) for name, _, parser in subcommands(flamingock))[argv[0]]
    again = to_argv(argv[0], sub, parsed)
    assert vars(flamingock.parse_args(again)) == vars(flamingock.parse_args(argv))


def test_every_flamingock_option_is_in_airflows_parser() -> None:
    from airflow.cli import cli_parser

    def options(parser: argparse.ArgumentParser) -> set[tuple[str, ...]]:
        return {tuple(a.option_strings) or (a.dest,) for a in parser._actions}

    root = cli_parser.get_parser()
    group = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction)).choices[GROUP]
    mirrored = {name: parser for name, _, parser in subcommands(group)}
    ours = {name: parser for name, _, parser in subcommands(build_parser())}
    assert sorted(mirrored) == sorted(ours) == sorted(COMMANDS)
    for name, parser in ours.items():
        assert options(mirrored[name]) == options(parser), name
