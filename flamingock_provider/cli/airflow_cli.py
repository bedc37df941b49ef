"""``airflow flamingock COMMAND PIPELINE_DIR [options]``: the ``flamingock`` commands in the Airflow CLI.

Airflow (≥ 3.2) finds :func:`get_cli_commands` through the provider's ``cli`` key. The commands and
their arguments are read from the ``flamingock`` parser (:func:`flamingock_provider.cli.main.build_parser`),
never defined twice. Each command turns Airflow's parsed arguments back into a ``flamingock``
command line and runs :func:`flamingock_provider.cli.main.main` on it, so the JSON documents, the
``FAILED: ...`` messages and the exit codes are the same; the ``flamingock`` parser also checks what
Airflow's parser cannot express (``undo`` needs exactly one of ``--to`` and ``--last``).

Airflow imports this module to build its parser for every ``airflow`` command: keep it cheap.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from flamingock_provider.cli.main import build_parser

if TYPE_CHECKING:
    from airflow.cli.cli_config import Arg, CLICommand

GROUP = "flamingock"
GROUP_HELP = "Flamingock change-as-code: validate, plan, apply, status, history, undo, fix, unlock, rehearse"
_FLAGS = (argparse._StoreTrueAction, argparse._StoreFalseAction)


def subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """Yield each subcommand of ``parser``: its name, help and parser, in definition order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield choice.dest, choice.help or "", action.choices[choice.dest]


def _arguments(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    return (a for a in parser._actions if not isinstance(a, argparse._HelpAction))


def to_airflow_arg(action: argparse.Action) -> Arg:
    """Return Airflow's description of one ``flamingock`` argument."""
    from airflow.cli.cli_config import Arg

    if not action.option_strings:
        return Arg((action.dest,), help=action.help, metavar=action.metavar)
    if isinstance(action, _FLAGS):
        kind = "store_true" if isinstance(action, argparse._StoreTrueAction) else "store_false"
        return Arg(tuple(action.option_strings), help=action.help, action=kind, dest=action.dest)
    if type(action) is argparse._AppendAction:  # a repeatable option (``rehearse --scratch``)
        return Arg(
            tuple(action.option_strings), help=action.help, action="append", metavar=action.metavar, dest=action.dest
        )
    if type(action) is not argparse._StoreAction:
        raise TypeError(f"flamingock argument {action.dest!r}: {type(action).__name__} has no Airflow form")
    return Arg(
        tuple(action.option_strings),
        help=action.help,
        type=action.type,
        choices=action.choices,
        metavar=action.metavar,
        dest=action.dest,
        required=action.required,
    )


def to_argv(command: str, parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """Write Airflow's parsed ``args`` of ``command`` back as a ``flamingock`` command line."""
    argv = [command]
    for action in _arguments(parser):
        value = getattr(args, action.dest, None)
        flag = action.option_strings[-1] if action.option_strings else None
        if flag is None:
            argv.append(str(value))
        elif isinstance(action, _FLAGS):
            if value != action.default:
                argv.append(flag)
        elif isinstance(value, list):  # an append action: the flag once per value
            argv.extend(f"{flag}={item}" for item in value)
        elif value is not None:
            argv.append(f"{flag}={value}")
    return argv


def _logs_to_stderr() -> None:
    """Move Airflow's stdout log handlers to stderr: stdout carries the one JSON document."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)


def _runner(command: str, parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        from flamingock_provider import metrics  # noqa: F401  (Airflow metrics, where [metrics] is on)
        from flamingock_provider.cli.main import main

        _logs_to_stderr()
        code = main(to_argv(command, parser, args))
        if code:
            raise SystemExit(code)

    run.__name__ = f"flamingock_{command}"
    return run


def get_cli_commands() -> list[CLICommand]:
    """Return the ``flamingock`` command group for Airflow's CLI."""
    from airflow.cli.cli_config import ActionCommand, GroupCommand

    commands: list[Any] = [
        ActionCommand(
            name=name,
            help=help_,
            description=help_,
            func=_runner(name, parser),
            args=tuple(to_airflow_arg(a) for a in _arguments(parser)),
        )
        for name, help_, parser in subcommands(build_parser())
    ]
    return [GroupCommand(name=GROUP, help=GROUP_HELP, subcommands=commands)]
