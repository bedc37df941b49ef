"""Resolve Airflow connections, without importing Airflow when an ``AIRFLOW_CONN_*`` variable suffices.

Airflow looks a connection up in its secrets backends: a configured custom backend first, then
``AIRFLOW_CONN_<ID>`` environment variables, then the metadata database. When no custom backend is
configured and the variable exists, the answer is the variable: we parse it the way Airflow does
(URI or JSON) and skip the ~2 s Airflow import. Everything else goes through Airflow itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from flamingock_provider.airflow_config import airflow_cfg_value
from flamingock_provider.exceptions import ConfigurationError


@dataclass(frozen=True)
class EnvConnection:
    """The fields of an Airflow connection read from its environment variable."""

    conn_id: str
    conn_type: str
    host: str | None = None
    schema: str | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    port: int | None = None
    extra_dejson: dict[str, Any] = field(default_factory=dict)

    def get_hook(self) -> Any:
        """Return the provider hook for this connection (imports Airflow)."""
        return _airflow_connection(self.conn_id).get_hook()


def get_connection(conn_id: str) -> Any:
    """Return the connection ``conn_id``: an :class:`EnvConnection` when cheap, else Airflow's own."""
    raw = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if raw is not None and not _custom_secrets_backend():
        return parse_env_connection(conn_id, raw)
    return _airflow_connection(conn_id)


def offline_conn_type(conn_id: str) -> str | None:
    """The connection's type when it is known without a network call or an Airflow import, else None.

    Only an ``AIRFLOW_CONN_*`` variable answers (and only without a custom secrets backend, which
    Airflow would ask first); the metadata database or a secrets backend may be remote.
    """
    raw = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if raw is None or _custom_secrets_backend():
        return None
    try:
        return parse_env_connection(conn_id, raw).conn_type or None
    except (ConfigurationError, ValueError):
        return None


def parse_env_connection(conn_id: str, raw: str) -> EnvConnection:
    """Parse an ``AIRFLOW_CONN_*`` value (JSON or URI) as Airflow does."""
    text = raw.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigurationError(f"AIRFLOW_CONN_{conn_id.upper()} is not valid JSON: {err}") from err
        extra = data.get("extra") or {}
        return EnvConnection(
            conn_id,
            str(data.get("conn_type", "")).replace("-", "_"),
            data.get("host"),
            data.get("schema"),
            data.get("login"),
            data.get("password"),
            int(data["port"]) if data.get("port") else None,
            json.loads(extra) if isinstance(extra, str) else dict(extra),
        )
    return _parse_uri(conn_id, text)


def _parse_uri(conn_id: str, uri: str) -> EnvConnection:
    if "://" not in uri:
        raise ConfigurationError(
            f"AIRFLOW_CONN_{conn_id.upper()} is neither a URI (type://...) nor JSON; see Airflow's connection docs"
        )
    parts = urlsplit(uri)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    extra: dict[str, Any] = json.loads(query["__extra__"]) if "__extra__" in query else query
    return EnvConnection(
        conn_id,
        parts.scheme.replace("-", "_"),
        unquote(parts.hostname) if parts.hostname else None,
        unquote(parts.path[1:]) if parts.path else None,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
        parts.port,
        extra,
    )


@cache
def _custom_secrets_backend() -> bool:
    if os.environ.get("AIRFLOW__SECRETS__BACKEND"):
        return True
    return bool(airflow_cfg_value("secrets", "backend"))


def _airflow_connection(conn_id: str) -> Any:
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as err:
        raise ConfigurationError(
            f"Airflow connection {conn_id!r} not found ({type(err).__name__}: {err}); create it "
            f"(e.g. AIRFLOW_CONN_{conn_id.upper()}) or fix 'conn_id' in pipeline.yaml"
        ) from err


def get_variable(name: str) -> str | None:
    """Return the Airflow Variable ``name`` (None when unset): ``AIRFLOW_VAR_*`` first, as Airflow does."""
    raw = os.environ.get(f"AIRFLOW_VAR_{name.upper()}")
    if raw is not None and not _custom_secrets_backend():
        return raw
    try:
        from airflow.sdk import Variable

        value = Variable.get(name, default=None)
    except Exception as err:
        raise ConfigurationError(
            f"cannot read Airflow Variable {name!r} ({type(err).__name__}: {err}); set it (or AIRFLOW_VAR_"
            f"{name.upper()}) and check the metadata database is reachable"
        ) from err
    return None if value is None else str(value)
