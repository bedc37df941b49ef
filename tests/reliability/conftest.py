"""Fixtures of the reliability suite: the runner pool, its own servers, one backend per test.

Counts come from ``FLAMINGOCK_RELIABILITY_FULL=1`` (``make reliability``) or default to the reduced
ones (``make test``); see :mod:`tests.reliability.helpers`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.backends import Backend, make_backend
from tests.reliability.helpers import Counts, counts, full_mode
from tests.reliability.pool import RunnerPool, runner_env
from tests.reliability.servers import Servers


@pytest.fixture(scope="session")
def runner_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerPool]:
    root = tmp_path_factory.mktemp("runners")
    pool = RunnerPool(root, runner_env(root)).start()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    found = Servers(tmp_path_factory.mktemp("servers"))
    try:
        yield found
    finally:
        found.close()


@pytest.fixture(scope="session")
def scale() -> Counts:
    return counts()


def open_backend(name: str, root: Path, servers: Servers) -> Backend:
    """The backend ``name``, or a skip when its server cannot run here."""
    if name == "mongo":
        pytest.importorskip("secantus", reason="SecantusDB is a test extra: pip install -e '.[test]'")
    try:
        return make_backend(name, root, servers)
    except LookupError as err:
        pytest.skip(str(err))


@pytest.fixture(params=["sqlite", "mongo", "dynamodb", "redis", "postgres", "mariadb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, servers: Servers) -> Iterator[Backend]:
    found = open_backend(request.param, tmp_path / request.param, servers)
    try:
        yield found
    finally:
        found.close()


FULL_TIMEOUT_S = 3600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give the full counts (``make reliability``) the time they need; the default stays 300 s."""
    if not full_mode():
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.timeout(FULL_TIMEOUT_S))


@pytest.fixture
def mongo_backend(tmp_path: Path, servers: Servers) -> Iterator[Backend]:
    found = open_backend("mongo", tmp_path / "mongo", servers)
    try:
        yield found
    finally:
        found.close()
