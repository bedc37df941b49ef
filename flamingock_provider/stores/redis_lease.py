"""The pipeline lease in Redis: one Lua script per conditional write, expiry on the server's clock.

Keys, for pipeline ``inventory`` and the default prefix::

    flamingock_lock:{inventory}         hash {owner, token, acquired_s, acquired_us}, TTL = the lease
    flamingock_lock:{inventory}:token   INCR counter of fencing tokens; never expires

The braces are a Redis Cluster hash tag: both keys land in one slot, which a script touching both
needs (a ``{"cluster": true}`` connection would otherwise fail with CROSSSLOT). The counter outlives
the lease, so tokens only ever increase, also across release and expiry. Times come from the
server's ``TIME`` and the key's ``PTTL``, read inside the same script as the write.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import redis
from redis.commands.core import Script

from flamingock_provider.core.model import LeaseInfo
from flamingock_provider.exceptions import ConfigurationError, StoreError

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# snapshot() is the holder as the scripts return it: {owner, token, acquired_s, acquired_us, now_s,
# now_us, pttl_ms}; holds() is the owner-and-token check of extend and release.
_HELPERS = """
local function snapshot(key)
  local h = redis.call('HMGET', key, 'owner', 'token', 'acquired_s', 'acquired_us')
  local now = redis.call('TIME')
  return {h[1], h[2], h[3], h[4], now[1], now[2], redis.call('PTTL', key)}
end
local function holds(key, owner, token)
  local h = redis.call('HMGET', key, 'owner', 'token')
  return h[1] == owner and tonumber(h[2]) == tonumber(token)
end
"""

# KEYS: lease, counter. ARGV: owner, ttl_ms. Free (absent, so also expired) or same owner → take it.
_ACQUIRE = (
    _HELPERS
    + """
local holder = redis.call('HGET', KEYS[1], 'owner')
if holder and holder ~= ARGV[1] then return false end
local token = redis.call('INCR', KEYS[2])
local now = redis.call('TIME')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token, 'acquired_s', now[1], 'acquired_us', now[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return snapshot(KEYS[1])
"""
)

# KEYS: lease. ARGV: owner, token, ttl_ms.
_EXTEND = (
    _HELPERS
    + """
if not holds(KEYS[1], ARGV[1], ARGV[2]) then return false end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return snapshot(KEYS[1])
"""
)

# KEYS: lease. ARGV: owner, token.
_RELEASE = (
    _HELPERS
    + """
if not holds(KEYS[1], ARGV[1], ARGV[2]) then return 0 end
return redis.call('DEL', KEYS[1])
"""
)

# KEYS: lease. Read-only.
_CURRENT = (
    _HELPERS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return snapshot(KEYS[1])
"""
)

# KEYS: lease. Returns who held it.
_FORCE_RELEASE = (
    _HELPERS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local held = snapshot(KEYS[1])
redis.call('DEL', KEYS[1])
return held
"""
)


SOCKET_TIMEOUT_S = 10.0


class RedisLeaseBackend:
    """A :class:`~flamingock_provider.core.lease.LeaseBackend` on a Redis server."""

    def __init__(self, client: redis.Redis, *, prefix: str = "flamingock_lock") -> None:
        self.client = client
        self.prefix = prefix
        self.server = _describe(client)
        self._acquire = client.register_script(_ACQUIRE)
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)
        self._current = client.register_script(_CURRENT)
        self._force_release = client.register_script(_FORCE_RELEASE)

    @classmethod
    def from_conn_id(cls, conn_id: str) -> RedisLeaseBackend:
        """Build the backend on the client of the Airflow ``redis`` connection ``conn_id``."""
        from airflow.providers.redis.hooks.redis import RedisHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            client = RedisHook(redis_conn_id=conn_id).get_conn()
        except (AirflowNotFoundException, ValueError) as err:
            raise ConfigurationError(
                f"lock.conn_id {conn_id!r}: cannot use it as a Redis connection: {err}; define it as an "
                f"Airflow connection of type redis (e.g. AIRFLOW_CONN_{conn_id.upper()}=redis://host:6379/0)"
            ) from err
        # A partitioned server must fail a lease call, not hang it: the hook sets no timeouts.
        for option in ("socket_timeout", "socket_connect_timeout"):
            if client.connection_pool.connection_kwargs.get(option) is None:
                client.connection_pool.connection_kwargs[option] = SOCKET_TIMEOUT_S
        backend = cls(client)
        backend.server = f"{backend.server} (connection {conn_id!r})"
        return backend

    def lease_key(self, key: str) -> str:
        return f"{self.prefix}:{{{key}}}"

    def token_key(self, key: str) -> str:
        return f"{self.lease_key(key)}:token"

    def acquire(self, key: str, owner: str, ttl_s: float) -> LeaseInfo | None:
        """Take the lease if free, expired or held by ``owner``; increment the token. None if held."""
        keys = [self.lease_key(key), self.token_key(key)]
        reply = self._run("acquire", key, self._acquire, keys, [owner, _ttl_ms(ttl_s)])
        return _lease_info(key, reply)

    def extend(self, key: str, owner: str, token: int, ttl_s: float) -> LeaseInfo | None:
        """Push the expiry out if ``owner`` still holds ``token``; None otherwise."""
        args = [owner, token, _ttl_ms(ttl_s)]
        reply = self._run("extend", key, self._extend, [self.lease_key(key)], args)
        return _lease_info(key, reply)

    def release(self, key: str, owner: str, token: int) -> bool:
        """Free the lease if ``owner`` still holds ``token``; False otherwise."""
        reply = self._run("release", key, self._release, [self.lease_key(key)], [owner, token])
        return bool(reply)

    def current(self, key: str) -> LeaseInfo | None:
        """Return the live holder, or None when free or expired."""
        return _lease_info(key, self._run("read", key, self._current, [self.lease_key(key)], []))

    def current_many(self, keys: Sequence[str]) -> Mapping[str, LeaseInfo]:
        """The live holders of ``keys`` in one round trip (a pipeline of reads: a fleet's member leases)."""

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                self._current(keys=[self.lease_key(key)], args=[], client=pipe)
            return list(pipe.execute())

        replies = _translated(read, f"read the leases of {len(keys)} fleet members", self.server) if keys else []
        infos = (_lease_info(key, reply) for key, reply in zip(keys, replies, strict=True))
        return {info.key: info for info in infos if info is not None}

    def force_release(self, key: str) -> LeaseInfo | None:
        """Free the lease whoever holds it; return who held it."""
        reply = self._run("force-release", key, self._force_release, [self.lease_key(key)], [])
        return _lease_info(key, reply)

    def _run(self, what: str, key: str, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return _translated(lambda: script(keys=keys, args=args), f"{what} the lease of {key!r}", self.server)


def _translated(call: Callable[[], T], doing: str, server: str) -> T:
    """Run ``call``; turn a redis-py error into :class:`StoreError` naming the server."""
    try:
        return call()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as err:
        raise StoreError(
            f"Redis lease store {server} unreachable: could not {doing}: {type(err).__name__}: {err}; "
            f"check that the server is running and reachable from this worker, then run again"
        ) from err
    except redis.exceptions.RedisError as err:
        raise StoreError(
            f"Redis lease store {server} failed to {doing}: {type(err).__name__}: {err}; check the "
            f"server's logs and that nothing else writes the flamingock lock keys, then run again"
        ) from err


def _describe(client: Any) -> str:
    """Name the server a client talks to, for error messages (never its password)."""
    pool = getattr(client, "connection_pool", None)
    kwargs: dict[str, Any] = getattr(pool, "connection_kwargs", {}) or {}
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    if kwargs:
        return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    return "(cluster)" if hasattr(client, "get_nodes") else "(unknown server)"


def _ttl_ms(ttl_s: float) -> int:
    if not ttl_s > 0 or math.isinf(ttl_s):
        raise ConfigurationError(f"lease ttl must be a positive number of seconds, got {ttl_s!r}")
    return max(1, math.ceil(ttl_s * 1000))


def _lease_info(key: str, reply: Any) -> LeaseInfo | None:
    """Build a :class:`LeaseInfo` from a script's snapshot reply; None for a nil reply."""
    if not reply:
        return None
    owner, token, acquired_s, acquired_us, now_s, now_us, pttl_ms = reply
    return LeaseInfo(
        key=key,
        owner=owner.decode() if isinstance(owner, bytes) else str(owner),
        token=int(token),
        acquired_at=_server_time(acquired_s, acquired_us),
        expires_at=_expiry(_server_time(now_s, now_us), int(pttl_ms)),
    )


def _expiry(now: datetime, pttl_ms: int) -> datetime:
    # A negative PTTL is a lease key without expiry, which only an outside write makes: it never
    # expires, so say so (``flamingock unlock --force`` clears it).
    return now + timedelta(milliseconds=pttl_ms) if pttl_ms >= 0 else datetime.max.replace(tzinfo=timezone.utc)


def _server_time(seconds: bytes | str | int, micros: bytes | str | int) -> datetime:
    return _EPOCH + timedelta(seconds=int(seconds), microseconds=int(micros))


def open_redis_lease(conn_id: str) -> RedisLeaseBackend:
    """Build the Redis lease backend of the Airflow ``redis`` connection ``conn_id``."""
    return RedisLeaseBackend.from_conn_id(conn_id)
