"""verification/check_mapping.py: a model step whose anchor left its function fails the build (issue 21)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _checker():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("check_mapping", ROOT / "verification" / "check_mapping.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_mapping"] = module
    spec.loader.exec_module(module)
    return module


def _readme(tmp_path: Path, rows: list[str]) -> Path:
    head = "| model step | file | function | line | anchor | legacy |\n| --- | --- | --- | --- | --- | --- |\n"
    path = tmp_path / "README.md"
    path.write_text("<!-- mapping:begin -->\n" + head + "\n".join(rows) + "\n<!-- mapping:end -->\n")
    return path


LEASE = "`flamingock_provider/core/lease.py`"


def test_the_repository_table_matches_the_code() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "verification" / "check_mapping.py")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr


def test_an_anchor_found_in_its_function_passes_with_its_line(tmp_path: Path) -> None:
    check = _checker()
    rows = check.parse(
        _readme(tmp_path, [f"| deadline | {LEASE} | `Lease._hold` | 1 | `started + self.ttl * 0.9` | |"])
    )
    report, errors, lines = check.check(rows)
    assert errors == []
    source = (ROOT / "flamingock_provider/core/lease.py").read_text().splitlines()
    assert "started + self.ttl * 0.9" in source[int(lines["deadline"]) - 1]
    assert "moved: the table says 1" in report[0]


def test_an_anchor_in_another_function_fails(tmp_path: Path) -> None:
    check = _checker()
    rows = check.parse(
        _readme(tmp_path, [f"| deadline | {LEASE} | `Lease.check` | 1 | `started + self.ttl * 0.9` | |"])
    )
    _, errors, _ = check.check(rows)
    assert len(errors) == 1 and "no longer contains" in errors[0]


def test_a_missing_function_fails_unless_its_legacy_anchor_matches(tmp_path: Path) -> None:
    check = _checker()
    missing = f"| x | {LEASE} | `Lease.gone` | 1 | `anything` |"
    _, errors, _ = check.check(check.parse(_readme(tmp_path, [missing + " |"])))
    assert len(errors) == 1 and "no function Lease.gone" in errors[0]
    report, errors, _ = check.check(
        check.parse(_readme(tmp_path, [missing + " `Lease._mark_lost: self._lost = why` |"]))
    )
    assert errors == [] and "PENDING" in report[0]
    _, errors, _ = check.check(check.parse(_readme(tmp_path, [missing + " `Lease._mark_lost: not there` |"])))
    assert len(errors) == 1


@pytest.mark.skipif(shutil.which("spin") is None or shutil.which("gcc") is None, reason="spin or gcc not installed")
def test_the_old_rule_model_produces_the_duplicate() -> None:
    out = subprocess.run(
        ["bash", str(ROOT / "verification" / "run_models.sh"), "old-rule"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "old-rule" in out.stdout and " found " in out.stdout


def test_update_rewrites_the_line_column_and_keeps_the_table(tmp_path: Path) -> None:
    check = _checker()
    readme = _readme(tmp_path, [f"| deadline | {LEASE} | `Lease._hold` | 1 | `started + self.ttl * 0.9` | |"])
    _, _, lines = check.check(check.parse(readme))
    check.update(readme, lines)
    rows = check.parse(readme)
    assert [r.line for r in rows] == [lines["deadline"]]
    assert readme.read_text().rstrip().endswith("\n<!-- mapping:end -->")
