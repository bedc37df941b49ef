"""``[core] hostname_callable`` of the Celery test workers: each reports its own name, like a machine."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    """The worker's name from ``FLAMINGOCK_TEST_HOSTNAME`` (the machine's name outside the test deployment)."""
    return os.environ.get("FLAMINGOCK_TEST_HOSTNAME") or socket.getfqdn()
