"""The command line: arguments, ``THREADLOOM_*`` variables, a config file -> Config -> Server.

Flags are generated from :class:`threadloom.config.Config`'s field metadata; precedence is
command line over environment over config file over defaults (:mod:`threadloom.sources`).
``threadloom config`` takes the same options as ``serve`` and prints the effective settings
and where each came from. Every user mistake ends as one line on stderr and a non-zero exit
status, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any, NoReturn

from threadloom import __version__
from threadloom.bench import command as bench_command
from threadloom.config import Config, env_name, flag_name
from threadloom.demo.runner import run_demo
from threadloom.errors import ConfigError
from threadloom.log import configure_logging
from threadloom.net.activation import activated_binds
from threadloom.reload import run_reloading
from threadloom.server import Server, run_with_signals
from threadloom.sources import DEFAULT, Resolved, describe, find_file, resolve
from threadloom.supervisor import run_supervised

#: No APP with --reload or --workers: the tutorial's hello alone (the page's chat and figures
#: live in one process; see threadloom.demo.runner for the demo proper).
DEMO_APP = "threadloom.demo.hello:handle_client"
EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), as the CLI contract says."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"threadloom: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, generated from Config."""
    parser = OneLineParser(prog="threadloom", description="Run a handler under any model.")
    parser.add_argument("--version", action="version", version=f"threadloom {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=OneLineParser)
    serve = commands.add_parser("serve", help="serve an app (the demo when APP is omitted)")
    _add_settings(serve)
    shown = commands.add_parser(
        "config", help="print the settings `serve` would use with these options, and their source"
    )
    _add_settings(shown)
    bench = commands.add_parser("bench", help="measure every model on this machine")
    bench_command.add_arguments(bench)
    return parser


def _add_settings(parser: argparse.ArgumentParser) -> None:
    """APP, --config and a flag for every setting: what `serve` and `config` both take."""
    parser.add_argument("app", nargs="?", metavar="APP", help="module:attribute to serve")
    parser.add_argument(
        "--config",
        dest="config_file",
        metavar="FILE",
        default=None,
        help="TOML file of settings, keys named as the flags (env THREADLOOM_CONFIG; default: "
        "[tool.threadloom] in ./pyproject.toml when there is one)",
    )
    parser.add_argument(
        "--no-config",
        dest="config_file",
        action="store_const",
        const="",
        help="read no config file, not even ./pyproject.toml",
    )
    for f in dataclasses.fields(Config):
        _add_option(parser, f)


def _add_option(parser: argparse.ArgumentParser, f: dataclasses.Field[Any]) -> None:
    meta = f.metadata
    help_text = f"{meta['help']} (env {env_name(f)})"
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    flag = "--" + flag_name(f)
    if kind == "bool":
        parser.add_argument(
            flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
        )
    elif meta.get("repeatable"):
        parser.add_argument(flag, dest=f.name, action="append", default=None, help=help_text)
    else:
        convert = {"int": int, "float": float}.get(kind, str)
        parser.add_argument(
            flag,
            dest=f.name,
            type=convert,
            choices=meta.get("choices"),
            default=None,
            help=help_text,
        )


def resolved_from(args: argparse.Namespace) -> Resolved:
    """The flags given, the environment and the config file, merged (threadloom.sources)."""
    flags = {}
    for f in dataclasses.fields(Config):
        given = getattr(args, f.name, None)
        if given is not None:
            flags[f.name] = tuple(given) if isinstance(given, list) else given
    file = find_file(args.config_file, os.environ)
    return resolve(flags, os.environ, file, activated_binds)


def _show_config(args: argparse.Namespace) -> int:
    """``threadloom config``: the effective settings, one a line, with their sources."""
    try:
        print(describe(resolved_from(args)))
    except ConfigError as exc:
        print(f"threadloom: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _bench(args: argparse.Namespace) -> int:
    """``threadloom bench``; its mistakes end as one line, like serve's."""
    try:
        return bench_command.run(args)
    except ConfigError as exc:
        print(f"threadloom: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``threadloom`` command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["serve", *argv]
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        return _bench(args)
    if args.command == "config":
        return _show_config(args)
    try:
        resolved = resolved_from(args)
        config = resolved.config
        configure_logging(config.log_level, config.log_config, config.access_log_format)
        if config.reload:
            return run_reloading(args.app or DEMO_APP, config)
        if config.workers:
            return run_supervised(args.app or DEMO_APP, config)
        if args.app is None:  # the demo: the page on --bind, the tutorial's hello beside it
            given = resolved.sources["threads"] != DEFAULT
            return run_demo(config, threads_given=given)
        server = Server(args.app, config)
        server.start()
    except ConfigError as exc:
        print(f"threadloom: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    try:
        return run_with_signals(server)
    except ConfigError as exc:  # raised while starting on the loop: ASGI lifespan startup
        print(f"threadloom: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
