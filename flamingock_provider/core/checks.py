"""Preconditions of change units (SPEC §14): ``checks:`` definitions, time bounds and outcomes.

Parse time: :func:`parse_checks` turns a unit's ``checks:`` list into :class:`CheckSpec` values and
reports every bad field (``field 'checks[1].mongo.expect_count': ...``). Run time: the executor,
holding the lease, evaluates the checks in order right before the unit (each per target, see
``flamingock_provider.targets.checks``, within its ``timeout_seconds``), and :func:`run_checks` turns
what they saw into one :class:`CheckOutcome`:

- every check passed: ``passed``, the unit runs;
- one said no: the unit's ``on_check_fail`` — ``halt`` (CHECK_FAILED, the run fails), ``skip``
  (CHECK_FAILED, the run goes on), ``mark_applied`` (APPLIED, nothing executed) or ``warn`` (the unit
  runs and its entries carry the warning);
- one could not be evaluated (a timeout, a driver error): ``error``, treated as ``halt`` whatever
  ``on_check_fail`` says — a check that cannot answer must never mark a unit applied or skip it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from flamingock_provider.core.documents import describe
from flamingock_provider.core.model import ChangeUnit, CheckSpec, OnCheckFail, State
from flamingock_provider.core.suggest import did_you_mean
from flamingock_provider.exceptions import CheckError, CheckTimeoutError, FlamingockError

if TYPE_CHECKING:
    from flamingock_provider.core.targets import TargetSession

CHECK_KINDS = ("sql", "mongo", "dynamodb", "s3", "http")
COMMON_KEYS = ("target", "timeout_seconds")
SQL_KEYS = ("expect", "expect_rows")
DEFAULT_TIMEOUT_S = 30.0
# kind -> (allowed body keys, required body keys)
BODY_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "mongo": (("collection", "filter", "expect_count"), ("collection", "expect_count")),
    "dynamodb": (("table", "key", "expect"), ("table", "expect")),
    "s3": (("bucket", "prefix", "key", "expect"), ("bucket", "expect")),
    "http": (("method", "endpoint", "expect_status", "headers"), ("endpoint",)),
}
EXPECT_CHOICES = {"dynamodb": ("exists", "absent"), "s3": ("empty", "exists")}


# -- parse time ---------------------------------------------------------------------------------


def parse_checks(value: Any, errors: list[str], targets: frozenset[str] | None) -> tuple[CheckSpec, ...]:
    """Read a unit's ``checks:`` list; append every problem to ``errors``."""
    if value is None:
        return ()
    if not isinstance(value, list):
        errors.append(
            f"field 'checks': must be a list of checks (sql, mongo, dynamodb, s3, http), got {describe(value)}"
        )
        return ()
    found = [_parse_check(item, f"checks[{n}]", errors, targets) for n, item in enumerate(value)]
    return tuple(spec for spec in found if spec is not None)


def _parse_check(item: Any, where: str, errors: list[str], targets: frozenset[str] | None) -> CheckSpec | None:
    if not isinstance(item, Mapping):
        errors.append(
            f"field {where!r}: must be a mapping such as {{sql: 'SELECT ...', expect: 0}}, got {describe(item)}"
        )
        return None
    kinds = [k for k in item if k in CHECK_KINDS]
    if len(kinds) != 1:
        got = ", ".join(map(str, kinds)) or "none"
        hint = "".join(
            did_you_mean(str(k), CHECK_KINDS) for k in item if k not in (*CHECK_KINDS, *COMMON_KEYS, *SQL_KEYS)
        )
        errors.append(f"field {where!r}: give exactly one check kind of {', '.join(CHECK_KINDS)} (got {got}){hint}")
        return None
    kind = kinds[0]
    before = len(errors)
    allowed = (kind, *COMMON_KEYS, *(SQL_KEYS if kind == "sql" else ()))
    errors += [f"field '{where}.{k}': unknown key{did_you_mean(str(k), allowed)}" for k in item if k not in allowed]
    target = _target(item, where, errors, targets)
    timeout = _timeout(item, where, errors)
    spec = _sql_spec(item, where, errors) if kind == "sql" else _body_spec(kind, item[kind], f"{where}.{kind}", errors)
    if spec is None or len(errors) > before:
        return None
    return CheckSpec(kind, spec, f"{where} {kind}", target, timeout)


def _target(item: Mapping[str, Any], where: str, errors: list[str], targets: frozenset[str] | None) -> str | None:
    name = item.get("target")
    if name is None:
        return None
    if not isinstance(name, str) or (targets is not None and name not in targets):
        hint = did_you_mean(str(name), targets) if targets else ""
        errors.append(f"field '{where}.target': unknown target {name!r}{hint}")
        return None
    return name


def _timeout(item: Mapping[str, Any], where: str, errors: list[str]) -> float:
    value = item.get("timeout_seconds", DEFAULT_TIMEOUT_S)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        errors.append(f"field '{where}.timeout_seconds': must be a positive number of seconds, got {describe(value)}")
        return DEFAULT_TIMEOUT_S
    return float(value)


def _sql_spec(item: Mapping[str, Any], where: str, errors: list[str]) -> dict[str, Any] | None:
    query = item["sql"]
    if not isinstance(query, str) or not query.strip():
        errors.append(f"field '{where}.sql': must be a SELECT statement, got {describe(query)}")
        return None
    if ("expect" in item) == ("expect_rows" in item):
        errors.append(
            f"field {where!r}: give exactly one of 'expect' (the first column of the first row) or 'expect_rows'"
        )
        return None
    if "expect_rows" in item and item["expect_rows"] not in ("none", "some"):
        errors.append(
            f"field '{where}.expect_rows': unknown value {item['expect_rows']!r}"
            f"{did_you_mean(str(item['expect_rows']), ('none', 'some'))}"
        )
        return None
    return {k: item[k] for k in ("sql", *SQL_KEYS) if k in item}


def _body_spec(kind: str, body: Any, where: str, errors: list[str]) -> dict[str, Any] | None:
    if not isinstance(body, Mapping):
        errors.append(f"field {where!r}: must be a mapping of {', '.join(BODY_KEYS[kind][0])}, got {describe(body)}")
        return None
    allowed, required = BODY_KEYS[kind]
    errors += [f"field '{where}.{k}': unknown key{did_you_mean(str(k), allowed)}" for k in body if k not in allowed]
    errors += [f"field '{where}.{k}': required" for k in required if k not in body]
    errors += _body_values(kind, body, where)
    return dict(body)


def _body_values(kind: str, body: Mapping[str, Any], where: str) -> list[str]:
    problems = []
    for key in ("collection", "table", "bucket", "prefix", "key", "endpoint", "method"):
        value = body.get(key)
        if key in body and not (isinstance(value, str) and value) and not (key == "key" and kind == "dynamodb"):
            problems.append(f"field '{where}.{key}': must be a non-empty string, got {describe(value)}")
    if kind == "dynamodb" and "key" in body and not isinstance(body["key"], Mapping):
        problems.append(f"field '{where}.key': must be a mapping of key attributes, got {describe(body['key'])}")
    if kind == "mongo" and "filter" in body and not isinstance(body["filter"], Mapping):
        problems.append(f"field '{where}.filter': must be a mapping, got {describe(body['filter'])}")
    count = body.get("expect_count")
    if (
        kind == "mongo"
        and "expect_count" in body
        and (isinstance(count, bool) or not isinstance(count, int) or count < 0)
    ):
        problems.append(f"field '{where}.expect_count': must be a whole number >= 0, got {describe(count)}")
    choices = EXPECT_CHOICES.get(kind)
    if choices and "expect" in body and body["expect"] not in choices:
        hint = did_you_mean(str(body["expect"]), choices)
        problems.append(f"field '{where}.expect': unknown value {body['expect']!r}{hint}")
    if kind == "s3" and "prefix" in body and "key" in body:
        problems.append(f"field {where!r}: give 'prefix' or 'key', not both")
    status = body.get("expect_status", 200)
    codes = status if isinstance(status, list) else [status]
    if kind == "http" and not (codes and all(isinstance(c, int) and 100 <= c <= 599 for c in codes)):
        problems.append(f"field '{where}.expect_status': expected a status code or a list of them, got {status!r}")
    return problems


# -- run time -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """What one check saw (JSON-safe), whether that passes, and what it expected."""

    passed: bool
    saw: Any
    expected: str


@dataclass(frozen=True)
class CheckOutcome:
    """The decision over a unit's checks, as audited in ``check_outcome`` (SPEC §6)."""

    decision: str  # passed | halt | skip | mark_applied | warn | error
    message: str
    check: str | None = None  # the check that said no (or could not answer)
    saw: Any = None
    expected: str | None = None
    seen: tuple[Mapping[str, Any], ...] = field(default=())

    @property
    def runs_unit(self) -> bool:
        return self.decision in ("passed", "warn")

    @property
    def state(self) -> State | None:
        """The entry to record instead of running the unit (None: the unit runs)."""
        if self.decision == "mark_applied":
            return State.APPLIED
        return None if self.runs_unit else State.CHECK_FAILED

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "outcome": self.decision,
            "message": self.message,
            "checks": [dict(s) for s in self.seen],
        }
        if self.check is not None:
            out.update(check=self.check, saw=self.saw, expected=self.expected)
        return out


class CheckEvaluator(Protocol):
    """Evaluates checks per target (``flamingock_provider.targets.checks`` is the implementation)."""

    def evaluate(self, check: CheckSpec, session: TargetSession) -> Observation: ...

    def cancel(self, session: TargetSession) -> None: ...


def bounded(call: Callable[[], Any], timeout: float, what: str, cancel: Callable[[], None] | None = None) -> Any:
    """Run ``call`` and return its result, or raise CheckTimeoutError after ``timeout`` seconds.

    ``cancel`` (e.g. ``sqlite3.Connection.interrupt``) is asked to stop the abandoned call; the
    thread is a daemon, so a call that ignores it never keeps the process alive.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as err:  # handed to the caller's thread
            box["error"] = err

    thread = threading.Thread(target=run, name=f"flamingock-check {what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        if cancel is not None:
            try:
                cancel()
            except Exception:  # the read is abandoned either way; say why it may linger
                logging.getLogger("flamingock").debug("cancelling %s failed", what, exc_info=True)
        raise CheckTimeoutError(
            f"{what} did not answer within {timeout:g} s and was cut off; nothing was applied. Make the check "
            f"cheaper, raise its 'timeout_seconds', or look at its target"
        )
    if "error" in box:
        raise box["error"]
    return box.get("value")


def run_checks(
    unit: ChangeUnit,
    evaluate: Callable[[CheckSpec], Observation],
    python_check: Callable[[], Any] | None = None,
) -> CheckOutcome:
    """Evaluate the unit's checks in order; stop at the first that says no or cannot answer."""
    seen: list[Mapping[str, Any]] = []
    steps: list[tuple[str, Callable[[], Observation]]] = [(c.label, _bind(evaluate, c)) for c in unit.checks]
    if python_check is not None:
        steps.append(("check(ctx)", lambda: python_observation(python_check())))
    for label, step in steps:
        try:
            seen_now = step()
        except Exception as err:
            text = f"{type(err).__name__}: {err}" if not isinstance(err, FlamingockError) else str(err)
            message = f"change {unit.id!r}: precondition {label} could not be evaluated: {text}"
            return CheckOutcome("error", message, label, None, None, tuple(seen))
        seen.append({"check": label, "saw": seen_now.saw, "passed": seen_now.passed})
        if not seen_now.passed:
            return _failed(unit, label, seen_now, seen)
    return CheckOutcome("passed", f"{len(seen)} precondition(s) passed", seen=tuple(seen))


def _bind(evaluate: Callable[[CheckSpec], Observation], check: CheckSpec) -> Callable[[], Observation]:
    return lambda: evaluate(check)


def _failed(unit: ChangeUnit, label: str, seen_now: Observation, seen: Sequence[Mapping[str, Any]]) -> CheckOutcome:
    mode = unit.on_check_fail
    then = {
        OnCheckFail.HALT: "the run stops before it",
        OnCheckFail.SKIP: "it is skipped this run",
        OnCheckFail.MARK_APPLIED: "it is recorded applied without running",
        OnCheckFail.WARN: "it runs anyway (on_check_fail: warn)",
    }[mode]
    message = f"change {unit.id!r}: precondition {label} saw {seen_now.saw!r}, expected {seen_now.expected}; {then}" + (
        "; fix the data or the check, then run again" if mode is OnCheckFail.HALT else ""
    )
    return CheckOutcome(mode.value, message, label, seen_now.saw, seen_now.expected, tuple(seen))


def python_observation(result: Any) -> Observation:
    """Read what a Python unit's ``check(ctx)`` returned: True proceeds, a string (or False) says why not."""
    if result is True:
        return Observation(True, True, "True")
    if result is False or isinstance(result, str):
        return Observation(False, result, "True")
    raise CheckError(f"check(ctx) returned {describe(result)}; return True to proceed or a string saying why not")


def expect_value(saw: Any, expected: Any) -> bool:
    """``expect:`` of a SQL check: equal, comparing numbers by value and the rest as text."""
    if isinstance(expected, bool) or isinstance(saw, bool):
        return bool(saw == expected)
    if isinstance(expected, int | float) and isinstance(saw, int | float):
        return float(saw) == float(expected)
    return str(saw) == str(expected)
