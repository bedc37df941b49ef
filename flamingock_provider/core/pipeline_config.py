"""pipeline.yaml and stage.yaml → keyword arguments for :class:`Pipeline` and :class:`Stage`.

Nothing here raises on bad input: every problem is appended to ``errors`` for the loader to file
under the config file's path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from flamingock_provider.core.documents import DocumentError, Fields, describe, read_document
from flamingock_provider.core.fleet import parse_fleet
from flamingock_provider.core.model import (
    ApprovalConfig,
    ApprovalRequired,
    AuditConfig,
    LockConfig,
    LockMode,
    OnFailure,
    Recovery,
    RunMode,
    TargetConfig,
)
from flamingock_provider.core.suggest import did_you_mean
from flamingock_provider.core.unit_parser import UnitScope

PIPELINE_KEYS = (
    *("id", "description", "schedule", "start_date", "tags", "audit", "lock", "targets"),
    *("default_target", "recovery", "on_failure", "run_mode", "metadata"),
    "rehearsal",
    "fleet",
    "approval",
)
STAGE_KEYS = ("depends_on", "when", "run_after_failure", "description")
NAME_PATTERN = r"[A-Za-z0-9._-]+"
TABLE_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"
MAX_LOCK_TIMEOUT_S = 86400
MARKERS_TABLE_PATTERN = r"(?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*"


def pipeline_settings(
    root: Path, folder_name: str, configs: list[Path], errors: list[str]
) -> tuple[dict[str, Any], UnitScope]:
    """Read pipeline.yaml into Pipeline keyword arguments and the scope units are checked against."""
    data = _read_config(configs[0], errors) if configs else {}
    fields = Fields(data if data is not None else {}, errors)
    fields.check_keys(PIPELINE_KEYS)
    settings = {
        "id": _pipeline_id(fields, folder_name),
        "description": fields.text("description") or "",
        "schedule": _schedule(fields),
        "start_date": _start_date(fields),
        "tags": tuple(_strings(fields, "tags")),
        "audit": _audit(fields),
        "lock": _lock(fields),
        "recovery": fields.choice("recovery", Recovery) or Recovery.MANUAL_INTERVENTION,
        "on_failure": fields.choice("on_failure", OnFailure) or OnFailure.ROLLBACK_FAILED,
        "run_mode": fields.choice("run_mode", RunMode) or RunMode.TASK_PER_UNIT,
        "metadata": _metadata(fields),
        "approval": _approval(fields),
    }
    targets = _targets(fields) if data is not None else None
    settings["targets"] = targets or {}
    settings["default_target"] = _default_target(fields, targets)
    settings["rehearsal_scratch"] = _rehearsal_scratch(fields, targets)
    settings["fleet"] = parse_fleet(fields, targets)
    names = frozenset(targets) if targets is not None else None
    scope = UnitScope(root, names, settings["default_target"], settings["recovery"])
    return settings, scope


def _read_config(path: Path, errors: list[str]) -> dict[str, Any] | None:
    """Return a config file's mapping ({} when empty), or None when it cannot be read."""
    try:
        _, data = read_document(path)
    except DocumentError as err:
        errors.append(str(err))
        return None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        errors.append(f"top level must be a mapping (key: value), got {describe(data)}")
        return None
    return dict(data)


def _pipeline_id(fields: Fields, folder_name: str) -> str:
    raw = fields.data.get("id", folder_name)
    if not isinstance(raw, str):
        fields.error("id", f"must be a string, got {describe(raw)}")
        return folder_name
    pipeline_id = raw.lower().replace("-", "_")
    if not re.fullmatch(r"[a-z0-9_]+", pipeline_id):
        source = "field 'id'" if "id" in fields.data else "the folder name (no 'id:' in pipeline.yaml)"
        fields.errors.append(
            f"pipeline id {raw!r} from {source} must match [a-z0-9_]+ after lower-casing and '-'→'_'; "
            "set a valid 'id:' in pipeline.yaml"
        )
    return pipeline_id


def _schedule(fields: Fields) -> Any:
    value = fields.data.get("schedule")
    if value is None or (isinstance(value, str) and value.strip()):
        return value
    if isinstance(value, list) and all(isinstance(item, str) and item.strip() for item in value):
        return list(value)
    fields.error("schedule", f"must be null, a cron or preset string, or a list of asset URIs, got {describe(value)}")
    return None


def _start_date(fields: Fields) -> datetime | None:
    value = fields.data.get("start_date")
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    fields.error("start_date", f"{value!r} is not a date; write YYYY-MM-DD or an ISO 8601 datetime")
    return None


def _strings(fields: Fields, key: str) -> list[str]:
    value = fields.data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        fields.error(key, f"must be a list of strings, got {describe(value)}")
        return []
    return list(value)


def _metadata(fields: Fields) -> dict[str, Any]:
    value = fields.mapping("metadata") or {}
    if not all(isinstance(key, str) for key in value):
        fields.error("metadata", "keys must be strings")
    return value


def _audit(fields: Fields) -> AuditConfig:
    sub = Fields(fields.mapping("audit") or {}, fields.errors, prefix="audit.")
    sub.check_keys(("conn_id", "database", "schema", "table"))
    values = {
        "conn_id": sub.text("conn_id"),
        "database": sub.text("database"),
        "schema": sub.text("schema", pattern=TABLE_PATTERN, rule="use letters, digits and '_'"),
        "table": sub.text("table", pattern=TABLE_PATTERN, rule="use letters, digits and '_'"),
    }
    return AuditConfig(**{key: value for key, value in values.items() if value is not None})


def _lock(fields: Fields) -> LockConfig:
    sub = Fields(fields.mapping("lock") or {}, fields.errors, prefix="lock.")
    sub.check_keys(("conn_id", "lease_seconds", "wait_timeout_seconds", "poke_interval_seconds", "mode"))
    values: dict[str, Any] = {
        "conn_id": sub.text("conn_id"),
        "lease_seconds": sub.number("lease_seconds"),
        "wait_timeout_seconds": sub.number("wait_timeout_seconds"),
        "poke_interval_seconds": sub.number("poke_interval_seconds"),
        "mode": sub.choice("mode", LockMode),
    }
    return LockConfig(**{key: value for key, value in values.items() if value is not None})


def _approval(fields: Fields) -> ApprovalConfig:
    sub = Fields(fields.mapping("approval") or {}, fields.errors, prefix="approval.")
    sub.check_keys(("required", "timeout_hours"))
    required = sub.data.get("required")
    known = required in {r.value for r in ApprovalRequired}
    if required is not None and not known:
        allowed = " | ".join(r.value for r in ApprovalRequired)
        sub.error("required", f"unknown value {required!r}; allowed: {allowed}")
    timeout = sub.data.get("timeout_hours")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0):
        sub.error("timeout_hours", f"must be a positive number of hours (0.5 is half an hour), got {describe(timeout)}")
        timeout = None
    values: dict[str, Any] = {
        "required": ApprovalRequired(required) if known else None,
        "timeout_hours": timeout,
    }
    return ApprovalConfig(**{key: value for key, value in values.items() if value is not None})


def _targets(fields: Fields) -> dict[str, TargetConfig] | None:
    """Return the named targets, or None when the section is broken (units then skip target checks)."""
    before = len(fields.errors)
    data = fields.mapping("targets") or {}
    targets = {}
    for name, spec in data.items():
        target = _target(name, spec, fields.errors)
        if target is not None:
            targets[name] = target
    return targets if len(fields.errors) == before else None


def _target(name: Any, spec: Any, errors: list[str]) -> TargetConfig | None:
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        errors.append(f"field 'targets': invalid target name {name!r}; use letters, digits, '.', '_', '-'")
        return None
    if not isinstance(spec, Mapping):
        errors.append(f"field 'targets.{name}': must be a mapping {{conn_id, database}}, got {describe(spec)}")
        return None
    fields = Fields(spec, errors, prefix=f"targets.{name}.")
    fields.check_keys(("conn_id", "database", "lock_timeout_seconds", "markers_table"))
    conn_id = fields.text("conn_id", required=True)
    database = fields.text("database")
    # SQL targets: how long one statement may queue for a table lock before it fails (SPEC §3).
    lock_timeout = fields.number("lock_timeout_seconds")
    if lock_timeout is not None and lock_timeout > MAX_LOCK_TIMEOUT_S:
        fields.error("lock_timeout_seconds", f"{lock_timeout!r} is more than a day; give seconds, e.g. 10")
        lock_timeout = None
    options: dict[str, Any] = {} if lock_timeout is None else {"lock_timeout_seconds": lock_timeout}
    # Where a TX_SEPARATE unit's marker lives between its commit and its APPLIED entry (SPEC §8).
    markers = fields.text("markers_table")
    if markers is not None and not re.fullmatch(MARKERS_TABLE_PATTERN, markers):
        fields.error("markers_table", f"{markers!r} is not a table name; use letters, digits and '_' (schema.table)")
    elif markers is not None:
        options["markers_table"] = markers
    return TargetConfig(name=name, conn_id=conn_id, database=database, options=options) if conn_id else None


def _default_target(fields: Fields, targets: dict[str, TargetConfig] | None) -> str | None:
    name = fields.text("default_target")
    if name is None:
        return next(iter(targets)) if targets and len(targets) == 1 else None
    if targets is not None and name not in targets:
        hint = did_you_mean(name, targets) if targets else "; define it under 'targets:'"
        fields.error("default_target", f"unknown target {name!r}{hint}")
    return name


def _rehearsal_scratch(fields: Fields, targets: dict[str, TargetConfig] | None) -> dict[str, str]:
    """``rehearsal: {scratch: {target: conn_id}}``: which connection each target is rehearsed on (SPEC §14)."""
    sub = Fields(fields.mapping("rehearsal") or {}, fields.errors, prefix="rehearsal.")
    sub.check_keys(("scratch",))
    scratch: dict[str, str] = {}
    real = {t.conn_id: name for name, t in (targets or {}).items()}
    for name, conn_id in (sub.mapping("scratch", required="rehearsal" in fields.data) or {}).items():
        if not isinstance(conn_id, str) or not conn_id.strip():
            sub.error(f"scratch.{name}", f"must be the scratch connection id, got {describe(conn_id)}")
        elif targets is not None and name not in targets:
            sub.error(f"scratch.{name}", f"unknown target {name!r}{did_you_mean(str(name), targets)}")
        elif conn_id in real:
            sub.error(
                f"scratch.{name}",
                f"{conn_id!r} is the real connection of target {real[conn_id]!r}; name a separate scratch connection",
            )
        else:
            scratch[str(name)] = conn_id.strip()
    return scratch


def stage_settings(path: Path, errors: list[str]) -> dict[str, Any]:
    """Read a stage.yaml into Stage keyword arguments."""
    fields = Fields(_read_config(path, errors) or {}, errors)
    fields.check_keys(STAGE_KEYS)
    depends_on = fields.data.get("depends_on")
    if depends_on is not None and not (
        isinstance(depends_on, list) and all(isinstance(name, str) for name in depends_on)
    ):
        fields.error("depends_on", f"must be a list of stage names, got {describe(depends_on)}")
        depends_on = None
    settings = {
        "depends_on": tuple(depends_on) if depends_on is not None else None,
        "when": fields.text("when"),
        "run_after_failure": bool(fields.flag("run_after_failure")),
        "description": fields.text("description") or "",
    }
    return settings
