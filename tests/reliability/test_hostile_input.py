"""Hostile input (issue 8, item 6): a corpus of malformed pipelines, each in a table row.

Every rejected pipeline fails validation with a message naming the culprit file, and ``flamingock
apply`` exits 1 with a ``FAILED:`` line naming it, applying nothing (the target untouched, the audit
log empty). Pipelines that are valid on disk but hostile at run time (Jinja reaching for Python
internals or connection passwords in the sandbox, Python units failing at import) fail their unit
safely, naming its file, without touching the target. A good pipeline beside all of them still
validates and applies.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flamingock_provider.core.loader import discover_pipelines, validate_pipeline
from tests.reliability.backends import SqliteBackend
from tests.reliability.corpus import FAILING, REJECTED, Case, check_failing, check_rejected, unit, write_case
from tests.reliability.pool import RunnerPool

GOOD = "good_pipeline"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteBackend]:
    """One SQLite audit store and target for the whole corpus; the changes root is ``root / 'changes'``."""
    backend = SqliteBackend(tmp_path_factory.mktemp("hostile"))
    backend.prepare()
    try:
        yield backend
    finally:
        backend.close()


def changes(backend: SqliteBackend) -> Path:
    return backend.root / "changes"


def test_the_corpus_has_at_least_forty_cases() -> None:
    assert len(REJECTED) + len(FAILING) >= 40
    assert len({c.name for c in REJECTED + FAILING}) == len(REJECTED) + len(FAILING)


@pytest.mark.parametrize("case", REJECTED, ids=lambda c: c.name)
def test_a_malformed_pipeline_is_rejected_naming_the_file(
    case: Case, hostile: SqliteBackend, runner_pool: RunnerPool
) -> None:
    check_rejected(runner_pool, hostile, changes(hostile), case)


@pytest.mark.parametrize("case", FAILING, ids=lambda c: c.name)
def test_a_hostile_unit_fails_safely_at_run_time(case: Case, hostile: SqliteBackend, runner_pool: RunnerPool) -> None:
    check_failing(runner_pool, hostile, changes(hostile), case)


def test_a_good_pipeline_beside_them_validates_and_applies(hostile: SqliteBackend, runner_pool: RunnerPool) -> None:
    root = changes(hostile)
    for case in REJECTED + FAILING:
        if not (root / case.name).exists():
            write_case(root, case, hostile.header(case.name, lease_s=30))
    good = root / GOOD
    good.mkdir()
    (good / "pipeline.yaml").write_text(hostile.header(GOOD, lease_s=30))
    (good / "0001_ok.yaml").write_text(unit("ok"))
    found = {p.name for p in discover_pipelines(root)}
    assert {c.name for c in REJECTED + FAILING} | {GOOD} <= found
    assert validate_pipeline(good).errors == []
    run = runner_pool.run(["apply", str(good), "--json"], hostile.env)
    assert run.wait() == 0 and run.json()["applied"] == ["ok"], run.describe()
