"""Provider registration: the entry point's dict, its modules, and `airflow providers list`."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import jsonschema

from flamingock_provider.get_provider_info import get_provider_info


def test_provider_info_is_valid_and_its_modules_import() -> None:
    import airflow

    info = get_provider_info()
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    assert info["package-name"] == "flamingock-provider"
    for key in ("hooks", "operators", "sensors"):
        for group in info[key]:
            for module in group["python-modules"]:
                importlib.import_module(module)
    for name in info.get("hook-class-names", []):
        module, _, cls = name.rpartition(".")
        assert hasattr(importlib.import_module(module), cls)


def test_entry_point_points_at_get_provider_info() -> None:
    found = [ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("flamingock_provider")]
    assert len(found) == 1 and found[0].load() is get_provider_info


def test_airflow_providers_list_sees_the_provider(airflow_db: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "flamingock-provider" in [p["package_name"] for p in json.loads(done.stdout)]
