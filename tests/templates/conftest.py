"""Server fixtures of the template tests: SecantusDB (MongoDB), moto (DynamoDB, S3) and the HTTP API."""

from __future__ import annotations

from tests.fixtures.http_api import http_api, http_api_server  # noqa: F401
from tests.fixtures.mongo_server import mongo_conn, mongo_server  # noqa: F401
from tests.fixtures.moto_server import moto, moto_server  # noqa: F401
