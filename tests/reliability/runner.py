"""Runner processes of the reliability suite: a fork server, pause points and an injectable clock.

``python -m tests.reliability.runner`` (started by :class:`tests.reliability.pool.RunnerPool`) imports
the CLI, the stores, the targets and Airflow's hooks once, then forks one child per request. Each child
is a real ``flamingock`` process: it runs ``flamingock_provider.cli.main.main(argv)`` with its own
environment, working directory, stdout and stderr, and exits with the CLI's exit code. A child starts in
milliseconds instead of the 2-4 s an Airflow import costs, so N runners really start together.

Test-only knobs, read by the child from its own environment (the product never reads them):

- ``FLAMINGOCK_TEST_CLOCK_SKEW=<seconds>`` shifts ``time.time()`` in that process only. The SQLite and
  DynamoDB stores take expiry from it (``clock=time.time``, bound when they are imported, hence the
  patch before any import); ``time.monotonic()`` and the servers' clocks stay true.
- ``FLAMINGOCK_TEST_PAUSE=<change id>:<point>`` with ``FLAMINGOCK_TEST_SIGNALS=<folder>``: at that
  point the runner writes ``<folder>/ready`` (its pid) and waits until ``<folder>/go`` exists. Points:
  ``before-write`` / ``after-write`` (called by the test's own unit files through :func:`checkpoint`)
  and ``before-<STATE>`` / ``after-<STATE>`` around the engine's audit writes (``before-APPLIED`` of a
  TX_SEPARATE unit is after its commit). While it waits, the test SIGKILLs it, SIGSTOPs it or stops a
  server: the runner only stands still, it never fakes a fault.

Protocol (one JSON document per line): requests ``{"argv", "env", "cwd", "stdout", "stderr"}`` on
stdin; replies ``{"pid": n}`` (one per request, in order) and ``{"exited": pid, "status": code}``
(negative: killed by that signal) on stdout. The server exits when its stdin closes.
"""

from __future__ import annotations

import json
import os
import select
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

SKEW_ENV = "FLAMINGOCK_TEST_CLOCK_SKEW"
PAUSE_ENV = "FLAMINGOCK_TEST_PAUSE"
SIGNALS_ENV = "FLAMINGOCK_TEST_SIGNALS"
READY = "ready"
GO = "go"
PAUSE_LIMIT_S = 900.0  # a paused runner nobody resumes carries on eventually: never a hung suite
REPO = Path(__file__).resolve().parents[2]

# Modules a runner may need: imported once in the server, shared by every child (copy-on-write).
WARM_MODULES = (
    "flamingock_provider.cli.main",
    "flamingock_provider.commands",
    "flamingock_provider.stores.sqlite",
    "flamingock_provider.stores.mongo",
    "flamingock_provider.stores.dynamodb",
    "flamingock_provider.stores.redis_lease",
    "flamingock_provider.targets.sql",
    "flamingock_provider.targets.mongo",
    "flamingock_provider.targets.aws",
    "flamingock_provider.targets.http",
    "flamingock_provider.templates.sql",
    "flamingock_provider.templates.mongo",
    "flamingock_provider.templates.dynamodb",
    "flamingock_provider.templates.http",
    "airflow.providers.mongo.hooks.mongo",
    "airflow.providers.amazon.aws.hooks.base_aws",
    "airflow.providers.redis.hooks.redis",
    "airflow.providers.http.hooks.http",
    "boto3",
    "pymongo",
    "redis",
)


def checkpoint(change_id: str, point: str) -> None:
    """Stand still at ``point`` of change ``change_id`` when the test asked for it (else return at once)."""
    if os.environ.get(PAUSE_ENV) != f"{change_id}:{point}":
        return
    folder = Path(os.environ[SIGNALS_ENV])
    (folder / READY).write_text(str(os.getpid()))
    deadline = time.monotonic() + PAUSE_LIMIT_S
    while not (folder / GO).exists() and time.monotonic() < deadline:
        time.sleep(0.01)


# -- the child ------------------------------------------------------------------------------------

_skew = [0.0]


def _install_clock() -> None:
    """Make ``time.time`` skewable before anything binds it (the server's own offset stays 0)."""
    real: Callable[[], float] = time.time

    def skewed() -> float:
        return real() + _skew[0]

    time.time = skewed


def _pause_around_audit_writes() -> None:
    """Offer ``before-<STATE>`` / ``after-<STATE>`` pause points around every audit write."""
    from flamingock_provider.core.executor import UnitExecutor

    original = UnitExecutor.record

    def record(self: UnitExecutor, unit: Any, state: Any, action: Any, **kwargs: Any) -> Any:
        checkpoint(unit.id, f"before-{state.value}")
        entry = original(self, unit, state, action, **kwargs)
        checkpoint(unit.id, f"after-{state.value}")
        return entry

    UnitExecutor.record = record  # type: ignore[method-assign]


def _redirect(fd: int, path: str, flags: int) -> None:
    target = os.open(path, flags, 0o644)
    os.dup2(target, fd)
    os.close(target)


def _child(request: dict[str, Any], reply_fd: int) -> None:
    """Become one ``flamingock`` process; never returns."""
    code = 1
    try:
        os.close(reply_fd)
        _redirect(0, os.devnull, os.O_RDONLY)
        _redirect(1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        _redirect(2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own descriptors
        sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
        os.environ.clear()
        os.environ.update(request["env"])
        _skew[0] = float(os.environ.get(SKEW_ENV) or 0)
        os.chdir(request["cwd"])
        if os.environ.get(PAUSE_ENV):
            _pause_around_audit_writes()
        from flamingock_provider.cli.main import main

        code = main(request["argv"])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


# -- the server -----------------------------------------------------------------------------------


def _send(fd: int, message: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(message) + "\n").encode())


def _reap(reply_fd: int, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        _send(reply_fd, {"exited": pid, "status": os.waitstatus_to_exitcode(status)})


def serve() -> None:
    """Warm the imports, then fork one runner per request line until stdin closes."""
    _install_clock()
    sys.path.insert(0, str(REPO))
    reply_fd = os.dup(1)
    os.dup2(2, 1)  # whatever an import prints must not corrupt the replies
    # The CLI imports Airflow inside ``redirect_stdout(sys.stderr)``: log handlers that Airflow's import
    # sets up capture stderr, keeping stdout for the JSON document. Import it the same way here.
    sys.stdout = sys.stderr
    import importlib

    for name in WARM_MODULES:
        importlib.import_module(name)
    _send(reply_fd, {"ready": os.getpid()})
    children: set[int] = set()
    pending = b""
    while True:
        readable, _, _ = select.select([0], [], [], 0.02)
        if readable:
            chunk = os.read(0, 1 << 16)
            if not chunk:
                break
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _child(request, reply_fd)
                children.add(pid)
                _send(reply_fd, {"pid": pid})
        _reap(reply_fd, children)
    for pid in children:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


if __name__ == "__main__":
    serve()
