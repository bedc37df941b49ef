"""Pipeline folder → :class:`Pipeline`, checking everything in one pass (SPEC sections 2 to 4).

``validate_pipeline`` never raises on bad input: it returns every error and warning, each filed
under the culprit's path relative to the pipeline folder. ``load_pipeline`` raises
:class:`PipelineValidationError` with all of them. Files are never executed: YAML through a safe
loader with bounded aliases, JSON, and Python units through ``ast``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flamingock_provider.core.model import ChangeUnit, Pipeline, Stage
from flamingock_provider.core.pipeline_config import pipeline_settings, stage_settings
from flamingock_provider.core.suggest import did_you_mean
from flamingock_provider.core.unit_parser import UnitFile, UnitResult, UnitScope, parse_unit
from flamingock_provider.exceptions import PipelineValidationError, UsageError, ValidationIssue

PIPELINE_FILES = ("pipeline.yaml", "pipeline.yml")
STAGE_FILES = ("stage.yaml", "stage.yml")
PAYLOAD_FOLDER = "files"
MAIN_STAGE = "main"
STAGE_FOLDER = re.compile(r"^(\d+)_([A-Za-z0-9][A-Za-z0-9_\-]*)$", re.ASCII)
# NNNN_name.ext, or Flamingock's _NNNN__name.ext; four or more digits.
UNIT_FILE = re.compile(r"^(?:(\d{4,})_|_(\d{4,})__)([A-Za-z0-9][\w\-.]*)\.(ya?ml|json|py)$", re.ASCII)
UNEXPECTED_FILE = (
    "unexpected file: unit files are named NNNN_name.yaml|yml|json|py (or _NNNN__name.*); "
    "rename or remove it, so a change is never silently skipped"
)
UNEXPECTED_FOLDER = (
    "unexpected folder: stage folders are named NN_name, payload files go in 'files/' at the pipeline "
    "level; rename or remove it"
)


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of validating a pipeline folder; ``pipeline`` is None when there are errors."""

    pipeline: Pipeline | None
    errors: list[ValidationIssue] = field(default_factory=list)
    warnings: list[ValidationIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class _Log:
    errors: list[ValidationIssue] = field(default_factory=list)
    warnings: list[ValidationIssue] = field(default_factory=list)

    def error(self, file: str, message: str) -> None:
        self.errors.append(ValidationIssue(file, message))

    def file(self, file: str, errors: Sequence[str], warnings: Sequence[str] = ()) -> None:
        self.errors += [ValidationIssue(file, message) for message in errors]
        self.warnings += [ValidationIssue(file, message) for message in warnings]


@dataclass
class _StageDraft:
    name: str
    order: int
    folder: str
    files: list[UnitFile]
    settings: dict[str, Any] = field(default_factory=dict)
    config: str = ""  # relative path of its stage.yaml, if any
    units: list[ChangeUnit] = field(default_factory=list)


def load_pipeline(path: str | os.PathLike[str], *, fingerprint: str | None = None) -> Pipeline:
    """Load and validate a pipeline folder; raise :class:`PipelineValidationError` listing every problem.

    ``fingerprint``: the folder's :func:`pipeline_fingerprint`, taken by the caller just before.
    """
    report = validate_pipeline(path, fingerprint=fingerprint)
    if report.pipeline is None:
        raise PipelineValidationError(str(path), report.errors)
    return report.pipeline


def validate_pipeline(path: str | os.PathLike[str], *, fingerprint: str | None = None) -> ValidationReport:
    """Check a pipeline folder and build its :class:`Pipeline` when it has no errors."""
    root = _resolve(Path(path))
    if root is None or not root.is_dir():
        return ValidationReport(None, [ValidationIssue("", f"pipeline folder {str(path)!r} not found")])
    fingerprint = fingerprint or pipeline_fingerprint(root)  # before any file is read
    log = _Log()
    configs, loose, stage_dirs = _scan_root(root, log)
    # The id comes from the folder name as given, not the target of a symlinked folder.
    config_errors: list[str] = []
    settings, scope = pipeline_settings(root, Path(os.path.abspath(path)).name, configs, config_errors)
    log.file(configs[0].name if configs else "", config_errors)
    drafts = _stage_drafts(root, loose, stage_dirs, log)
    _parse_units(scope, drafts, log)
    _check_stages(drafts, log)
    if log.errors:
        return ValidationReport(None, log.errors, log.warnings)
    pipeline = Pipeline(path=root, stages=_build_stages(drafts), fingerprint=fingerprint, **settings)
    log.warnings += _lease_warnings(pipeline, configs[0].name if configs else "pipeline.yaml")
    return ValidationReport(pipeline, log.errors, log.warnings)


def _lease_warnings(pipeline: Pipeline, config_file: str) -> list[ValidationIssue]:
    """Warn when the lease and the audit log live in different systems (SPEC §9)."""
    if pipeline.lock.conn_id is None or pipeline.lock.conn_id == pipeline.audit.conn_id:
        return []
    audit = pipeline.audit.conn_id or "the embedded SQLite store"
    return [
        ValidationIssue(
            config_file,
            f"field 'lock.conn_id': the lease lives in {pipeline.lock.conn_id!r} and the audit log in {audit}: "
            "audit writes cannot be conditional on the lease in one step, so every unit costs one extra "
            "lease read before it touches its target. Still safe: each runner stops at its local lease deadline "
            "(90% of lease_seconds) and checks owner and fencing token before every change and commit; keep "
            "lease_seconds well above a unit's longest pause. Remove lock.conn_id to keep both in one store",
        )
    ]


def discover_pipelines(changes_root: str | os.PathLike[str]) -> list[Path]:
    """Return the pipeline folders directly under ``changes_root``, sorted by name."""
    root = Path(changes_root)
    if not root.is_dir():
        raise UsageError(f"changes folder {str(changes_root)!r} not found; point it at the folder of pipelines")
    return sorted(entry for entry in root.iterdir() if not _ignored(entry.name) and _is_pipeline(entry))


def _is_pipeline(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    for entry in folder.iterdir():
        name = entry.name
        if name in PIPELINE_FILES or UNIT_FILE.match(name) or (STAGE_FOLDER.match(name) and entry.is_dir()):
            return True
    return False


def pipeline_fingerprint(path: str | os.PathLike[str]) -> str:
    """Return a sha256 over (relative path, size, mtime) of every file the loader reads; no content reads."""
    root = Path(path).resolve()
    digest = hashlib.sha256()
    for rel, stamp in sorted(_stamps(root, str(root), "")):
        digest.update(f"{rel}\0{stamp}\n".encode())
    return digest.hexdigest()


def _stamps(root: Path, folder: str, prefix: str) -> Iterator[tuple[str, str]]:
    """Yield (relative path, size and mtime) of every entry the loader looks at; the payload folder whole.

    ``os.scandir``: a folder's entry types come with the listing, so each entry costs one ``stat``
    (this runs at every DAG parse and in every task, to see that the cached parse still holds).
    """
    try:
        with os.scandir(folder) as listing:
            entries = list(listing)
    except OSError:
        return
    for entry in entries:
        if _ignored(entry.name):
            continue
        rel = prefix + entry.name
        try:
            info = entry.stat()
            yield rel, f"{info.st_size}\0{info.st_mtime_ns}"
        except OSError:
            yield rel, "missing"
            continue
        if not entry.is_dir():
            continue
        # Stage folders (one level) and the payload folder (whole, without following symlinked folders).
        if (not prefix and _inside(root, Path(entry.path))) or (
            rel.startswith(f"{PAYLOAD_FOLDER}/") and not entry.is_symlink()
        ):
            yield from _stamps(root, entry.path, f"{rel}/")


def _ignored(name: str) -> bool:
    return name.startswith(".") or name == "__pycache__" or name.endswith(".md")


def _resolve(path: Path) -> Path | None:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: RuntimeError before Python 3.13
        return None


def _inside(root: Path, entry: Path) -> bool:
    resolved = _resolve(entry)
    return resolved is not None and resolved.is_relative_to(root)


def _rel(root: Path, entry: Path) -> str:
    return entry.relative_to(root).as_posix()


def _entries(root: Path, folder: Path, log: _Log) -> list[Path]:
    """List a folder's entries that are not ignored, reporting those that leave the pipeline folder."""
    try:
        entries = sorted(folder.iterdir())
    except OSError as err:
        log.error(_rel(root, folder), f"cannot list the folder: {err.strerror or err}")
        return []
    kept = []
    for entry in entries:
        if _ignored(entry.name):
            continue
        if entry.is_symlink() and not _inside(root, entry):  # ``folder`` itself is inside: so is a plain entry
            target = os.readlink(entry) if entry.is_symlink() else "?"
            log.error(
                _rel(root, entry), f"symlink to {target!r} leads outside the pipeline folder (or loops); copy it in"
            )
            continue
        kept.append(entry)
    return kept


def _scan_root(root: Path, log: _Log) -> tuple[list[Path], list[UnitFile], list[Path]]:
    """Sort the pipeline folder's entries into config files, loose unit files and stage folders."""
    configs: list[Path] = []
    loose: list[UnitFile] = []
    stage_dirs: list[Path] = []
    for entry in _entries(root, root, log):
        if entry.name in PIPELINE_FILES:
            configs.append(entry)
        elif entry.is_dir():
            if entry.name == PAYLOAD_FOLDER:
                continue
            if STAGE_FOLDER.match(entry.name):
                stage_dirs.append(entry)
            else:
                log.error(entry.name, UNEXPECTED_FOLDER)
        else:
            _add_unit_file(root, entry, MAIN_STAGE, loose, log)
    if len(configs) > 1:
        log.error(configs[1].name, f"both {configs[0].name} and {configs[1].name} exist; keep one")
    return configs, loose, stage_dirs


def _add_unit_file(root: Path, entry: Path, stage: str, files: list[UnitFile], log: _Log) -> None:
    match = UNIT_FILE.match(entry.name)
    if match is None:
        log.error(_rel(root, entry), UNEXPECTED_FILE)
        return
    order = int(match.group(1) or match.group(2))
    files.append(UnitFile(path=entry, rel=_rel(root, entry), stage=stage, order=order))


def _stage_drafts(root: Path, loose: list[UnitFile], stage_dirs: list[Path], log: _Log) -> list[_StageDraft]:
    """Return the stages in run order (loose units first, as 'main'), with their unit files."""
    drafts = [_StageDraft(MAIN_STAGE, 0, "", loose)] if loose else []
    for folder in sorted(stage_dirs, key=lambda d: (_stage_number(d.name), d.name)):
        drafts.append(_stage_folder(root, folder, log))
    _check_stage_names(drafts, log)
    for draft in drafts:
        draft.files.sort(key=lambda f: (f.order, f.rel))
    return drafts


def _stage_number(name: str) -> int:
    return int(name.partition("_")[0])


def _stage_folder(root: Path, folder: Path, log: _Log) -> _StageDraft:
    number, _, name = folder.name.partition("_")
    draft = _StageDraft(name, int(number), folder.name, [])
    configs = []
    for entry in _entries(root, folder, log):
        if entry.name in STAGE_FILES:
            configs.append(entry)
        elif entry.is_dir():
            log.error(_rel(root, entry), UNEXPECTED_FOLDER)
        else:
            _add_unit_file(root, entry, draft.name, draft.files, log)
    if len(configs) > 1:
        log.error(_rel(root, configs[1]), f"both {configs[0].name} and {configs[1].name} exist; keep one")
    if configs:
        draft.config = _rel(root, configs[0])
        errors: list[str] = []
        draft.settings = stage_settings(configs[0], errors)
        log.file(draft.config, errors)
    return draft


def _check_stage_names(drafts: list[_StageDraft], log: _Log) -> None:
    by_name: dict[str, _StageDraft] = {}
    by_order: dict[int, _StageDraft] = {}
    for draft in drafts:
        where = draft.folder or "."
        if draft.name in by_name:
            other = by_name[draft.name].folder or "loose unit files (stage 'main')"
            log.error(where, f"duplicate stage name {draft.name!r}: also {other}; rename one")
        if draft.folder and draft.order in by_order and by_order[draft.order].folder:
            log.error(
                where,
                f"duplicate stage number {draft.order}: also {by_order[draft.order].folder}; renumber one",
            )
        by_name.setdefault(draft.name, draft)
        by_order.setdefault(draft.order, draft)


def _parse_units(scope: UnitScope, drafts: list[_StageDraft], log: _Log) -> None:
    """Parse every unit file, then check ids and order numbers across the whole pipeline."""
    ids: dict[str, str] = {}
    orders: dict[int, str] = {}
    for draft in drafts:
        for file in draft.files:
            result = parse_unit(scope, file)
            log.file(file.rel, result.errors, result.warnings)
            _check_unique(file, result, ids, orders, log)
            if result.unit is not None:
                draft.units.append(result.unit)


def _check_unique(file: UnitFile, result: UnitResult, ids: dict[str, str], orders: dict[int, str], log: _Log) -> None:
    if result.id is not None and result.id in ids:
        log.error(
            file.rel,
            f"duplicate id {result.id!r}: also in {ids[result.id]}; ids must be unique in a pipeline",
        )
    if file.order in orders:
        log.error(file.rel, f"duplicate order number {file.order}: also {orders[file.order]}; renumber one")
    if result.id is not None:
        ids.setdefault(result.id, file.rel)
    orders.setdefault(file.order, file.rel)


def _check_stages(drafts: list[_StageDraft], log: _Log) -> None:
    names = [draft.name for draft in drafts]
    for position, draft in enumerate(drafts):
        _check_depends_on(draft, names[:position], names, log)
        if not draft.files:
            log.warnings.append(ValidationIssue(draft.folder, "stage has no change units; it is skipped"))


def _build_stages(drafts: list[_StageDraft]) -> tuple[Stage, ...]:
    """Build the stages that have units; empty ones are skipped and their dependencies passed on."""
    kept = [draft for draft in drafts if draft.files]
    return tuple(_stage(draft, _effective_depends_on(draft, drafts, kept)) for draft in kept)


def _check_depends_on(draft: _StageDraft, earlier: list[str], names: list[str], log: _Log) -> None:
    for name in draft.settings.get("depends_on") or ():
        if name in earlier:
            continue
        if name in names:
            problem = f"stage {name!r} does not come before {draft.name!r}; a stage may depend only on earlier ones"
        else:
            problem = f"unknown stage {name!r}{did_you_mean(name, names)}"
        log.error(draft.config, f"field 'depends_on': {problem}")


def _effective_depends_on(
    draft: _StageDraft, drafts: list[_StageDraft], kept: list[_StageDraft]
) -> tuple[str, ...] | None:
    """Return the stage's dependencies with skipped (empty) stages replaced by their own dependencies."""
    deps = _resolve_skipped(_declared(draft, drafts), drafts)
    position = kept.index(draft)
    implicit = (kept[position - 1].name,) if position else ()
    if draft.settings.get("depends_on") is None and deps == implicit:
        return None
    return deps


def _declared(draft: _StageDraft, drafts: list[_StageDraft]) -> tuple[str, ...]:
    declared = draft.settings.get("depends_on")
    if declared is not None:
        return tuple(declared)
    position = drafts.index(draft)
    return (drafts[position - 1].name,) if position else ()


def _resolve_skipped(deps: tuple[str, ...], drafts: list[_StageDraft]) -> tuple[str, ...]:
    by_name = {draft.name: draft for draft in drafts}
    out: list[str] = []
    for name in deps:
        stage = by_name.get(name)
        if stage is None or stage.files:
            resolved: tuple[str, ...] = (name,)
        else:
            resolved = _resolve_skipped(_declared(stage, drafts), drafts)
        out += [dep for dep in resolved if dep not in out]
    return tuple(out)


def _stage(draft: _StageDraft, depends_on: tuple[str, ...] | None) -> Stage:
    return Stage(
        name=draft.name,
        order=draft.order,
        folder=draft.folder,
        units=tuple(draft.units),
        depends_on=depends_on,
        when=draft.settings.get("when"),
        run_after_failure=draft.settings.get("run_after_failure", False),
        description=draft.settings.get("description", ""),
    )
