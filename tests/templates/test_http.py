"""The http.request template against a local recording API: requests, rollbacks, secrets kept out."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from flamingock_provider import commands
from tests.fixtures.aws_pipelines import pipeline, unit
from tests.fixtures.http_api import LOGIN, PASSWORD, HttpApi

REGISTER = {
    "method": "POST",
    "endpoint": "/api/v1/sources",
    "json": {"name": "lake-raw", "kind": "s3"},
    "headers": {"X-Team": "lake"},
    "expect_status": [200, 201],
}
UNREGISTER = {"method": "DELETE", "endpoint": "/api/v1/sources/lake-raw", "expect_status": [204, 404]}


def http_unit(unit_id: str, apply: Any, rollback: Any = None) -> str:
    extra = {"rollback": rollback} if rollback is not None else {}
    return unit(unit_id, "http.request", apply, target="api", **extra)


def test_request_uses_the_connection_and_undo_sends_the_rollback_request(tmp_path: Path, http_api: HttpApi) -> None:
    http_api.respond("POST", "/api/v1/sources", 201, {"id": 7})
    http_api.respond("DELETE", "/api/v1/sources/lake-raw", 204)
    pipe = pipeline(tmp_path / "p", {"0001_reg.yaml": http_unit("reg", REGISTER, UNREGISTER)}, dynamo_audit=False)
    assert commands.apply(pipe)["applied"] == ["reg"]
    [sent] = http_api.requests
    assert (sent.method, sent.path, sent.json()) == ("POST", "/api/v1/sources", {"name": "lake-raw", "kind": "s3"})
    assert sent.headers["X-Team"] == "lake" and sent.headers["X-Tenant"] == "lake"  # unit + connection extras
    assert sent.headers["Authorization"] == "Basic " + base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()
    applied = commands.history(pipe)["entries"][-1]
    assert applied["state"] == "APPLIED" and applied["undo_state"] == [{"status": 201}]
    assert commands.undo(pipe, last=1)["rolled_back"] == ["reg"]
    assert http_api.calls()[-1] == ("DELETE", "/api/v1/sources/lake-raw")


def test_an_unexpected_status_fails_the_unit_and_compensates_without_leaking_secrets(
    tmp_path: Path, http_api: HttpApi, caplog: pytest.LogCaptureFixture
) -> None:
    http_api.respond("POST", "/api/v1/sources", 409, {"error": "exists"})
    pipe = pipeline(tmp_path / "p", {"0001_reg.yaml": http_unit("reg", REGISTER, UNREGISTER)}, dynamo_audit=False)
    with caplog.at_level(logging.DEBUG):
        result = commands.apply(pipe)
    assert result["failed"]["id"] == "reg" and "answered 409, expected 200, 201" in result["failed"]["error"]
    assert result["compensated"] == ["reg"]
    assert http_api.calls() == [("POST", "/api/v1/sources")]  # no DELETE of a source this run did not create
    states = [e["state"] for e in commands.history(pipe)["entries"]]
    assert states == ["STARTED", "FAILED", "ROLLED_BACK"]
    audit = json.dumps(commands.history(pipe))
    encoded = base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()
    for secret in (PASSWORD, encoded):
        assert secret not in audit and secret not in caplog.text


def test_data_and_query_params(tmp_path: Path, http_api: HttpApi) -> None:
    apply = {"method": "PUT", "endpoint": "/api/v1/settings", "data": "retention=30"}
    pipe = pipeline(tmp_path / "p", {"0001_s.yaml": http_unit("s", apply)}, dynamo_audit=False)
    commands.apply(pipe)
    assert http_api.requests[-1].body == b"retention=30" and http_api.requests[-1].method == "PUT"


def test_a_unit_without_rollback_is_valid_but_not_compensable(tmp_path: Path) -> None:
    pipe = pipeline(tmp_path / "p", {"0001_reg.yaml": http_unit("reg", REGISTER)}, dynamo_audit=False)
    doc = commands.validate(pipe)
    assert doc["ok"] and "not compensable" in doc["warnings"][0]["message"]


@pytest.mark.parametrize(
    ("apply", "rollback", "message"),
    [
        ({**REGISTER, "headers": {"Authorization": "Bearer abc"}}, None, "credentials must not live in a change file"),
        ({**REGISTER, "headers": {"X-Api-Key": "abc"}}, None, "credentials must not live"),
        ({**REGISTER, "endpoint": "https://api.example.com/x"}, None, "full URL"),
        ({**REGISTER, "method": "FETCH"}, None, "'FETCH' is not one of"),
        ({**REGISTER, "expect_status": "ok"}, None, "expect_status"),
        (REGISTER, {"method": "DELETE"}, "field 'rollback.endpoint': required"),
        ({**REGISTER, "data": "x"}, None, "'json' or 'data', not both"),
        ({**REGISTER, "timeout": 0}, None, "positive number of seconds"),
    ],
)
def test_payload_errors_are_reported_at_parse_time(tmp_path: Path, apply: Any, rollback: Any, message: str) -> None:
    pipe = pipeline(tmp_path / "p", {"0001_x.yaml": http_unit("x", apply, rollback)}, dynamo_audit=False)
    doc = commands.validate(pipe)
    assert not doc["ok"] and any(message in e["message"] for e in doc["errors"]), doc["errors"]


def test_http_targets_refuse_aws_clients_and_transactions(tmp_path: Path, http_api: HttpApi) -> None:
    code = (
        "ID = 'py'\nAUTHOR = 'bob'\nTARGET = 'api'\n"
        "def apply(ctx):\n"
        "    ctx.target.request('POST', '/api/v1/ping', json={'n': 1}, expect_status=[200])\n"
        "    ctx.client('s3')\n"
    )
    pipe = pipeline(tmp_path / "p", {"0001_py.py": code}, dynamo_audit=False)
    result = commands.apply(pipe)
    assert http_api.calls() == [("POST", "/api/v1/ping")]
    assert result["failed"]["id"] == "py" and "needs an 'aws' connection" in result["failed"]["error"]
    assert commands.history(pipe)["entries"][0]["tx_strategy"] == "NON_TX"
