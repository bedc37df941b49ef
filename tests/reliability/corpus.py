"""Hostile input as a table: ``(name, files, culprit)`` — the file every rejection must name.

Each case is a whole pipeline folder: a valid ``pipeline.yaml`` and a valid first unit, plus (or
replaced by) the hostile files. ``files`` maps a relative path to its content: text, bytes, or a
:class:`Symlink`, :class:`Sparse` (a sparse file of that size: 50 MB without writing it) or
:class:`Fifo`. ``REJECTED`` cases fail validation (nothing may run); ``FAILING`` cases are valid on
disk and must fail safely when they run: Jinja that reaches for Python internals or connection
passwords in the sandbox, Python units that fail at import.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flamingock_provider.core.loader import validate_pipeline
from tests.reliability.backends import LEDGER, SqliteBackend
from tests.reliability.pool import RunnerPool


@dataclass(frozen=True)
class Symlink:
    target: str  # absolute, or relative to the link's folder


@dataclass(frozen=True)
class Sparse:
    size: int


@dataclass(frozen=True)
class Fifo:
    pass


Content = str | bytes | Symlink | Sparse | Fifo


@dataclass(frozen=True)
class Case:
    name: str
    files: Mapping[str, Content]
    culprit: str  # relative path the error must name (as its file, or in the message of a duplicate)
    runtime_error: str = ""  # FAILING cases: a fragment of the unit's error


MB = 1 << 20
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)
)


def unit(unit_id: str = "evil", **fields: str) -> str:
    """YAML text of a valid sql unit, with ``fields`` replacing or adding lines verbatim."""
    lines = {
        "id": unit_id,
        "author": "mallory",
        "template": "sql",
        "apply": f"{{statements: \"INSERT INTO {LEDGER} VALUES ('p', '{unit_id}', 'r', 0)\"}}",
    }
    lines.update(fields)
    return "".join(f"{key}: {value}\n" for key, value in lines.items() if value != "")


def py_unit(body: str, header: str = 'ID = "evil"\nAUTHOR = "mallory"\n') -> str:
    return header + body


def jinja_unit(expression: str, **fields: str) -> str:
    return unit(apply=f"{{statements: \"INSERT INTO {LEDGER} VALUES ('p', '{expression}', 'r', 0)\"}}", **fields)


U = "0002_evil.yaml"
PY = "0002_evil.py"
REJECTED: tuple[Case, ...] = (
    # syntax
    Case("yaml_syntax", {U: "id: evil\nauthor: [unclosed\n"}, U),
    Case("json_syntax", {"0002_evil.json": '{"id": "evil", "author": }'}, "0002_evil.json"),
    Case("pipeline_yaml_syntax", {"pipeline.yaml": "targets: {warehouse: {conn_id: x}\n"}, "pipeline.yaml"),
    Case("stage_yaml_syntax", {"01_s/stage.yaml": "depends_on: [\n", "01_s/0003_x.yaml": unit("x")}, "01_s/stage.yaml"),
    Case("python_syntax", {PY: py_unit("def apply(ctx)\n    pass\n")}, PY),
    # types
    Case("top_level_list", {U: "- id: evil\n- author: mallory\n"}, U),
    Case("top_level_scalar", {U: "just words\n"}, U),
    Case("id_is_a_number", {U: unit(id="42")}, U),
    Case("id_with_path", {U: unit(id='"../../etc/passwd"')}, U),
    Case("author_is_a_list", {U: unit(author="[a, b]")}, U),
    Case("transactional_is_text", {U: unit(transactional='"yes"')}, U),
    Case("recovery_unknown", {U: unit(recovery="always_retyr")}, U),
    Case("run_always_is_a_number", {U: unit(run_always="1")}, U),
    Case("apply_is_a_list", {U: unit(apply="[CREATE TABLE x (a INT)]")}, U),
    Case("steps_empty", {U: unit(apply="", steps="[]")}, U),
    Case("steps_item_scalar", {U: unit(apply="", steps="[DROP TABLE x]")}, U),
    Case("statements_is_a_mapping", {U: unit(apply="{statements: {a: 1}}")}, U),
    Case("lease_negative", {"pipeline.yaml": "lock: {lease_seconds: -5}\n"}, "pipeline.yaml"),
    Case("targets_is_a_list", {"pipeline.yaml": "targets: [warehouse]\n"}, "pipeline.yaml"),
    Case("python_id_is_a_number", {PY: py_unit("def apply(ctx):\n    pass\n", "ID = 42\nAUTHOR = 'm'\n")}, PY),
    # duplicates
    Case("duplicate_id", {U: unit("ok")}, U),
    Case("duplicate_order", {"0001_again.yaml": unit("again")}, "0001_again.yaml"),
    Case("duplicate_yaml_key", {U: unit() + "author: eve\n"}, U),
    Case("duplicate_json_key", {"0002_evil.json": '{"id": "a", "id": "b", "author": "m"}'}, "0002_evil.json"),
    Case(
        "duplicate_stage_number",
        {"01_a/0003_a.yaml": unit("a"), "01_b/0004_b.yaml": unit("b")},
        "01_b",
    ),
    # unknown keys and names
    Case("unknown_unit_key", {U: unit(aply="{statements: x}")}, U),
    Case("unknown_pipeline_key", {"pipeline.yaml": "targts: {}\n"}, "pipeline.yaml"),
    Case(
        "unknown_stage_key",
        {"01_s/stage.yaml": "depend_on: [main]\n", "01_s/0003_x.yaml": unit("x")},
        "01_s/stage.yaml",
    ),
    Case("unknown_template", {U: unit(template="sql.exec")}, U),
    Case("unknown_target", {U: unit(target="prod_db")}, U),
    Case("audit_table_injection", {"pipeline.yaml": 'audit: {table: "log; DROP TABLE t"}\n'}, "pipeline.yaml"),
    Case("stray_file", {"0002_notes.txt": "remember to apply\n"}, "0002_notes.txt"),
    Case("stray_folder", {"misc/0002_evil.yaml": unit()}, "misc"),
    # paths
    Case("payload_traversal", {U: unit(apply="{file: ../../../etc/passwd}")}, U),
    Case("payload_absolute", {U: unit(apply="{file: /etc/passwd}")}, U),
    Case("payload_backslash", {U: unit(apply="{file: 'files\\..\\..\\x.sql'}")}, U),
    Case("payload_symlink_out", {U: unit(apply="{file: files/x.sql}"), "files/x.sql": Symlink("/etc/hostname")}, U),
    Case("unit_symlink_out", {U: Symlink("/etc/passwd")}, U),
    Case("stage_symlink_out", {"02_evil": Symlink("/etc")}, "02_evil"),
    Case("symlink_loop", {U: Symlink(U)}, U),
    Case("special_file", {U: Fifo()}, U),
    # size, encoding, YAML bombs
    Case("sparse_50mb_unit", {U: Sparse(50 * MB)}, U),
    Case("sparse_50mb_pipeline_yaml", {"pipeline.yaml": Sparse(50 * MB)}, "pipeline.yaml"),
    Case("sparse_50mb_payload", {U: unit(apply="{file: files/big.sql}"), "files/big.sql": Sparse(50 * MB)}, U),
    Case("non_utf8_unit", {U: b"id: evil\nauthor: m\xe9llory\n"}, U),
    Case("non_utf8_pipeline_yaml", {"pipeline.yaml": b"description: caf\xe9\n"}, "pipeline.yaml"),
    Case("non_utf8_python", {PY: b'ID = "evil"\nAUTHOR = "\xff"\ndef apply(ctx):\n    pass\n'}, PY),
    Case("yaml_alias_bomb", {U: BOMB}, U),
    Case("yaml_alias_bomb_pipeline", {"pipeline.yaml": BOMB}, "pipeline.yaml"),
    Case("yaml_recursive_anchor", {U: "id: &a [*a]\nauthor: m\n"}, U),
    Case("yaml_python_tag", {U: "id: !!python/object/apply:os.system [id]\nauthor: m\n"}, U),
    # python units that would run code at parse time
    Case(
        "python_non_literal_id",
        {PY: py_unit("def apply(ctx):\n    pass\n", "ID = open('/etc/passwd').read()\nAUTHOR = 'm'\n")},
        PY,
    ),
    Case("python_no_apply", {PY: py_unit("def rollback(ctx):\n    pass\n")}, PY),
    Case("python_async_apply", {PY: py_unit("async def apply(ctx):\n    pass\n")}, PY),
)

FAILING: tuple[Case, ...] = (
    Case("jinja_mro", {U: jinja_unit("{{ ''.__class__.__mro__ }}")}, U, runtime_error="unsafe"),
    Case(
        "jinja_subclasses", {U: jinja_unit("{{ ''.__class__.__mro__[1].__subclasses__() }}")}, U, runtime_error="unsafe"
    ),
    Case("jinja_globals", {U: jinja_unit("{{ lipsum.__globals__.os }}")}, U, runtime_error="unsafe"),
    Case("jinja_connection_password", {U: jinja_unit("{{ conn.rel_target.password }}")}, U, runtime_error="undefined"),
    Case(
        "jinja_environment",
        {U: jinja_unit("{{ env.AIRFLOW_CONN_REL_TARGET }}")},
        U,
        runtime_error="AIRFLOW_CONN_REL_TARGET",
    ),
    Case(
        "jinja_in_payload_file",
        {U: unit(apply="{file: files/x.sql}"), "files/x.sql": "SELECT '{{ self.__init__.__globals__ }}'"},
        U,
        runtime_error="unsafe",
    ),
    Case("jinja_in_when", {U: unit(when="\"{{ ''.__class__.__base__ }}\"")}, U, runtime_error="unsafe"),
    Case(
        "python_raises_at_import",
        {PY: py_unit("raise RuntimeError('boom')\ndef apply(ctx):\n    pass\n")},
        PY,
        runtime_error="boom",
    ),
    Case(
        "python_missing_import",
        {PY: py_unit("import not_a_module_anywhere\ndef apply(ctx):\n    pass\n")},
        PY,
        runtime_error="not_a_module_anywhere",
    ),
)


def write_case(root: Path, case: Case, header: str) -> Path:
    """Write the case's pipeline folder under ``root``; return it. A rejected case also gets a valid
    first unit (which must not run either); a failing case has only its own unit, so nothing else runs."""
    folder = root / case.name
    files: dict[str, Content] = {"pipeline.yaml": header}
    if not case.runtime_error:
        files["0001_ok.yaml"] = unit("ok")
    files.update(case.files)
    for rel, content in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, content)
    return folder


def _write(path: Path, content: Content) -> None:
    if isinstance(content, Symlink):
        path.symlink_to(content.target)
    elif isinstance(content, Sparse):
        with path.open("wb") as handle:
            handle.truncate(content.size)
    elif isinstance(content, Fifo):
        os.mkfifo(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


# -- the checks (the tests run one case each; bench/faults.py runs them all) ---------------------------


def names_culprit(case: Case, issues: list[dict[str, str]]) -> bool:
    return any(i["file"] == case.culprit or case.culprit in i["message"] for i in issues)


def target_rows(backend: SqliteBackend) -> list[tuple[str, ...]]:
    with sqlite3.connect(backend.target_db) as conn:
        return conn.execute(f"SELECT pipeline, unit FROM {LEDGER}").fetchall()


def check_rejected(pool: RunnerPool, backend: SqliteBackend, root: Path, case: Case) -> None:
    """Validation names the culprit; ``apply`` exits 1 naming it; nothing reaches the target or the audit log."""
    folder = write_case(root, case, backend.header(case.name, lease_s=30))
    report = validate_pipeline(folder)
    issues = [{"file": i.file, "message": i.message} for i in report.errors]
    assert report.pipeline is None and names_culprit(case, issues), issues
    run = pool.run(["apply", str(folder), "--json"], backend.env)
    assert run.wait() == 1, run.describe()
    doc = run.json()
    assert doc["ok"] is False and doc["error"]["type"] == "PipelineValidationError", doc
    assert names_culprit(case, doc["errors"]), doc
    assert "FAILED:" in run.stderr and case.culprit in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert target_rows(backend) == [] and backend.history(folder.name) == []


def check_failing(pool: RunnerPool, backend: SqliteBackend, root: Path, case: Case) -> None:
    """A unit valid on disk but hostile when it runs fails safely, naming its file; the target stays untouched."""
    folder = write_case(root, case, backend.header(case.name, lease_s=30))
    assert validate_pipeline(folder).errors == []
    run = pool.run(["apply", str(folder), "--json"], backend.env)
    assert run.wait() == 1, run.describe()
    assert "unexpected" not in run.stderr and "Traceback" not in run.stderr, run.stderr
    doc, entries = run.json(), backend.history(folder.name)
    if "failed" in doc:  # the unit ran and failed: audited FAILED, under its file
        assert doc["failed"]["id"] == "evil" and case.runtime_error in doc["failed"]["error"], doc
        assert [e.state.value for e in entries][-1] == "FAILED" and entries[-1].error is not None, entries
        assert {e.source_file for e in entries} == {case.culprit}
    else:  # refused before the unit started (its `when:`): an error naming the file
        message = doc["error"]["message"]
        assert case.culprit in message and case.runtime_error in message, doc
        assert entries == []
    assert all(e.state.value != "APPLIED" for e in entries)
    assert target_rows(backend) == []
