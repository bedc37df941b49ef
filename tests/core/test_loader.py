"""Pipeline folder → Pipeline: the layout and file rules of SPEC sections 2 to 4, every bad input."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from flamingock_provider.core.loader import (
    discover_pipelines,
    load_pipeline,
    pipeline_fingerprint,
    validate_pipeline,
)
from flamingock_provider.core.model import LockMode, OnFailure, Recovery, RunMode
from flamingock_provider.core.python_unit import load_unit_module, module_name
from flamingock_provider.exceptions import (
    ConfigurationError,
    PipelineValidationError,
    UsageError,
    ValidationIssue,
)

PIPELINE_YAML = """\
id: Inventory-Main
description: Product catalog
start_date: 2025-01-01
tags: [schema, catalog]
lock: {lease_seconds: 60, mode: deferrable}
targets:
  warehouse: {conn_id: warehouse_db}
  lake: {conn_id: aws_default, database: raw}
default_target: warehouse
recovery: always_retry
metadata: {team: catalog}
"""

PY_UNIT = """\
ID = "backfill-prices"
AUTHOR = "bob"
DESCRIPTION = "Backfill"
TRANSACTIONAL = True
RUN_ALWAYS = False


def apply(ctx):
    return 42


def rollback(ctx):
    return None
"""

BILLION_LAUGHS = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
)


def sql_unit(unit_id: str, *extra: str, statements: str = "CREATE TABLE t (id INT)") -> str:
    """YAML text of a sql unit with an apply and a rollback, plus extra raw lines."""
    return "\n".join(
        [
            f"id: {unit_id}",
            "author: alice",
            "template: sql",
            "apply:",
            f"  statements: {statements!r}",
            "rollback:",
            "  statements: DROP TABLE t",
            *extra,
        ]
    )


def build(root: Path, files: dict[str, str | bytes]) -> Path:
    """Create ``files`` (relative path -> text or bytes) under ``root``; return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def pipeline_with(tmp_path: Path, files: dict[str, str | bytes], config: str = PIPELINE_YAML) -> Path:
    return build(tmp_path / "inventory", {"pipeline.yaml": config, **files})


def issues_of(path: Path) -> list[ValidationIssue]:
    with pytest.raises(PipelineValidationError) as caught:
        load_pipeline(path)
    assert str(path) in str(caught.value)
    return caught.value.issues


def messages(path: Path, file: str) -> str:
    """Every error message filed under ``file``, joined (fails when there is none)."""
    found = [issue.message for issue in issues_of(path) if issue.file == file]
    assert found, f"no error for {file}: {issues_of(path)}"
    return "\n".join(found)


def sha(*parts: bytes) -> str:
    return hashlib.sha256(b"".join(parts)).hexdigest()


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return pipeline_with(
        tmp_path,
        {
            "0001_loose.yaml": sql_unit("loose"),
            "01_schema/0002_create.yaml": sql_unit("create", "target: lake", "transactional: false"),
            "01_schema/_0003__flamingock_style.yml": sql_unit("flamingock-style", "recovery: manual_intervention"),
            "01_schema/0004_seed.json": json.dumps(
                {
                    "id": "seed.json",
                    "author": "carol",
                    "template": "sql",
                    "steps": [
                        {
                            "apply": {"statements": "INSERT INTO t VALUES (1)"},
                            "rollback": {"statements": "DELETE FROM t"},
                        },
                        {"apply": {"statements": ["INSERT INTO t VALUES (2)"]}},
                    ],
                }
            ),
            "01_schema/notes.md": "# ignored",
            "02_data/stage.yaml": "depends_on: [main]\nwhen: \"{{ params.env == 'prod' }}\"\n",
            "02_data/0010_backfill.py": PY_UNIT,
            "02_data/0011_from_file.yaml": "id: from-file\nauthor: dan\ntemplate: sql\napply: {file: files/create.sql}\n",
            "03_cleanup/stage.yaml": "run_after_failure: true\ndescription: Clean up\n",
            "03_cleanup/0020_cleanup.yaml": sql_unit("cleanup"),
            "files/create.sql": "CREATE TABLE x (id INT);\n",
            "files/nested/other.txt": "anything goes in files/",
            ".hidden": "x",
            ".git/config": "x",
            "README.md": "# Inventory",
            "__pycache__/0001_loose.cpython-311.pyc": b"\0\0",
            "01_schema/__pycache__/junk.pyc": b"\0",
        },
    )


def test_good_pipeline_stages_and_order(good: Path) -> None:
    pipeline = load_pipeline(good)

    assert pipeline.id == "inventory_main"
    assert pipeline.path == good.resolve()
    assert [(s.name, s.order, s.folder) for s in pipeline.stages] == [
        ("main", 0, ""),
        ("schema", 1, "01_schema"),
        ("data", 2, "02_data"),
        ("cleanup", 3, "03_cleanup"),
    ]
    assert [u.id for u in pipeline.units] == [
        "loose",
        "create",
        "flamingock-style",
        "seed.json",
        "backfill-prices",
        "from-file",
        "cleanup",
    ]
    assert [u.order for u in pipeline.units] == [1, 2, 3, 4, 10, 11, 20]
    assert pipeline.unit("flamingock-style").source_file == "01_schema/_0003__flamingock_style.yml"
    assert pipeline.unit("create").stage == "schema"


def test_good_pipeline_stage_settings(good: Path) -> None:
    pipeline = load_pipeline(good)

    data, cleanup = pipeline.stage("data"), pipeline.stage("cleanup")
    assert data.depends_on == ("main",)
    assert data.when == "{{ params.env == 'prod' }}"
    assert pipeline.stage("schema").depends_on is None
    assert cleanup.run_after_failure is True
    assert cleanup.description == "Clean up"


def test_good_pipeline_settings(good: Path) -> None:
    pipeline = load_pipeline(good)

    assert pipeline.start_date == datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert pipeline.tags == ("schema", "catalog")
    assert pipeline.lock.lease_seconds == 60
    assert pipeline.lock.mode is LockMode.DEFERRABLE
    assert pipeline.lock.wait_timeout_seconds == 1800
    assert pipeline.targets["lake"].database == "raw"
    assert pipeline.default_target == "warehouse"
    assert pipeline.recovery is Recovery.ALWAYS_RETRY
    assert pipeline.on_failure is OnFailure.ROLLBACK_FAILED
    assert pipeline.run_mode is RunMode.TASK_PER_UNIT
    assert pipeline.metadata == {"team": "catalog"}
    assert pipeline.fingerprint == pipeline_fingerprint(good)


def test_good_pipeline_units(good: Path) -> None:
    pipeline = load_pipeline(good)

    create = pipeline.unit("create")
    assert (create.kind, create.template, create.target, create.transactional) == ("template", "sql", "lake", False)
    assert create.recovery is Recovery.ALWAYS_RETRY  # the pipeline's default
    assert pipeline.unit("flamingock-style").recovery is Recovery.MANUAL_INTERVENTION
    seed = pipeline.unit("seed.json")
    assert len(seed.steps) == 2 and seed.steps[1].rollback is None
    assert seed.steps[0].apply == {"statements": "INSERT INTO t VALUES (1)"}
    python = pipeline.unit("backfill-prices")
    assert (python.kind, python.author, python.has_rollback, python.transactional) == ("python", "bob", True, True)
    assert python.target is None and python.steps == ()


def test_checksums_cover_unit_bytes_and_payload_files(good: Path) -> None:
    pipeline = load_pipeline(good)

    for unit in pipeline.units:  # SPEC §6: the checksum is sha256 of the unit file itself
        assert unit.checksum == sha((good / unit.source_file).read_bytes()), unit.id
        assert (unit.payload_checksum is None) == (unit.id != "from-file")
    payload = (good / "files/create.sql").read_bytes()
    assert pipeline.unit("from-file").payload_checksum == sha(b"\0files/create.sql\0", payload)

    (good / "files/create.sql").write_text("CREATE TABLE x (id BIGINT);\n")
    edited = load_pipeline(good).unit("from-file")
    assert edited.checksum == pipeline.unit("from-file").checksum
    assert edited.payload_checksum != pipeline.unit("from-file").payload_checksum


def test_minimal_pipeline_without_config(tmp_path: Path) -> None:
    root = build(tmp_path / "my-pipe", {"0001_only.py": "ID = 'only'\nAUTHOR = 'x'\ndef apply(ctx): pass\n"})

    report = validate_pipeline(root)

    assert report.errors == []
    assert report.pipeline is not None and report.pipeline.id == "my_pipe"
    assert report.pipeline.targets == {} and report.pipeline.default_target is None
    assert report.warnings == [
        ValidationIssue("0001_only.py", "not compensable: a failure needs manual intervention; define rollback(ctx)")
    ]


def test_empty_pipeline_and_empty_stage(tmp_path: Path) -> None:
    assert load_pipeline(build(tmp_path / "empty", {})).stages == ()

    root = build(tmp_path / "p", {"02_empty/stage.yaml": "description: nothing yet\n"})
    report = validate_pipeline(root)
    assert report.pipeline is not None and report.pipeline.stages == ()
    assert [w.file for w in report.warnings] == ["02_empty"]


def test_single_target_is_the_default(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {"0001_a.yaml": sql_unit("a")}, "targets: {db: {conn_id: x}}\n")

    pipeline = load_pipeline(root)

    assert pipeline.default_target == "db"
    assert pipeline.target_of(pipeline.unit("a")).conn_id == "x"  # type: ignore[union-attr]


def test_start_date_forms(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {}, "start_date: '2025-03-01T10:00:00+02:00'\n")
    assert load_pipeline(root).start_date == datetime(2025, 3, 1, 8, tzinfo=timezone.utc)
    (root / "pipeline.yaml").write_text("start_date: 2025-03-01 10:00:00\n")
    assert load_pipeline(root).start_date == datetime(2025, 3, 1, 10, tzinfo=timezone.utc)
    (root / "pipeline.yaml").write_text("start_date: yesterday\n")
    assert "field 'start_date'" in messages(root, "pipeline.yaml")


def test_empty_stage_is_skipped_and_its_dependencies_pass_on(tmp_path: Path) -> None:
    root = build(
        tmp_path / "p",
        {
            "01_a/0001_a.py": PY_UNIT.replace("backfill-prices", "a"),
            "02_b/0002_b.py": PY_UNIT.replace("backfill-prices", "b"),
            "03_empty/stage.yaml": "depends_on: [a]\n",
            "04_c/0004_c.py": PY_UNIT.replace("backfill-prices", "c"),
        },
    )

    pipeline = load_pipeline(root)

    assert [s.name for s in pipeline.stages] == ["a", "b", "c"]
    assert pipeline.stage("b").depends_on is None
    assert pipeline.stage("c").depends_on == ("a",)


# --- bad input: every case names the file and the field or value --------------------------------


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {"0001_a.yaml": "id: a\nauthor: x\napply: [unclosed\n"})

    message = messages(root, "0001_a.yaml")

    assert "YAML syntax error at line" in message


def test_json_syntax_error_has_line(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {"01_s/0001_a.json": '{"id": "a",\n "author": }'})

    assert "JSON syntax error at line 2" in messages(root, "01_s/0001_a.json")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", ""])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    root = pipeline_with(tmp_path, {"0001_a.yaml": text})

    assert "top level must be a mapping" in messages(root, "0001_a.yaml")


def test_pipeline_yaml_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {"0001_a.yaml": sql_unit("a")}, "[1, 2]\n")

    assert "top level must be a mapping" in messages(root, "pipeline.yaml")


def test_duplicate_id_names_both_files(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {"01_a/0001_x.yaml": sql_unit("same"), "02_b/0002_y.yaml": sql_unit("same")})

    message = messages(root, "02_b/0002_y.yaml")

    assert "duplicate id 'same'" in message and "01_a/0001_x.yaml" in message


def test_duplicate_order_number_names_both_files(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {"0001_x.yaml": sql_unit("x"), "01_b/_0001__y.yaml": sql_unit("y")})

    message = messages(root, "01_b/_0001__y.yaml")

    assert "duplicate order number 1" in message and "0001_x.yaml" in message


def test_duplicate_stage_name_and_number(tmp_path: Path) -> None:
    root = pipeline_with(
        tmp_path,
        {"01_a/0001_x.yaml": sql_unit("x"), "02_a/0002_y.yaml": sql_unit("y"), "2_b/0003_z.yaml": sql_unit("z")},
    )

    assert "duplicate stage name 'a'" in messages(root, "02_a")
    assert "duplicate stage number 2" in messages(root, "2_b")


def test_unknown_unit_key_did_you_mean(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {"0001_a.yaml": sql_unit("a", "tempalte: sql")})

    assert "field 'tempalte': unknown key (did you mean 'template'?)" in messages(root, "0001_a.yaml")


def test_unknown_pipeline_key_did_you_mean(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {}, "schedul: '@daily'\nlock: {lease_secs: 5}\ntargets: {db: {conn: x}}\n")

    message = messages(root, "pipeline.yaml")

    assert "field 'schedul': unknown key (did you mean 'schedule'?)" in message
    assert "field 'lock.lease_secs': unknown key (did you mean 'lease_seconds'?)" in message
    assert "field 'targets.db.conn': unknown key (did you mean 'conn_id'?)" in message
    assert "field 'targets.db.conn_id': required" in message


def test_unknown_stage_key_and_bad_depends_on(tmp_path: Path) -> None:
    root = pipeline_with(
        tmp_path,
        {
            "01_schema/0001_a.yaml": sql_unit("a"),
            "02_data/stage.yaml": "depend_on: [schema]\n",
            "03_more/stage.yaml": "depends_on: [schem, later]\n",
            "03_more/0003_c.yaml": sql_unit("c"),
            "04_later/0004_d.yaml": sql_unit("d"),
        },
    )

    assert "field 'depend_on': unknown key (did you mean 'depends_on'?)" in messages(root, "02_data/stage.yaml")
    message = messages(root, "03_more/stage.yaml")
    assert "unknown stage 'schem' (did you mean 'schema'?)" in message
    assert "stage 'later' does not come before 'more'" in message


def test_unknown_template_did_you_mean(tmp_path: Path) -> None:
    unit = "id: a\nauthor: x\ntemplate: mongo.create_idx\napply: {collection: c}\n"
    root = pipeline_with(tmp_path, {"0002_index.yaml": unit})

    assert issues_of(root) == [
        ValidationIssue(
            "0002_index.yaml",
            "field 'template': unknown template 'mongo.create_idx' (did you mean 'mongo.create_index'?)",
        )
    ]


def test_unknown_target_did_you_mean(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {"0001_a.yaml": sql_unit("a", "target: warehous")}, PIPELINE_YAML)

    assert "field 'target': unknown target 'warehous' (did you mean 'warehouse'?)" in messages(root, "0001_a.yaml")


def test_unknown_default_target(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {}, "targets: {db: {conn_id: x}}\ndefault_target: dc\n")

    assert "field 'default_target': unknown target 'dc'" in messages(root, "pipeline.yaml")


def test_no_target_for_a_template_unit(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {"0001_a.yaml": sql_unit("a")}, "description: no targets\n")

    assert "no target: set 'target:' in the unit or 'default_target'" in messages(root, "0001_a.yaml")


def test_bad_enums_did_you_mean(tmp_path: Path) -> None:
    config = "recovery: always_retyr\nrun_mode: per_unit\nlock: {mode: defer}\ntargets: {db: {conn_id: x}}\n"
    root = pipeline_with(tmp_path, {"0001_a.yaml": sql_unit("a", "recovery: manual")}, config)

    message = messages(root, "pipeline.yaml")
    assert "field 'recovery': unknown value 'always_retyr' (did you mean 'always_retry'?)" in message
    assert "field 'run_mode': unknown value 'per_unit'" in message
    assert "field 'lock.mode': unknown value 'defer' (did you mean 'deferrable'?)" in message
    assert "field 'recovery': unknown value 'manual'" in messages(root, "0001_a.yaml")


def test_bad_types_in_pipeline_yaml(tmp_path: Path) -> None:
    config = "lock: {lease_seconds: -1, poke_interval_seconds: true}\ntags: schema\nschedule: 5\n"
    root = pipeline_with(tmp_path, {}, config)

    message = messages(root, "pipeline.yaml")

    for field in ("lock.lease_seconds", "lock.poke_interval_seconds", "tags", "schedule"):
        assert f"field {field!r}" in message


def test_bad_unit_id_and_missing_author(tmp_path: Path) -> None:
    unit = "id: bad id!\ntemplate: sql\napply: {statements: SELECT 1}\n"
    root = pipeline_with(tmp_path, {"0001_a.yaml": unit})

    message = messages(root, "0001_a.yaml")

    assert "field 'id': invalid value 'bad id!'" in message
    assert "field 'author': required" in message


def test_bad_pipeline_id(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {}, "id: 'inventory v2'\n")

    assert "pipeline id 'inventory v2'" in messages(root, "pipeline.yaml")


@pytest.mark.parametrize(
    ("rel", "culprit", "expected"),
    [
        ("notes.txt", "notes.txt", "unexpected file"),
        ("0003_seed.yaml.bak", "0003_seed.yaml.bak", "unexpected file"),
        ("3_bad.yaml", "3_bad.yaml", "unexpected file"),
        ("01_schema/notes.txt", "01_schema/notes.txt", "unexpected file"),
        ("01_schema/pipeline.yaml", "01_schema/pipeline.yaml", "unexpected file"),
        ("stage.yaml", "stage.yaml", "unexpected file"),
        ("schema/0002_b.yaml", "schema", "unexpected folder"),
        ("01_schema/sub/0002_b.yaml", "01_schema/sub", "unexpected folder"),
        ("01_schema/files/x.sql", "01_schema/files", "unexpected folder"),
    ],
)
def test_stray_files_and_folders_are_errors(tmp_path: Path, rel: str, culprit: str, expected: str) -> None:
    root = pipeline_with(tmp_path, {"01_schema/0001_a.yaml": sql_unit("a"), rel: "x: 1\n"})

    assert expected in messages(root, culprit)


def test_ignored_entries_are_not_errors(tmp_path: Path) -> None:
    root = pipeline_with(
        tmp_path,
        {
            ".hidden": "x",
            ".idea/workspace.xml": "x",
            "README.md": "x",
            "01_s/CHANGELOG.md": "x",
            "01_s/.DS_Store": "x",
            "01_s/0001_a.yaml": sql_unit("a"),
            "__pycache__/x.pyc": b"\0",
            "files/anything.bin": b"\0",
        },
    )

    assert validate_pipeline(root).errors == []


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("../../etc/passwd", "'..' not allowed"),
        ("files/../../secret.sql", "'..' not allowed"),
        ("/etc/passwd", "absolute path '/etc/passwd' not allowed"),
        ("files/missing.sql", "file 'files/missing.sql' not found"),
    ],
)
def test_payload_file_must_stay_inside(tmp_path: Path, ref: str, expected: str) -> None:
    unit = f"id: a\nauthor: x\ntemplate: sql\napply: {{file: {ref!r}}}\n"
    root = pipeline_with(tmp_path, {"0001_a.yaml": unit})

    message = messages(root, "0001_a.yaml")

    assert "field 'apply.file': " in message and expected in message


def test_symlinked_unit_outside_the_folder(tmp_path: Path) -> None:
    outside = build(tmp_path / "elsewhere", {"0001_a.yaml": sql_unit("a")})
    root = pipeline_with(tmp_path, {})
    (root / "0001_a.yaml").symlink_to(outside / "0001_a.yaml")
    (root / "01_stage").symlink_to(outside, target_is_directory=True)

    assert "outside the pipeline folder" in messages(root, "0001_a.yaml")
    assert "outside the pipeline folder" in messages(root, "01_stage")


def test_symlink_inside_the_folder_is_fine(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {"files/real.sql": "SELECT 1;"})
    (root / "files/link.sql").symlink_to(root / "files/real.sql")
    build(root, {"0001_a.yaml": "id: a\nauthor: x\ntemplate: sql\napply: {file: files/link.sql}\n"})

    assert load_pipeline(root).unit("a").kind == "template"


def test_symlinked_payload_outside_the_folder(tmp_path: Path) -> None:
    secret = build(tmp_path / "secrets", {"s.sql": "SELECT 1;"}) / "s.sql"
    root = pipeline_with(tmp_path, {"0001_a.yaml": "id: a\nauthor: x\ntemplate: sql\napply: {file: files/s.sql}\n"})
    (root / "files").mkdir()
    (root / "files/s.sql").symlink_to(secret)

    message = messages(root, "0001_a.yaml")

    assert "field 'apply.file'" in message and "outside the pipeline folder" in message


def test_billion_laughs_is_rejected(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {"0001_bomb.yaml": BILLION_LAUGHS})

    assert "aliases expand to more than" in messages(root, "0001_bomb.yaml")


def test_recursive_anchor_is_rejected(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {"0001_loop.yaml": "id: &a [*a]\n"})

    assert "aliases expand to more than" in messages(root, "0001_loop.yaml")


def test_duplicate_yaml_and_json_keys_are_errors(tmp_path: Path) -> None:
    root = pipeline_with(
        tmp_path,
        {"0001_a.yaml": sql_unit("a", "id: b"), "0002_b.json": '{"id": "b", "id": "c"}'},
    )

    assert "duplicate key 'id' at line 8" in messages(root, "0001_a.yaml")
    assert "duplicate key 'id'" in messages(root, "0002_b.json")


def test_oversized_file_is_rejected_without_reading(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {})
    with open(root / "0001_big.yaml", "wb") as handle:
        handle.truncate(50 * 1024 * 1024)

    assert "over the 1,048,576-byte limit" in messages(root, "0001_big.yaml")


def test_non_utf8_file(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {"0001_a.yaml": b"id: a\nauthor: caf\xe9\n"})

    assert "not UTF-8: byte 0xe9 at line 2" in messages(root, "0001_a.yaml")


def test_python_unit_without_apply(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {"0001_a.py": "ID = 'a'\nAUTHOR = 'x'\ndef rollback(ctx): pass\n"})

    assert "no top-level 'def apply(ctx)'" in messages(root, "0001_a.py")


def test_python_unit_syntax_error(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {"0001_a.py": "ID = 'a'\n\ndef apply(ctx)\n    pass\n"})

    assert messages(root, "0001_a.py").startswith("syntax error at line 3")


def test_python_unit_non_literal_settings(tmp_path: Path) -> None:
    source = "import os\nID = os.environ['X']\nAUTHOR = 'x'\nTRANSACTIONAL = 'yes'\ndef apply(ctx): pass\n"
    root = pipeline_with(tmp_path, {"0001_a.py": source})

    message = messages(root, "0001_a.py")

    assert "field 'ID' (line 2): not a literal" in message
    assert "field 'TRANSACTIONAL': must be true or false" in message


def test_python_unit_is_not_executed_at_load(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    source = f"open({str(marker)!r}, 'w').close()\nID = 'a'\nAUTHOR = 'x'\ndef apply(ctx): pass\n"
    root = pipeline_with(tmp_path, {"0001_a.py": source})

    load_pipeline(root)

    assert not marker.exists()


def test_steps_and_apply_both_given(tmp_path: Path) -> None:
    unit = sql_unit("a", "steps:", "  - apply: {statements: SELECT 1}")
    root = pipeline_with(tmp_path, {"0001_a.yaml": unit})

    assert "field 'steps': give either 'apply'/'rollback' or 'steps', not both" in messages(root, "0001_a.yaml")


def test_bad_steps(tmp_path: Path) -> None:
    unit = "id: a\nauthor: x\ntemplate: sql\nsteps:\n  - {apply: {statements: S}, rolback: {}}\n  - {apply: {}}\n"
    root = pipeline_with(tmp_path, {"0001_a.yaml": unit})

    message = messages(root, "0001_a.yaml")

    assert "field 'steps[0].rolback': unknown key (did you mean 'rollback'?)" in message
    assert "field 'steps[1].apply': give exactly one of 'statements' or 'file'" in message


def test_template_payload_is_validated(tmp_path: Path) -> None:
    unit = "id: a\nauthor: x\ntemplate: sql\napply: {statement: SELECT 1}\n"
    root = pipeline_with(tmp_path, {"0001_a.yaml": unit})

    assert "field 'apply.statement': unknown key (did you mean 'statements'?)" in messages(root, "0001_a.yaml")


def test_many_errors_in_one_pass(tmp_path: Path) -> None:
    root = pipeline_with(
        tmp_path,
        {
            "0001_a.yaml": "id: a\ntempalte: sql\n",
            "01_s/0002_b.py": "ID = 'b'\n",
            "01_s/0003_c.yaml": "{broken",
            "notes.txt": "x",
        },
        "schedul: x\n",
    )

    issues = issues_of(root)

    assert len(issues) >= 3
    assert {"pipeline.yaml", "0001_a.yaml", "01_s/0002_b.py", "01_s/0003_c.yaml", "notes.txt"} <= {
        i.file for i in issues
    }


def test_broken_pipeline_yaml_still_checks_units(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {"0001_a.yaml": sql_unit("a", "tempalte: x")}, "targets: [oops\n")

    files = {issue.file for issue in issues_of(root)}

    assert files == {"pipeline.yaml", "0001_a.yaml"}


def test_missing_folder(tmp_path: Path) -> None:
    report = validate_pipeline(tmp_path / "nope")

    assert report.pipeline is None and "not found" in report.errors[0].message


# --- discovery, fingerprint, unit modules ---------------------------------------------------------


def test_discover_pipelines(tmp_path: Path) -> None:
    build(
        tmp_path,
        {
            "b/pipeline.yaml": "",
            "a/0001_x.yaml": "",
            "c/01_stage/0001_x.yaml": "",
            "d/notes.txt": "",
            ".hidden/pipeline.yaml": "",
            "__pycache__/0001_x.yaml": "",
            "loose.txt": "",
        },
    )

    assert discover_pipelines(tmp_path) == [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    with pytest.raises(UsageError):
        discover_pipelines(tmp_path / "missing")


def test_fingerprint_tracks_the_files_the_loader_reads(good: Path) -> None:
    first = pipeline_fingerprint(good)
    assert pipeline_fingerprint(good) == first

    stat = (good / "files/create.sql").stat()
    os.utime(good / "files/create.sql", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    second = pipeline_fingerprint(good)
    assert second != first

    (good / "01_schema/notes.md").write_text("ignored: the loader does not read it")
    (good / "__pycache__/new.pyc").write_bytes(b"\0")
    assert pipeline_fingerprint(good) == second

    (good / "01_schema/0099_new.yaml").write_text("x")
    assert pipeline_fingerprint(good) != second


def test_load_unit_module_imports_by_path(good: Path, tmp_path: Path) -> None:
    pipeline = load_pipeline(good)
    unit = pipeline.unit("backfill-prices")

    module = load_unit_module(pipeline, unit)

    assert module.apply(None) == 42 and callable(module.rollback)
    assert module.__name__ == "flamingock_units.inventory_main.backfill_prices"
    assert module_name(pipeline, unit) not in sys.modules


def test_load_unit_module_keeps_pipelines_apart(tmp_path: Path) -> None:
    one = load_pipeline(build(tmp_path / "one", {"0001_u.py": PY_UNIT}))
    two = load_pipeline(build(tmp_path / "two", {"0001_u.py": PY_UNIT.replace("42", "7")}))

    first = load_unit_module(one, one.unit("backfill-prices"))
    second = load_unit_module(two, two.unit("backfill-prices"))

    assert (first.apply(None), second.apply(None)) == (42, 7)


def test_load_unit_module_import_error_names_the_file(tmp_path: Path) -> None:
    source = "ID = 'a'\nAUTHOR = 'x'\nraise RuntimeError('boom')\ndef apply(ctx): pass\n"
    pipeline = load_pipeline(build(tmp_path / "p", {"0001_a.py": source}))

    with pytest.raises(ConfigurationError, match=r"0001_a\.py.*RuntimeError: boom") as caught:
        load_unit_module(pipeline, pipeline.unit("a"))

    assert isinstance(caught.value.__cause__, RuntimeError)


def test_non_compensable_template_unit_warns(tmp_path: Path) -> None:
    unit = "id: a\nauthor: x\ntemplate: sql\ntransactional: false\napply: {statements: SELECT 1}\n"
    root = pipeline_with(tmp_path, {"0001_a.yaml": unit})

    report = validate_pipeline(root)

    assert report.errors == []
    assert report.warnings == [
        ValidationIssue("0001_a.yaml", "not compensable: a failure needs manual intervention; add 'rollback:'")
    ]


def test_yaml_python_tags_are_refused(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {"0001_a.yaml": "id: !!python/object/apply:os.system ['true']\n"})

    assert "unsupported YAML at line 1" in messages(root, "0001_a.yaml")


def test_deeply_nested_json_is_an_error(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {"0001_a.json": "[" * 100_000 + "]" * 100_000})

    assert "nested too deeply" in messages(root, "0001_a.json")


def test_non_literal_id_is_reported_once(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {"0001_a.py": "ID = f'{1}'\nAUTHOR = 'x'\ndef apply(ctx): pass\n"})

    assert [issue.message.split(":")[0] for issue in issues_of(root)] == ["field 'ID' (line 1)"]


def test_symlinked_pipeline_folder_takes_the_link_name(tmp_path: Path) -> None:
    real = build(tmp_path / "real_v2", {"0001_a.py": PY_UNIT})
    (tmp_path / "catalog").symlink_to(real, target_is_directory=True)

    pipeline = load_pipeline(tmp_path / "catalog")

    assert (pipeline.id, pipeline.path) == ("catalog", real.resolve())


def test_symlink_loops_are_errors(tmp_path: Path) -> None:
    unit = "id: a\nauthor: x\ntemplate: sql\napply: {file: files/loop.sql}\n"
    root = pipeline_with(tmp_path, {"0001_a.yaml": unit, "files/keep.txt": ""})
    (root / "0002_b.yaml").symlink_to("0002_b.yaml")
    (root / "files/loop.sql").symlink_to("loop.sql")

    assert "leads outside the pipeline folder (or loops)" in messages(root, "0002_b.yaml")
    assert "field 'apply.file'" in messages(root, "0001_a.yaml")
    assert pipeline_fingerprint(root)


def test_special_file_is_not_opened(tmp_path: Path) -> None:
    root = pipeline_with(tmp_path, {})
    os.mkfifo(root / "0001_pipe.yaml")

    assert "not a regular file" in messages(root, "0001_pipe.yaml")
