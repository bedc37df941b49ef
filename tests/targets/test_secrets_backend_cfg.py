"""Reading ``[secrets] backend`` from airflow.cfg without configparser: the same answer, cheaper."""

from __future__ import annotations

import configparser
import io
import subprocess
import sys
from pathlib import Path

import pytest

from flamingock_provider.airflow_config import configured_value

CFG = """\
[core]
# backend = not.this.Section
dags_folder = /dags

[secrets]
# backend = commented.Out
backend_kwargs =
backend = {value}
  continued on the next line

[workers]
backend = another.Section
"""


def configparser_value(text: str) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser.get("secrets", "backend", fallback="").strip()


@pytest.mark.parametrize(
    "value", ["", "  ", "my.Backend", "airflow.providers.amazon.aws.secrets.SecretsManagerBackend"]
)
def test_reads_what_configparser_reads(value: str) -> None:
    text = CFG.format(value=value)
    assert configured_value(text, "secrets", "backend") == configparser_value(text)


def test_absent_section_or_option_is_empty() -> None:
    assert configured_value("[core]\nbackend = x\n", "secrets", "backend") == ""
    assert configured_value("[secrets]\nbackend_kwargs = {}\n", "secrets", "backend") == ""


@pytest.mark.slow
def test_airflows_own_generated_config_has_no_backend(tmp_path: Path) -> None:
    """The airflow.cfg Airflow writes in a new home: no custom backend, as configparser reads it too."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "config", "list", "--defaults"],
        env={"AIRFLOW_HOME": str(tmp_path), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    text = (tmp_path / "airflow.cfg").read_text()
    assert configured_value(text, "secrets", "backend") == configparser_value(text) == ""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    parser.set("secrets", "backend", "my.Backend")
    written = io.StringIO()
    parser.write(written)
    with_backend = written.getvalue()
    assert configured_value(with_backend, "secrets", "backend") == configparser_value(with_backend) == "my.Backend"
