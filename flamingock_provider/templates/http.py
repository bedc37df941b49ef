"""The ``http.request`` template: one request through an Airflow HTTP connection, and its rollback.

::

    template: http.request
    target: catalog_api                  # an http connection: base URL, credentials, default headers
    apply:
      method: PUT
      endpoint: /v1/datasets/orders      # relative to the connection's host
      json: {retention_days: 30}         # or data: (a string or form fields)
      headers: {X-Team: lake}            # no credentials here: they belong in the connection
      expect_status: [200, 201]          # default: any 2xx
    rollback:
      method: DELETE
      endpoint: /v1/datasets/orders
      expect_status: [204, 404]

Not transactional, and no rollback is derived: a unit without ``rollback:`` is not compensable. The
rollback request undoes a completed apply only: after a failed apply (an unexpected status, no answer)
it is not sent, since it could remove what another client created (a 409 "already exists").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flamingock_provider.core.context import ChangeContext
from flamingock_provider.core.template import Template
from flamingock_provider.exceptions import ConfigurationError

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_SECRET_HEADER = re.compile(r"authorization|cookie|token|secret|password|api[-_]?key", re.IGNORECASE)
Problems = list[str]


def _templated(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _check_method(where: str, payload: Mapping[str, Any]) -> Problems:
    method = payload.get("method")
    if isinstance(method, str) and (method.upper() in METHODS or _templated(method)):
        return []
    return [f"field '{where}.method': {method!r} is not one of {', '.join(sorted(METHODS))}"]


def _check_endpoint(where: str, payload: Mapping[str, Any]) -> Problems:
    endpoint = payload.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        return [f"field '{where}.endpoint': expected a path such as /v1/items, got {endpoint!r}"]
    if "://" in endpoint:
        return [f"field '{where}.endpoint': {endpoint!r} is a full URL; put the host in the connection, the path here"]
    return []


def _check_headers(where: str, payload: Mapping[str, Any]) -> Problems:
    headers = payload.get("headers", {})
    if not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values()):
        return [f"field '{where}.headers': expected a mapping of header name to text"]
    return [
        f"field '{where}.headers.{name}': credentials must not live in a change file; put them in the http "
        f"connection (login/password, or headers in its extras)"
        for name in headers
        if _SECRET_HEADER.search(str(name))
    ]


def _check_status(where: str, payload: Mapping[str, Any]) -> Problems:
    value = payload.get("expect_status", 200)
    codes = value if isinstance(value, list) else [value]
    if codes and all(isinstance(c, int) and 100 <= c <= 599 for c in codes):
        return []
    return [f"field '{where}.expect_status': expected a status code or a list of them, got {value!r}"]


def _check_timeout(where: str, payload: Mapping[str, Any]) -> Problems:
    value = payload.get("timeout", 60)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return []
    return [f"field '{where}.timeout': expected a positive number of seconds, got {value!r}"]


def _check_body(where: str, payload: Mapping[str, Any]) -> Problems:
    if "json" in payload and "data" in payload:
        return [f"field '{where}': give 'json' or 'data', not both"]
    data = payload.get("data")
    if data is not None and not isinstance(data, (str, Mapping)):
        return [f"field '{where}.data': expected text or a mapping of form fields, got {data!r}"]
    return []


def check_request(where: str, payload: Mapping[str, Any]) -> Problems:
    """Every problem of one request payload (``apply`` or ``rollback``)."""
    problems = _check_method(where, payload) + _check_endpoint(where, payload) + _check_headers(where, payload)
    problems += _check_status(where, payload) + _check_timeout(where, payload)
    return problems + _check_body(where, payload)


class HttpRequestTemplate(Template):
    name = "http.request"
    target_kind = "http"
    apply_keys = frozenset({"method", "endpoint", "json", "data", "headers", "expect_status", "timeout"})
    required_apply_keys = frozenset({"method", "endpoint"})

    def validate(self, apply: Mapping[str, Any], rollback: Mapping[str, Any] | None) -> list[str]:
        problems = super().validate(apply, rollback) + check_request("apply", apply)
        if rollback is not None:
            missing = [k for k in sorted(self.required_apply_keys) if k not in rollback]
            problems += [f"field 'rollback.{k}': required by template 'http.request'" for k in missing]
            problems += [] if missing else check_request("rollback", rollback)
        return problems

    def risk(self, apply: Mapping[str, Any], *, dialect: str | None = None) -> list[tuple[str, str]]:
        method = str(apply.get("method", "")).upper()
        label = f"{method} {apply.get('endpoint')}"
        if method == "DELETE":
            return [("destructive", f"{label}: an HTTP DELETE")]
        if method in ("PUT", "PATCH"):
            return [("rewrite", f"{label}: replaces or changes an existing resource")]
        if method in ("GET", "HEAD", "OPTIONS"):
            return [("safe", f"{label}: reads only")]
        return [
            ("unknown", f"{label}: the API decides what a {method or 'templated'} request changes; declare 'risk:'")
        ]

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        response = _send(ctx, payload)
        return {"status": response.status_code}

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        if rollback is None:
            raise ConfigurationError(
                f"change {ctx.change.id!r}: http.request derives no rollback; give 'rollback: {{method, endpoint}}'"
            )
        if undo_state is None:  # the apply did not complete: undoing it could hit what it did not create
            ctx.log.warning(
                "change %s: no completed request recorded; rollback request not sent, check the API", ctx.change.id
            )
            return
        _send(ctx, rollback)


def _send(ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
    from flamingock_provider.targets.http import HttpTargetSession

    session = ctx.target_session
    if not isinstance(session, HttpTargetSession):
        kind = session.kind if session is not None else "none"
        raise ConfigurationError(
            f"change {ctx.change.id!r}: template 'http.request' needs an http target, got {kind!r}; point 'target:' "
            f"at an http connection"
        )
    status = payload.get("expect_status")
    return session.request(
        str(payload["method"]),
        str(payload["endpoint"]),
        json=payload.get("json"),
        data=payload.get("data"),
        headers=payload.get("headers"),
        expect_status=None if status is None else [int(s) for s in (status if isinstance(status, list) else [status])],
        timeout=float(payload["timeout"]) if "timeout" in payload else None,
    )
