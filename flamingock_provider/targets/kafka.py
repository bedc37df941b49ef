"""Kafka targets: confluent-kafka clients from an Airflow ``kafka`` connection; Kafka errors translated once.

The connection's extra is the client configuration (``bootstrap.servers``, ``security.protocol``,
``sasl.*``, ...): secrets stay in the connection, never in a unit. The clients are built by the Kafka
provider's own hooks, so its callback allow-list and managed-cloud OAuth apply here as in any DAG.
``ctx.target`` and ``ctx.client("admin")`` are an ``AdminClient``; ``ctx.client("producer")`` a ``Producer``.
Kafka has no transactions over admin operations: every unit on a kafka target is NON_TX.

Every ``KafkaException`` of a call made through :meth:`KafkaTargetSession.call` becomes one
:class:`~flamingock_provider.exceptions.TargetError` naming the broker's refusal (its error name, e.g.
``UNSUPPORTED_FEATURE``). Nothing here imports confluent_kafka or Airflow at module level: template
modules import this one at parse time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from flamingock_provider.core.model import TargetConfig
from flamingock_provider.core.suggest import did_you_mean
from flamingock_provider.exceptions import ConfigurationError, TargetError

if TYPE_CHECKING:
    from flamingock_provider.core.context import ChangeContext

T = TypeVar("T")
log = logging.getLogger("flamingock.kafka")

REQUEST_TIMEOUT_S = 30.0  # each admin request; librdkafka's own default, made explicit
FLUSH_TIMEOUT_S = 30.0  # what closing the session waits for a Python unit's unsent messages
SERVICES = ("admin", "producer")

# librdkafka's local codes (leading underscore) that mean "no broker answered", not "the broker refused"
_UNREACHABLE = frozenset({"_TRANSPORT", "_TIMED_OUT", "_ALL_BROKERS_DOWN", "_RESOLVE", "_MSG_TIMED_OUT"})
_ADVICE = {
    "TOPIC_ALREADY_EXISTS": "pick another topic name, or `flamingock fix` the change as applied if it is that topic",
    "UNKNOWN_TOPIC_OR_PART": "check the topic name, or create the topic first (kafka.create_topic)",
    "UNSUPPORTED_FEATURE": "this broker does not serve that API: make the change with the broker's own tools, then "
    "`flamingock fix` the change",
    "INVALID_CONFIG": "check the config keys and values against the broker's topic configs",
    "INVALID_PARTITIONS": "give a partition count the broker accepts (at least 1, more than the topic has)",
    "INVALID_REPLICATION_FACTOR": "give at most as many replicas as the cluster has brokers",
    "POLICY_VIOLATION": "the broker's topic policy refused it; ask the cluster's operators",
    "TOPIC_AUTHORIZATION_FAILED": "grant the connection's principal the topic ACL it needs",
    "CLUSTER_AUTHORIZATION_FAILED": "grant the connection's principal the cluster ACL it needs",
}
_DEFAULT_ADVICE = "check the change and the connection, then run again"


def translate(servers: str, doing: str, err: BaseException) -> TargetError:
    """One TargetError for a confluent-kafka error: what was refused, by which broker, its code, what to do."""
    kafka_error: Any = err.args[0] if err.args else None
    if not (hasattr(kafka_error, "name") and hasattr(kafka_error, "str")):
        return TargetError(f"Kafka at {servers}: could not {doing}: {type(err).__name__}: {err}; {_DEFAULT_ADVICE}")
    raw_name = str(kafka_error.name())
    name, detail = raw_name.lstrip("_"), str(kafka_error.str())
    if raw_name in _UNREACHABLE:
        return TargetError(
            f"Kafka unreachable at {servers}: could not {doing}: {name} ({detail}); check 'bootstrap.servers' in the "
            f"kafka connection's extra and that the broker is up, then run again",
            code=name,
        )
    advice = _ADVICE.get(name, _DEFAULT_ADVICE)
    return TargetError(f"Kafka broker {servers} refused to {doing}: {name} ({detail}); {advice}", code=name)


class KafkaClients:
    """The admin client and producer of one Airflow ``kafka`` connection, each built on first use."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self._hooks: dict[str, Any] = {}
        self._clients: dict[str, Any] = {}

    def hook(self, service: str = "admin") -> Any:
        if service not in self._hooks:
            self._hooks[service] = _new_hook(self.conn_id, service)
        return self._hooks[service]

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = _new_client(self.conn_id, service, self.hook(service))
        return self._clients[service]

    def built(self, service: str) -> Any:
        """The client of ``service`` if one was built, else None."""
        return self._clients.get(service)


def _new_hook(conn_id: str, service: str) -> Any:
    try:
        from airflow.providers.apache.kafka.hooks.client import KafkaAdminClientHook
        from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook
    except ImportError as err:
        raise ConfigurationError(
            f"kafka connection {conn_id!r} needs the Apache Kafka provider; install flamingock-provider[kafka] "
            f"(apache-airflow-providers-apache-kafka)"
        ) from err
    hook_class = KafkaProducerHook if service == "producer" else KafkaAdminClientHook
    return hook_class(kafka_config_id=conn_id)


def _new_client(conn_id: str, service: str, hook: Any) -> Any:
    from confluent_kafka import KafkaException

    try:
        return hook.get_producer() if service == "producer" else hook.get_conn
    except (KafkaException, ValueError) as err:
        raise ConfigurationError(
            f"kafka connection {conn_id!r}: cannot build a {service} client: {err}; its extra must hold valid "
            f"confluent-kafka settings, at least 'bootstrap.servers'"
        ) from err


class KafkaTargetSession:
    """A unit's session on a ``kafka`` connection. Not transactional; ``ctx.target`` is the AdminClient."""

    kind = "kafka"
    session = None
    supports_transactions = False

    def __init__(self, config: TargetConfig, clients: KafkaClients, servers: str, timeout_s: float) -> None:
        self.config = config
        self.clients = clients
        self.servers = servers
        self.timeout_s = timeout_s  # of each admin request

    @property
    def native(self) -> Any:
        return self.clients.client("admin")

    @property
    def hook(self) -> Any:
        """The connection's ``KafkaAdminClientHook`` (what a Python unit sees as ``ctx.hook``)."""
        return self.clients.hook("admin")

    def client(self, service: str) -> Any:
        if service not in SERVICES:
            raise ConfigurationError(
                f"target {self.config.name!r} is a Kafka connection: ctx.client({service!r}) is not a Kafka "
                f"client{did_you_mean(service, SERVICES)}"
            )
        return self.clients.client(service)

    def call(self, doing: str, call: Callable[[], T]) -> T:
        """Run one Kafka request; a KafkaException becomes a TargetError naming the refusal."""
        from confluent_kafka import KafkaException

        try:
            return call()
        except KafkaException as err:
            raise translate(self.servers, doing, err) from err

    def begin(self) -> None:
        """Kafka admin operations have no transactions; the engine never opens one here."""

    def commit(self) -> None:
        """Nothing to commit."""

    def rollback(self) -> None:
        """Nothing to roll back: compensation runs the template's derived rollback."""

    def write_marker(self, pipeline: str, change_id: str, execution_id: str) -> None:
        raise ConfigurationError(f"target {self.config.name!r}: a Kafka cluster keeps no transaction marker")

    def has_marker(self, pipeline: str, change_id: str, execution_id: str) -> bool:
        return False

    def clear_marker(self, pipeline: str, change_id: str, execution_id: str) -> None:
        """No marker was ever written."""

    def close(self) -> None:
        """Deliver what a Python unit produced and did not flush; warn about what could not be sent."""
        producer = self.clients.built("producer")
        if producer is not None:
            left = producer.flush(FLUSH_TIMEOUT_S)
            if left:
                log.warning("target %s: %d produced messages were not delivered", self.config.name, left)


def kafka_session(ctx: ChangeContext, template: str) -> KafkaTargetSession:
    """The unit's kafka session, or a ConfigurationError naming the unit and the template."""
    session = ctx.target_session
    if not isinstance(session, KafkaTargetSession):
        kind = session.kind if session is not None else "none"
        raise ConfigurationError(
            f"change {ctx.change.id!r}: template {template!r} needs a kafka target, got {kind!r}; point "
            f"'target:' at a kafka connection"
        )
    return session


def open_kafka_target(config: TargetConfig, conn: Any) -> KafkaTargetSession:
    """Build a session on the Airflow ``kafka`` connection ``conn`` (clients are built on first use)."""
    extra = getattr(conn, "extra_dejson", None) or {}
    servers = str(extra.get("bootstrap.servers") or "")
    conn_id = conn.conn_id or config.conn_id
    if not servers:
        raise ConfigurationError(
            f"target {config.name!r}: kafka connection {conn_id!r} has no 'bootstrap.servers' in its extra; set it, "
            f'e.g. {{"bootstrap.servers": "broker:9092"}}'
        )
    return KafkaTargetSession(config, KafkaClients(conn_id), servers, REQUEST_TIMEOUT_S)
