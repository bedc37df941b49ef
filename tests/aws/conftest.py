"""Fixtures of the aws and http tests: the moto server, the recording HTTP API, pipeline builders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.conftest import write_tree
from tests.fixtures.http_api import http_api, http_api_server  # noqa: F401
from tests.fixtures.moto_server import moto, moto_server  # noqa: F401

# Audit log and lease in DynamoDB on the same connection as the `lake` target: TX_SHARED applies.
DYNAMO_AUDIT = "audit: {conn_id: aws_default, table: flamingock_audit_log}\n"
TARGETS = "targets:\n  lake: {conn_id: aws_default}\n  api: {conn_id: http_default}\ndefault_target: lake\n"
FAST_LOCK = "lock: {poke_interval_seconds: 0.05, wait_timeout_seconds: 60}\n"


def unit(unit_id: str, template: str, apply: Any = None, **extra: Any) -> str:
    """YAML text of a template unit (``steps=[...]`` instead of ``apply`` for several steps)."""
    doc: dict[str, Any] = {"id": unit_id, "author": "tester", "template": template}
    if apply is not None:
        doc["apply"] = apply
    doc.update(extra)
    return yaml.safe_dump(doc, sort_keys=False)


def pipeline(
    root: Path, files: dict[str, str], *, dynamo_audit: bool = True, lock: str = FAST_LOCK, extra: str = ""
) -> Path:
    """A pipeline folder with the `lake` (aws) and `api` (http) targets."""
    header = (DYNAMO_AUDIT if dynamo_audit else "") + TARGETS + lock + extra
    return write_tree(root, {"pipeline.yaml": header, **files})
