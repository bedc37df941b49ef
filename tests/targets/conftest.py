"""Fixtures of the target tests: the real servers the targets open sessions on."""

from __future__ import annotations

from tests.fixtures.kafka_server import kafka, kafka_server  # noqa: F401
