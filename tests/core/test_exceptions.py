"""Every error class survives a pickle round trip with its message and fields (errors cross processes)."""

from __future__ import annotations

import pickle
from datetime import datetime, timezone

import pytest

from flamingock_provider import exceptions
from flamingock_provider.exceptions import FlamingockError, ValidationIssue
from flamingock_provider.targets.http import HttpStatusError

SAMPLES: list[FlamingockError] = [
    FlamingockError("plain"),
    exceptions.PipelineValidationError("dags/changes/p", [ValidationIssue("0001_a.yaml", "field 'id': missing")]),
    exceptions.ConfigurationError("bad connection"),
    exceptions.UnknownMemberError("nobody", ["acme", "globex"]),
    exceptions.EmbeddedStoreError("dags/changes/p/pipeline.yaml", "CeleryExecutor"),
    exceptions.UsageError("bad argument"),
    exceptions.RehearsalRefusedError("scratch connection 'warehouse_db' is the real target 'warehouse'"),
    exceptions.UnitExecutionError("u1", "apply", ValueError("boom")),
    exceptions.BlockedError("u1", "STARTED", "stuck", "flamingock fix p u1 --as rolled-back"),
    exceptions.ChangeRunningError("u1", "cli/h/1/ab"),
    exceptions.ApprovalRequiredError("p", "destructive", "apply", [("u1", "destructive")]),
    exceptions.LeaseError("lease"),
    exceptions.LockTimeoutError("p", "cli/h/1/ab", datetime(2026, 1, 1, tzinfo=timezone.utc), 12.0),
    exceptions.LeaseLostError("p", "cli/h/1/ab", 3, "taken over"),
    exceptions.StoreError("store down"),
    exceptions.DriftNotAcceptedError("u1", "0001_a.yaml", "dags/changes/p"),
    HttpStatusError("GET", "/x", 500, [200], "oops"),
    exceptions.TargetError("broker refused", code="UNSUPPORTED_FEATURE"),
    exceptions.CheckFailedError("u1", "checks[0] sql saw 3, expected 0", {"outcome": "halt", "saw": 3}),
    exceptions.CheckError("check(ctx) returned None"),
    exceptions.CheckTimeoutError("checks[0] sql did not answer within 0.5 s"),
    exceptions.ReadTimeoutError("SELECT count(*) FROM t did not finish within 10 s"),
    exceptions.StatementError("INSERT INTO t VALUES (1)", "warehouse", '42P01 relation "t" does not exist'),
    exceptions.TableLockTimeoutError("ALTER TABLE t ADD x INT", "warehouse", "t", 10.0, "55P03 lock timeout"),
]


def all_error_classes() -> set[type[FlamingockError]]:
    found: set[type[FlamingockError]] = set()
    todo: list[type[FlamingockError]] = [FlamingockError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_class_has_a_sample() -> None:
    assert all_error_classes() <= {type(s) for s in SAMPLES}


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_error_survives_a_pickle_round_trip(error: FlamingockError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error) and copy.exit_code == error.exit_code
    fields = {k: v for k, v in vars(error).items() if not isinstance(v, BaseException)}
    assert {k: v for k, v in vars(copy).items() if k in fields} == fields
