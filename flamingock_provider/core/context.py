"""What a change unit sees while it runs (``ctx``), and how template payloads are rendered."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flamingock_provider.core.model import ChangeUnit, Pipeline
from flamingock_provider.core.targets import TargetSession
from flamingock_provider.exceptions import ConfigurationError

# Renders one string of a template payload; Airflow passes its own sandboxed Jinja renderer.
StringRenderer = Callable[[str], Any]


@dataclass
class ChangeContext:
    """The unit's view of its run: target client, session, params and metadata."""

    change: ChangeUnit
    pipeline: Pipeline
    run_id: str | None
    execution_id: str
    params: Mapping[str, Any] = field(default_factory=dict)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("flamingock.unit"))
    target_session: TargetSession | None = None
    renderer: StringRenderer | None = None

    @property
    def target(self) -> Any:
        return self.target_session.native if self.target_session else None

    @property
    def session(self) -> Any:
        return self.target_session.session if self.target_session else None

    @property
    def hook(self) -> Any:
        return self.target_session.hook if self.target_session else None

    def client(self, service: str) -> Any:
        """Return a client for ``service``: boto3 on an aws target, Kafka ``admin``/``producer`` on a kafka one."""
        if self.target_session is None:
            raise ConfigurationError(
                f"change {self.change.id!r}: ctx.client({service!r}) needs a target; set 'target:' in the unit"
            )
        return self.target_session.client(service)

    def render(self, value: Any) -> Any:
        """Render Jinja in every string of ``value`` (dicts and lists are walked)."""
        if self.renderer is None:
            return value
        return render_payload(value, self.renderer)


def render_payload(value: Any, render: StringRenderer) -> Any:
    if isinstance(value, str):
        return render(value) if ("{{" in value or "{%" in value) else value
    if isinstance(value, Mapping):
        return {k: render_payload(v, render) for k, v in value.items()}
    if isinstance(value, list):
        return [render_payload(v, render) for v in value]
    return value


def sandboxed_renderer(variables: Mapping[str, Any]) -> StringRenderer:
    """Return a renderer over Jinja's sandbox (used outside Airflow, e.g. by the CLI)."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)

    def render(text: str) -> Any:
        return env.from_string(text).render(**variables)

    return render
