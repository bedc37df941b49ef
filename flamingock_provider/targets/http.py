"""HTTP targets: requests through the Airflow HTTP connection (base URL, auth and default headers).

Credentials live only in the connection (login/password, or headers in its extras); nothing here
logs or reports request headers, and URLs in messages lose any ``user:password@`` part.
``ctx.target`` of a Python unit is the session itself: ``ctx.target.request("POST", "/x", json=...)``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from flamingock_provider.core.model import TargetConfig
from flamingock_provider.exceptions import ConfigurationError, FlamingockError

log = logging.getLogger("flamingock.http")

_USERINFO = re.compile(r"(://)[^/@\s]+@")
MAX_BODY_IN_ERROR = 500


def redact(text: str) -> str:
    """Drop ``user:password@`` from every URL in ``text``."""
    return _USERINFO.sub(r"\1***@", text)


class HttpStatusError(FlamingockError):
    """An HTTP request answered with a status the change did not expect."""

    def __init__(self, method: str, endpoint: str, status: int, expected: Iterable[int], body: str) -> None:
        self.method = method
        self.endpoint = endpoint
        self.status = status
        self.expected = list(expected)
        self.body = body
        expected = self.expected
        wanted = ", ".join(str(s) for s in expected) or "2xx"
        excerpt = redact(body[:MAX_BODY_IN_ERROR])
        super().__init__(
            f"{method} {endpoint} answered {status}, expected {wanted}; response: {excerpt!r}. Check the request "
            f"and the connection, or list the status in 'expect_status'"
        )

    def _fields(self) -> tuple[object, ...]:
        return (self.method, self.endpoint, self.status, self.expected, self.body)


class HttpTargetSession:
    """A unit's session on an ``http`` connection. Not transactional."""

    kind = "http"
    session = None
    supports_transactions = False

    def __init__(self, config: TargetConfig, conn_id: str) -> None:
        self.config = config
        self.conn_id = conn_id
        self._hook: Any = None

    @property
    def native(self) -> HttpTargetSession:
        return self

    @property
    def hook(self) -> Any:
        """An ``HttpHook`` on the connection (GET); :meth:`request` builds one per method."""
        if self._hook is None:
            self._hook = _http_hook("GET", self.conn_id)
        return self._hook

    def request(
        self,
        method: str,
        endpoint: str,
        *,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        expect_status: Iterable[int] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send one request; return the ``requests`` response, or raise HttpStatusError on another status."""
        hook = _http_hook(method, self.conn_id)
        extra = {"check_response": False, "timeout": timeout or 60}
        kwargs = {"json": json} if json is not None else {}
        try:
            response = hook.run(endpoint, data=data, headers=dict(headers or {}), extra_options=extra, **kwargs)
        except Exception as err:
            if isinstance(err, FlamingockError):
                raise
            # `from None`: the original message may carry a URL with credentials into the audit trace
            raise ConnectionError(
                f"{method.upper()} {endpoint} on connection {self.conn_id!r} failed: {type(err).__name__}: "
                f"{redact(str(err))}"
            ) from None
        expected = list(expect_status or [])
        ok = response.status_code in expected if expected else 200 <= response.status_code < 300
        log.info("%s %s -> %s", method.upper(), endpoint, response.status_code)
        if not ok:
            raise HttpStatusError(method.upper(), endpoint, response.status_code, expected, response.text or "")
        return response

    def client(self, service: str) -> NoReturn:
        raise ConfigurationError(
            f"target {self.config.name!r} is an HTTP connection: ctx.client({service!r}) needs an 'aws' connection; "
            f"use ctx.target.request(method, endpoint, ...) instead"
        )

    def begin(self) -> None:
        """HTTP has no transactions; the engine never opens one here."""

    def commit(self) -> None:
        """Nothing to commit."""

    def rollback(self) -> None:
        """Nothing to roll back: compensation runs the unit's ``rollback`` request."""

    def write_marker(self, pipeline: str, change_id: str, execution_id: str) -> NoReturn:
        raise ConfigurationError(f"target {self.config.name!r}: an HTTP API keeps no transaction marker")

    def has_marker(self, pipeline: str, change_id: str, execution_id: str) -> bool:
        return False

    def clear_marker(self, pipeline: str, change_id: str, execution_id: str) -> None:
        """No marker was ever written."""

    def close(self) -> None:
        self._hook = None


def _http_hook(method: str, conn_id: str) -> Any:
    try:
        from airflow.providers.http.hooks.http import HttpHook
    except ImportError as err:
        raise ConfigurationError(
            f"http connection {conn_id!r} needs the HTTP provider; install flamingock-provider[http] "
            f"(apache-airflow-providers-http)"
        ) from err
    return HttpHook(method=method.upper(), http_conn_id=conn_id)


def open_http_target(config: TargetConfig, conn: Any) -> HttpTargetSession:
    """Build a session on the Airflow ``http`` connection ``conn``."""
    return HttpTargetSession(config, conn.conn_id or config.conn_id)
