"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

PACKAGE_NAME = "flamingock-provider"


def get_provider_info() -> dict[str, Any]:
    """Return the provider-info dict; ``package-name`` equals the installed distribution name."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Flamingock",
        "description": "Versioned, audited, lock-protected change-as-code for the systems pipelines depend on.",
        "versions": ["0.1.0"],
    }
