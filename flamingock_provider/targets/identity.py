"""What system an Airflow connection reaches, so that two connection ids of one database compare equal.

A rollback rehearsal refuses a scratch connection whose identity is a real target's (SPEC §14): the
identity is the server and the database (SQL, MongoDB), the resolved file (SQLite), the endpoint,
region and access key (AWS: one account's S3 and DynamoDB are shared by every connection to it), the
bootstrap servers (Kafka), or the base URL (HTTP). Hosts are compared loosely (``localhost`` and
``127.0.0.1`` are one machine): a refusal too many is safe, a scratch run on production is not.
"""

from __future__ import annotations

import os
from typing import Any

from flamingock_provider.targets.sql_connect import DEFAULT_PORTS, dialect_of

Identity = tuple[str, ...]
_LOCAL_HOSTS = frozenset({"", "localhost", "127.0.0.1", "::1", "0.0.0.0"})
_DEFAULT_PORTS = {**DEFAULT_PORTS, "mongo": 27017, "http": 80, "https": 443}


def connection_identity(conn: Any, database: str | None = None) -> Identity:
    """Return the identity of ``conn``; ``database`` is a target's own ``database:`` (MongoDB), if any."""
    kind = (conn.conn_type or "").lower()
    dialect = dialect_of(kind)
    if dialect == "sqlite":
        return ("sqlite", os.path.realpath(str(conn.host or conn.schema or "")))
    extra = dict(getattr(conn, "extra_dejson", None) or {})
    if kind == "aws":
        return ("aws", str(extra.get("endpoint_url") or ""), str(extra.get("region_name") or ""), conn.login or "")
    if kind == "kafka":
        servers = str(extra.get("bootstrap.servers") or "")
        return ("kafka", ",".join(sorted(_host_port(s, 9092) for s in servers.split(",") if s.strip())))
    family = dialect if dialect in ("postgres", "mysql") else kind
    port = conn.port or _DEFAULT_PORTS.get(family, 0)
    return (family, _host(conn.host), str(port), database or conn.schema or "")


def _host(host: str | None) -> str:
    name = (host or "").strip().lower()
    return "localhost" if name in _LOCAL_HOSTS else name


def _host_port(server: str, default: int) -> str:
    host, _, port = server.strip().rpartition(":")
    if not host:
        host, port = port, str(default)
    return f"{_host(host)}:{port}"
