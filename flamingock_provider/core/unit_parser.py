"""One unit file at a time: change units built from YAML, JSON and Python unit files.

Nothing here raises on bad input: every problem becomes a message (``field 'x': ...``) that the
loader files under the culprit's path, so one pass reports everything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from flamingock_provider.core.checks import parse_checks
from flamingock_provider.core.documents import (
    MAX_DOCUMENT_BYTES,
    MAX_PAYLOAD_BYTES,
    DocumentError,
    Fields,
    decode_utf8,
    describe,
    load_json,
    load_yaml,
    read_bytes,
)
from flamingock_provider.core.model import ChangeUnit, OnCheckFail, Recovery, Step, UnitKind
from flamingock_provider.core.python_unit import parse_python_source
from flamingock_provider.core.risk import LEVELS
from flamingock_provider.core.suggest import did_you_mean
from flamingock_provider.core.template import Template, get_template, template_names

ID_PATTERN = r"[A-Za-z0-9._-]+"
TEMPLATE_UNIT_KEYS = (
    *("id", "author", "description", "target", "transactional", "recovery", "run_always", "when"),
    *("template", "apply", "rollback", "steps"),
    *("risk", "checks", "on_check_fail"),
)
NOT_COMPENSABLE = "not compensable: a failure needs manual intervention; "


@dataclass(frozen=True)
class UnitScope:
    """What a unit is checked against: its pipeline folder and the (possibly broken) pipeline.yaml."""

    root: Path  # the resolved pipeline folder
    targets: frozenset[str] | None  # None: pipeline.yaml's targets could not be read, skip target checks
    default_target: str | None = None
    recovery: Recovery = Recovery.MANUAL_INTERVENTION


@dataclass(frozen=True)
class UnitFile:
    path: Path
    rel: str  # relative to the pipeline folder, POSIX separators
    stage: str
    order: int


@dataclass
class UnitResult:
    """A parsed unit (None when it has errors), its id when readable (for duplicate checks), problems."""

    unit: ChangeUnit | None = None
    id: str | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def parse_unit(scope: UnitScope, file: UnitFile) -> UnitResult:
    """Build one change unit from a YAML, JSON or Python file."""
    try:
        raw = read_bytes(file.path, MAX_DOCUMENT_BYTES)
        text = decode_utf8(raw)
        if file.path.suffix == ".py":
            return _python_unit(scope, file, raw, text)
        data = load_json(text) if file.path.suffix == ".json" else load_yaml(text)
    except DocumentError as err:
        return UnitResult(errors=[str(err)])
    return _template_unit(scope, file, raw, data)


def _header(fields: Fields, scope: UnitScope) -> dict[str, Any]:
    """Read the fields YAML, JSON and Python units share."""
    return {
        "id": fields.text("id", required=True, pattern=ID_PATTERN, rule="use letters, digits, '.', '_', '-'"),
        "author": fields.text("author", required=True),
        "description": fields.text("description") or "",
        "target": _target(fields, scope),
        "transactional": fields.flag("transactional"),
        "recovery": fields.choice("recovery", Recovery) or scope.recovery,
        "run_always": bool(fields.flag("run_always")),
        "when": fields.text("when"),
        "risk": _declared_risk(fields),
        "on_check_fail": fields.choice("on_check_fail", OnCheckFail) or OnCheckFail.HALT,
    }


def _declared_risk(fields: Fields) -> str | None:
    value = fields.data.get("risk")
    if value is None:
        return None
    if not isinstance(value, str) or value not in LEVELS:
        fields.error("risk", f"unknown level {value!r}{did_you_mean(str(value), LEVELS)} (one of {' | '.join(LEVELS)})")
        return None
    return value


def _target(fields: Fields, scope: UnitScope) -> str | None:
    name = fields.text("target")
    if name is None or scope.targets is None or name in scope.targets:
        return name
    hint = did_you_mean(name, scope.targets) if scope.targets else "; pipeline.yaml defines no 'targets:'"
    fields.error("target", f"unknown target {name!r}{hint}")
    return None


def _python_unit(scope: UnitScope, file: UnitFile, raw: bytes, text: str) -> UnitResult:
    source = parse_python_source(text)
    result = UnitResult(errors=list(source.errors), warnings=list(source.warnings))
    if not source.parsed:
        return result
    header = _header(Fields(source.settings, result.errors, upper=True, reported=source.invalid), scope)
    result.id = header["id"]
    has_rollback = "rollback" in source.functions
    if header["on_check_fail"] is not OnCheckFail.HALT and "check" not in source.functions:
        result.warnings.append("ON_CHECK_FAIL is set but there is no def check(ctx): it has no effect")
    if header["transactional"] is not True and not has_rollback:
        result.warnings.append(NOT_COMPENSABLE + "define rollback(ctx)")
    if not result.errors:
        result.unit = ChangeUnit(
            **header,
            order=file.order,
            stage=file.stage,
            source_file=file.rel,
            checksum=hashlib.sha256(raw).hexdigest(),
            kind=UnitKind.PYTHON,
            has_rollback=has_rollback,
            has_check="check" in source.functions,
        )
    return result


def _template_unit(scope: UnitScope, file: UnitFile, raw: bytes, data: Any) -> UnitResult:
    result = UnitResult()
    if not isinstance(data, Mapping):
        result.errors.append(f"top level must be a mapping of unit fields (id, author, ...), got {describe(data)}")
        return result
    fields = Fields(data, result.errors)
    fields.check_keys(TEMPLATE_UNIT_KEYS)
    header = _header(fields, scope)
    result.id = header["id"]
    name = _template_name(fields)
    steps, labels = _steps(fields)
    checks = parse_checks(data.get("checks"), result.errors, scope.targets)
    if "on_check_fail" in data and "checks" not in data:
        result.warnings.append("field 'on_check_fail': the unit has no 'checks:', so it has no effect")
    payloads = _payload_files(scope.root, steps, labels, result.errors)
    if name is not None:
        _need_target(header, scope, result.errors)
        _check_template(name, steps, labels, header["transactional"], result, scope.root)
    payload_checksum = _payload_checksum(payloads, result.errors)
    if not result.errors and name is not None:
        result.unit = ChangeUnit(
            **header,
            order=file.order,
            stage=file.stage,
            source_file=file.rel,
            checksum=hashlib.sha256(raw).hexdigest(),
            payload_checksum=payload_checksum,
            kind=UnitKind.TEMPLATE,
            template=name,
            steps=steps,
            checks=checks,
        )
    return result


def _template_name(fields: Fields) -> str | None:
    name = fields.text("template", required=True)
    known = template_names()
    if name is None or name in known:
        return name
    hint = did_you_mean(name, known) or "; built-in: sql, http.request, mongo.*, dynamodb.*, s3.*"
    fields.error("template", f"unknown template {name!r}{hint}")
    return None


def _steps(fields: Fields) -> tuple[tuple[Step, ...], tuple[str, ...]]:
    """Return the steps and the message prefix of each (``""`` or ``"steps[i]."``)."""
    if "steps" not in fields.data:
        apply = fields.mapping("apply", required=True)
        rollback = fields.mapping("rollback")
        return ((Step(apply, rollback),), ("",)) if apply is not None else ((), ())
    if "apply" in fields.data or "rollback" in fields.data:
        fields.error("steps", "give either 'apply'/'rollback' or 'steps', not both")
        return (), ()
    items = fields.data["steps"]
    if not isinstance(items, list) or not items:
        fields.error("steps", f"must be a non-empty list of {{apply, rollback}}, got {describe(items)}")
        return (), ()
    parsed = [_step(item, f"steps[{i}].", fields.errors) for i, item in enumerate(items)]
    kept = [(step, f"steps[{i}].") for i, step in enumerate(parsed) if step is not None]
    return tuple(step for step, _ in kept), tuple(label for _, label in kept)


def _step(item: Any, prefix: str, errors: list[str]) -> Step | None:
    if not isinstance(item, Mapping):
        errors.append(f"field {prefix[:-1]!r}: must be a mapping {{apply, rollback}}, got {describe(item)}")
        return None
    fields = Fields(item, errors, prefix=prefix)
    fields.check_keys(("apply", "rollback"))
    apply = fields.mapping("apply", required=True)
    rollback = fields.mapping("rollback")
    return Step(apply, rollback) if apply is not None else None


def _payload_files(
    root: Path, steps: tuple[Step, ...], labels: tuple[str, ...], errors: list[str]
) -> list[tuple[str, str, Path]]:
    """Check every ``file:`` reference of the steps; return (field label, reference, path) triples."""
    found: list[tuple[str, str, Path]] = []
    for step, label in zip(steps, labels, strict=True):
        for part, payload in (("apply", step.apply), ("rollback", step.rollback)):
            if payload is None or "file" not in payload:
                continue
            where = f"{label}{part}.file"
            problem, path = _payload_path(root, payload["file"])
            if problem:
                errors.append(f"field {where!r}: {problem}")
            elif path is not None:
                found.append((where, payload["file"], path))
    return found


def _payload_path(root: Path, value: Any) -> tuple[str, Path | None]:
    """Return (problem, path) for a payload reference; it must stay inside the pipeline folder."""
    if not isinstance(value, str) or not value.strip():
        return (
            f"must be a path relative to the pipeline folder (e.g. 'files/x.sql'), got {describe(value)}",
            None,
        )
    if PurePosixPath(value).is_absolute() or PureWindowsPath(value).anchor:
        return f"absolute path {value!r} not allowed; give a path relative to the pipeline folder", None
    if "\\" in value:
        return f"{value!r}: use '/' as the separator", None
    if ".." in PurePosixPath(value).parts:
        return f"{value!r}: '..' not allowed; payload files must be inside the pipeline folder", None
    try:
        path = (root / value).resolve()
    except (OSError, RuntimeError):  # a symlink loop: RuntimeError before Python 3.13
        return f"{value!r} is a symlink loop; point it at a real file", None
    if not path.is_relative_to(root):
        return f"{value!r} resolves to {path}, outside the pipeline folder (a symlink?); copy it inside", None
    if not path.is_file():
        return f"file {value!r} not found in the pipeline folder", None
    return "", path


def _need_target(header: Mapping[str, Any], scope: UnitScope, errors: list[str]) -> None:
    if header["target"] is None and scope.default_target is None and scope.targets is not None:
        errors.append("no target: set 'target:' in the unit or 'default_target' in pipeline.yaml")


def _check_template(
    name: str,
    steps: tuple[Step, ...],
    labels: tuple[str, ...],
    transactional: bool | None,
    result: UnitResult,
    root: Path,
) -> None:
    try:
        template = get_template(name)
    except ImportError:
        return  # known by name, but its module is not importable here: its payload goes unchecked
    valid = [step for step, label in zip(steps, labels, strict=True) if not _validate(template, step, label, result)]
    if len(valid) != len(steps):
        return
    if transactional is not False:
        for step, label in zip(steps, labels, strict=True):
            problems = template.transaction_problems(step.apply, root)
            result.errors.extend(f"field '{label}apply': {problem}" for problem in problems)
    if transactional and not all(template.is_transactional(step.apply) for step in steps):
        why = " (DDL)" if template.target_kind in ("sql", "mongo", "dynamodb") else ""
        result.errors.append(
            f"field 'transactional': template {name!r} cannot run in a transaction{why}; remove it or set false"
        )
    elif not _compensable(template, steps, transactional):
        result.warnings.append(NOT_COMPENSABLE + template.no_rollback_hint)
    for step in steps:
        result.warnings.extend(template.warnings(step.apply))


def _validate(template: Template, step: Step, label: str, result: UnitResult) -> list[str]:
    problems = template.validate(step.apply, step.rollback)
    result.errors.extend(p.replace("field '", f"field '{label}", 1) for p in problems)
    return problems


def _compensable(template: Template, steps: tuple[Step, ...], transactional: bool | None) -> bool:
    if transactional is not False and all(template.is_transactional(step.apply) for step in steps):
        return True
    return all(step.rollback is not None or template.derives_rollback(step.apply) for step in steps)


def _payload_checksum(payloads: list[tuple[str, str, Path]], errors: list[str]) -> str | None:
    """Return sha256 over every payload file a unit references (None without ``file:``).

    The unit's own ``checksum`` is exactly sha256 of its file (SPEC §6); this second digest makes
    editing ``files/x.sql`` drift just like editing the unit. Each reference adds
    ``b"\\0" + the path as written + b"\\0" + file bytes``, in step order.
    """
    if not payloads:
        return None
    digest = hashlib.sha256()
    for where, ref, path in payloads:
        try:
            data = read_bytes(path, MAX_PAYLOAD_BYTES)
        except DocumentError as err:
            errors.append(f"field {where!r}: {err}")
            continue
        digest.update(b"\0" + ref.encode() + b"\0" + data)
    return digest.hexdigest()
