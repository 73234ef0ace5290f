"""``mailwarden``: the admin command line.

Usage: ``mailwarden [--config PATH] [--debug] <family> <verb> [options]``.
Families are registered by their modules (``admin/<family>.py``), each exposing
``register(subparsers)`` and setting ``handler`` on its parsers; a handler takes
``(ctx: Context, args: argparse.Namespace)`` and returns an exit status.

Exit status: 0 success; 1 an operator mistake or a database/config problem, reported as
one line on stderr without a traceback; 2 bad command-line syntax (argparse);
70 an internal error (one line; ``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
import traceback
from collections.abc import Sequence

from mailwarden import __version__, config
from mailwarden.admin.context import Context
from mailwarden.errors import MailwardenError

# Command families, in the order --help lists them. Each is mailwarden.admin.<name>.
FAMILIES = (
    "db",
    "domain",
    "user",
    "alias",
    "forward",
    "relay",
    "group",
    "sendas",
    "spam",
    "vacation",
    "ratelimit",
    "quota",
    "traffic",
    "policyd",
    "milter",
    "daemons",
    "serve",
    "setup",
    "doctor",
)

EX_USER = 1
EX_INTERNAL = 70


@functools.lru_cache(maxsize=1)
def build_parser() -> argparse.ArgumentParser:
    """The full parser; built once per process (parsing never changes it)."""
    parser = argparse.ArgumentParser(
        prog="mailwarden",
        description="Virtual mail hosting around Postfix and Dovecot: domains, mailboxes, "
        "aliases, policy, scanning and delivery.",
    )
    parser.add_argument("--config", metavar="PATH", help="configuration file (TOML)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    parser.add_argument("--version", action="version", version=f"mailwarden {__version__}")
    sub = parser.add_subparsers(dest="family", metavar="COMMAND")
    sub.required = True
    for name in FAMILIES:
        try:
            module = importlib.import_module(f"mailwarden.admin.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"mailwarden.admin.{name}":
                continue  # family not built into this version
            raise
        module.register(sub)
    return parser


def add_json(parser: argparse.ArgumentParser) -> None:
    """Give a list/show command its ``--json`` switch."""
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx: Context | None = None
    try:
        settings = config.load(args.config)
        ctx = Context(settings, json=bool(getattr(args, "json", False)))
        return int(args.handler(ctx, args) or 0)
    except MailwardenError as exc:
        print(f"mailwarden: {exc}", file=sys.stderr)
        return EX_USER
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into one line
        if args.debug:
            traceback.print_exc()
        print(
            f"mailwarden: internal error: {type(exc).__name__}: {exc} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return EX_INTERNAL
    finally:
        if ctx is not None:
            ctx.close()


def run() -> None:
    sys.exit(main())
