"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``).

Keep this module import-free: a failing provider entry point breaks every ``airflow`` command.
"""

from __future__ import annotations

from typing import Any

PACKAGE_NAME = "flamingock-provider"
INTEGRATION = "Flamingock"


def get_provider_info() -> dict[str, Any]:
    """Return the provider-info dict; ``package-name`` equals the installed distribution name."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Flamingock",
        "description": "Versioned, audited, lock-protected change-as-code for the systems pipelines depend on.",
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://www.flamingock.io/",
                "tags": ["software"],
            }
        ],
        "hooks": [{"integration-name": INTEGRATION, "python-modules": ["flamingock_provider.hooks.flamingock"]}],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "flamingock_provider.operators.plan",
                    "flamingock_provider.operators.apply",
                    "flamingock_provider.operators.rollback",
                    "flamingock_provider.operators.undo",
                    "flamingock_provider.operators.release",
                    "flamingock_provider.operators.complete",
                    "flamingock_provider.operators.rehearse",
                ],
            }
        ],
        "sensors": [{"integration-name": INTEGRATION, "python-modules": ["flamingock_provider.sensors.lock"]}],
        "triggers": [{"integration-name": INTEGRATION, "python-modules": ["flamingock_provider.triggers.lock"]}],
        # `airflow flamingock ...` (Airflow >= 3.2): a function returning the CLI command group
        "cli": ["flamingock_provider.cli.airflow_cli.get_cli_commands"],
    }
