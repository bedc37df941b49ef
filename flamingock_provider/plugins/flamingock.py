"""The ``flamingock`` Airflow plugin: the Flamingock view and its entry in the navigation bar.

Registered through the ``airflow.plugins`` entry point (providers' own plugin lists are read only
when ``[core] lazy_discover_providers`` is off). Airflow shows the view in an iframe at
``/plugin/flamingock``; the page itself is served at ``/flamingock/``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from flamingock_provider.plugins import run_notes
from flamingock_provider.plugins.view import URL_PREFIX, create_app

# A pink "F" badge, inline so that the navigation bar needs no extra request.
ICON = (
    "data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24'>"
    "<circle cx='12' cy='12' r='11' fill='%23e85d9a'/><path d='M8 6h8v2.4h-5.4v2.6h4.6v2.4h-4.6V18H8z' "
    "fill='white'/></svg>"
)


class FlamingockPlugin(AirflowPlugin):
    """Add the Flamingock view to the api-server and a "Flamingock" entry to the navigation bar."""

    name = "flamingock"
    listeners = [run_notes]  # each run's note says what it does (set in the scheduler as the run starts)
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Flamingock"}]
    external_views = [
        {
            "name": "Flamingock",
            "href": f"{URL_PREFIX.lstrip('/')}/",
            "url_route": "flamingock",
            "destination": "nav",
            "nav_top_level": True,
            "icon": ICON,
        }
    ]
