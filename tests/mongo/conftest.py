"""Fixtures of the MongoDB driver tests: the SecantusDB server, a database per test, pipeline builders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flamingock_provider.stores.mongo import MongoStore
from tests.conftest import write_tree
from tests.fixtures.mongo_server import CONN_ID, MongoDatabase, MongoServer, mongo_conn, mongo_server

__all__ = ["mongo_conn", "mongo_server"]

# Audit store and target share connection and database: transactional units run TX_SHARED.
SHARED_PIPELINE = f"""\
audit: {{conn_id: {CONN_ID}}}
targets:
  catalog: {{conn_id: {CONN_ID}}}
default_target: catalog
lock: {{lease_seconds: 30, poke_interval_seconds: 0.1, wait_timeout_seconds: 60}}
"""


def separate_pipeline(target_database: str) -> str:
    """Audit in the connection's database, target in another one: transactional units run TX_SEPARATE."""
    return SHARED_PIPELINE.replace(
        f"catalog: {{conn_id: {CONN_ID}}}", f"catalog: {{conn_id: {CONN_ID}, database: {target_database}}}"
    )


def make_pipeline(root: Path, files: dict[str, str], pipeline_yaml: str = SHARED_PIPELINE) -> Path:
    return write_tree(root, {"pipeline.yaml": pipeline_yaml, **files})


def direct_store(server: MongoServer, database: str, **options: Any) -> MongoStore:
    """A store on its own pymongo client (no Airflow connection), e.g. with command listeners."""
    listeners = options.pop("event_listeners", [])
    return MongoStore(lambda: (None, server.client(event_listeners=listeners)), database, **options)


@pytest.fixture
def pipe(tmp_path: Path, mongo_conn: MongoDatabase) -> Path:
    return tmp_path / "catalog"
