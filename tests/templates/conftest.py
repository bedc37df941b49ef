"""Fixtures of the template tests: the real servers their targets run on."""

from __future__ import annotations

import pytest

from tests.fixtures.kafka_server import kafka, kafka_server  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes over ~10 s (e.g. starts CLI processes)")
