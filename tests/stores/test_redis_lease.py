"""What only the Redis lease backend does, on a real redis-server (the shared contract is in
test_lease_contract.py): its keys and counter, server time, prefixes, threads racing, outages, construction."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from flamingock_provider.exceptions import ConfigurationError, StoreError
from flamingock_provider.stores.redis_lease import RedisLeaseBackend
from tests.fixtures.redis_server import RedisServer

UTC = timezone.utc


@pytest.fixture
def server(redis_server: RedisServer) -> RedisServer:
    redis_server.start()  # a no-op unless an outage test left it stopped
    return redis_server


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    client = server.client()
    yield client
    client.close()


@pytest.fixture
def backend(client: redis.Redis) -> RedisLeaseBackend:
    return RedisLeaseBackend(client)


def close_to(actual: datetime, expected: datetime, within_s: float) -> bool:
    return abs((actual - expected).total_seconds()) <= within_s


def test_extend_after_expiry_is_refused(backend: RedisLeaseBackend, key: str) -> None:
    """The key expires on the server: unlike the audit stores' leases, nothing is left to extend."""
    old = backend.acquire(key, "a", 0.5)
    assert old is not None
    time.sleep(1.5)  # a second past the expiry, on the server's clock
    assert backend.extend(key, "a", old.token, 30) is None


def test_current_reports_utc_times_from_the_server(backend: RedisLeaseBackend, key: str) -> None:
    assert backend.current(key) is None
    before = datetime.now(UTC)
    backend.acquire(key, "a", 30)
    info = backend.current(key)
    assert info is not None
    assert info.acquired_at.utcoffset() == timedelta(0)
    assert info.expires_at.utcoffset() == timedelta(0)
    # The server runs on this machine, so its clock and ours agree closely.
    assert close_to(info.acquired_at, before, 2)
    assert close_to(info.expires_at, datetime.now(UTC) + timedelta(seconds=30), 2)
    assert close_to(info.expires_at, info.acquired_at + timedelta(seconds=30), 0.5)
    assert info.to_dict()["expires_at"].endswith("+00:00")


def test_extend_pushes_expiry_on_the_server(backend: RedisLeaseBackend, client: redis.Redis, key: str) -> None:
    info = backend.acquire(key, "a", 5)
    assert info is not None
    extended = backend.extend(key, "a", info.token, 60)
    assert extended is not None
    assert close_to(extended.expires_at, datetime.now(UTC) + timedelta(seconds=60), 2)
    assert int(client.pttl(backend.lease_key(key))) > 50_000


def test_keys_lease_expires_and_counter_persists(backend: RedisLeaseBackend, client: redis.Redis, key: str) -> None:
    info = backend.acquire(key, "a", 30)
    assert info is not None
    assert backend.lease_key(key) == f"flamingock_lock:{{{key}}}"
    assert 0 < int(client.pttl(backend.lease_key(key))) <= 30_000
    assert client.ttl(backend.token_key(key)) == -1  # the counter never expires
    assert int(client.get(backend.token_key(key))) == info.token  # type: ignore[arg-type]


def test_prefix_separates_lock_namespaces(client: redis.Redis, key: str) -> None:
    team_a = RedisLeaseBackend(client, prefix="team_a")
    team_b = RedisLeaseBackend(client, prefix="team_b")
    assert team_a.acquire(key, "a", 30) is not None
    assert team_b.acquire(key, "b", 30) is not None
    assert client.exists(f"team_a:{{{key}}}") == 1


def test_works_with_decoded_responses(server: RedisServer, key: str) -> None:
    backend = RedisLeaseBackend(server.client(decode_responses=True))
    info = backend.acquire(key, "dag/run_ü", 30)
    assert info is not None
    assert info.owner == "dag/run_ü"
    assert backend.release(key, "dag/run_ü", info.token)


def test_invalid_ttl_is_refused(backend: RedisLeaseBackend, key: str) -> None:
    with pytest.raises(ConfigurationError, match="positive number of seconds"):
        backend.acquire(key, "a", 0)


# --- races: never two holders ------------------------------------------------------------------


def _hammer(port: int, key: str, owner: str, rounds: int) -> list[tuple[int, int, int]]:
    """Take and release the lease ``rounds`` times; return (start_ns, end_ns, token) of each hold."""
    backend = RedisLeaseBackend(redis.Redis(host="127.0.0.1", port=port, socket_timeout=5))
    holds: list[tuple[int, int, int]] = []
    while len(holds) < rounds:
        info = backend.acquire(key, owner, 10)
        if info is None:
            time.sleep(0.0005)
            continue
        start = time.monotonic_ns()
        time.sleep(0.001)
        end = time.monotonic_ns()
        if not backend.release(key, owner, info.token):
            raise AssertionError(f"{owner} lost a lease it held: token {info.token}")
        holds.append((start, end, info.token))
    return holds


def assert_one_holder_at_a_time(holds: list[tuple[int, int, int]]) -> None:
    """Check sorted (start_ns, end_ns, token) holds: no overlap, and tokens rise with time."""
    for (_, end, token), (start, _, next_token) in itertools.pairwise(holds):
        assert end <= start, "two holders held the lease at the same time"
        assert next_token > token, "the fencing token did not increase with each acquisition"


def test_threads_racing_never_hold_the_lease_together(server: RedisServer, key: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(_hammer, server.port, key, f"thread_{n}", 10) for n in range(8)]
        holds = sorted(hold for future in futures for hold in future.result())
    assert len(holds) == 80
    assert_one_holder_at_a_time(holds)


# --- outages -------------------------------------------------------------------------------------


def test_server_stopped_raises_store_error(server: RedisServer, key: str) -> None:
    # No retries: redis-py's default (10, with backoff) would only make each call slower to fail.
    no_retry = Retry(NoBackoff(), 0)
    backend = RedisLeaseBackend(server.client(socket_timeout=1, socket_connect_timeout=1, retry=no_retry))
    held = backend.acquire(key, "a", 30)
    assert held is not None
    server.stop()
    try:
        calls = [
            lambda: backend.acquire(key, "a", 30),
            lambda: backend.extend(key, "a", held.token, 30),
            lambda: backend.release(key, "a", held.token),
            lambda: backend.current(key),
            lambda: backend.force_release(key),
        ]
        for call in calls:
            with pytest.raises(StoreError) as caught:
                call()
            assert f"127.0.0.1:{server.port}" in str(caught.value)
            assert "check that the server is running" in str(caught.value)
            assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
    finally:
        server.start()
    # A restarted server has lost its script cache (and, without persistence, the lease): it works again.
    assert backend.acquire(key, "b", 30) is not None


def test_wrong_type_at_the_lease_key_is_a_store_error(
    backend: RedisLeaseBackend, client: redis.Redis, key: str
) -> None:
    client.set(backend.lease_key(key), "not a lease")
    with pytest.raises(StoreError, match="WRONGTYPE") as caught:
        backend.acquire(key, "a", 30)
    assert isinstance(caught.value.__cause__, redis.exceptions.ResponseError)


# --- construction ------------------------------------------------------------------------------


def test_from_conn_id_uses_the_airflow_redis_connection(
    server: RedisServer, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_FLAMINGOCK_TEST_REDIS", f"redis://{server.host}:{server.port}/")
    backend = RedisLeaseBackend.from_conn_id("flamingock_test_redis")
    assert "flamingock_test_redis" in backend.server
    info = backend.acquire(key, "a", 30)
    assert info is not None
    assert backend.release(key, "a", info.token)


def test_from_conn_id_names_a_missing_connection() -> None:
    with pytest.raises(ConfigurationError, match="'flamingock_no_such_redis'"):
        RedisLeaseBackend.from_conn_id("flamingock_no_such_redis")


def test_module_import_does_not_import_airflow() -> None:
    code = (
        "import sys, flamingock_provider.stores.redis_lease; "
        "sys.exit(any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
