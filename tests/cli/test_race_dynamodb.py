"""Four `flamingock apply` processes on one DynamoDB-audited pipeline: every unit applied exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

from flamingock_provider import commands
from tests.conftest import apply_concurrently
from tests.fixtures.aws_pipelines import pipeline, unit
from tests.fixtures.moto_server import MotoServer

UNITS = 4

# Not idempotent on purpose: a second apply of a unit would count twice.
COUNTER = """ID = "count-{n}"
AUTHOR = "t"

def apply(ctx):
    ctx.client("dynamodb").update_item(
        TableName="ledger", Key={{"id": {{"S": "counter"}}}},
        UpdateExpression="ADD hits :one", ExpressionAttributeValues={{":one": {{"N": "1"}}}},
    )
"""


def racing_pipeline(root: Path) -> Path:
    files = {
        "0000_ledger.yaml": unit(
            "ledger", "dynamodb.create_table", {"table": "ledger", "partition_key": {"name": "id", "type": "S"}}
        )
    }
    for n in range(1, UNITS + 1):
        files[f"{2 * n - 1:04d}_put{n}.yaml"] = unit(
            f"put-{n}", "dynamodb.put_items", {"table": "ledger", "items": [{"id": f"item-{n}"}]}
        )
        files[f"{2 * n:04d}_count{n}.py"] = COUNTER.format(n=n)
    # Waiting runners poll every 0.25 s: enough contention, without flooding the one-request-at-a-time server.
    return pipeline(root, files, lock="lock: {poke_interval_seconds: 0.25, wait_timeout_seconds: 120}\n")


@pytest.mark.slow
def test_four_cli_processes_apply_each_unit_exactly_once(tmp_path: Path, moto: MotoServer) -> None:
    pipe = racing_pipeline(tmp_path / "race")
    results = apply_concurrently(pipe)
    assert all(r.returncode == 0 for r in results), [(r.returncode, r.stderr[-1500:]) for r in results]

    items = moto.client("dynamodb").scan(TableName="ledger", ConsistentRead=True)["Items"]
    by_id = {i["id"]["S"]: i for i in items}
    assert set(by_id) == {"counter"} | {f"item-{n}" for n in range(1, UNITS + 1)}
    assert by_id["counter"]["hits"] == {"N": str(UNITS)}

    entries = commands.history(pipe)["entries"]
    applied = [e["change_id"] for e in entries if e["state"] == "APPLIED"]
    assert len(applied) == len(set(applied)) == 2 * UNITS + 1
    assert len(entries) == 2 * len(applied)  # STARTED + APPLIED each, nothing else
    tokens = sorted({e["lock_token"] for e in entries})
    assert tokens == sorted(set(tokens)) and commands.status(pipe)["lock"] is None
