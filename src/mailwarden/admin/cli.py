"""``mailwarden``: the admin command line.

Usage: ``mailwarden [--config PATH] [--debug] <family> <verb> [options]``; ``--config``
may also follow the command (``Parser``).
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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from mailwarden import __version__, config
from mailwarden.errors import MailwardenError

if TYPE_CHECKING:
    from mailwarden.admin.context import Context

# Every command: the module under mailwarden.admin that registers it, and the one-line
# help ``mailwarden --help`` lists (in this order). Only the module of the command on
# the command line is imported (``build_parser``); tests/unit/test_cli_startup.py checks
# that these lines match what the modules register.
COMMANDS: dict[str, tuple[str, str]] = {
    "db": ("db", "create and upgrade the database schema"),
    "domain": ("domain", "mail domains: local, alias and relay"),
    "user": ("user", "mailboxes: add, change, remove"),
    "alias": ("alias", "aliases and catch-alls"),
    "forward": ("forward", "forward a mailbox's mail"),
    "relay": ("relay", "networks allowed to relay without authentication"),
    "group": ("group", "mail groups: which services mailboxes may use"),
    "sendas": ("sendas", "addresses a login may send as"),
    "spam": ("spam", "spam treatment and allow/block lists"),
    "vacation": ("vacation", "automatic out-of-office replies"),
    "ratelimit": ("ratelimit", "sending limits per login, domain or client"),
    "quota": ("quota", "mailbox usage against quota"),
    "traffic": ("traffic", "messages and bytes per local domain and day"),
    "list": ("lists", "mailing lists run by mlmmj: members, moderation"),
    "token": ("token", "REST API tokens: create, list, revoke"),
    "audit": ("audit", "who changed what, when, from where"),
    "api": ("api", "run the REST API server (/api/v1)"),
    "policyd": ("policyd", "run the Postfix/Exim policy service"),
    "milter": ("milter", "run the Postfix milter (ClamAV, SpamAssassin, traffic)"),
    "lmtpd": ("lmtpd", "run the LMTP delivery server"),
    "deliver": ("deliver", "deliver one message from stdin (as mailwarden-lda)"),
    "serve": ("serve", "run policyd, milter, lmtpd and the API supervised, one /metrics"),
    "setup": ("setup", "install: wire Postfix and Dovecot, create the schema"),
    "doctor": ("doctor", "check the whole mail system end to end"),
    "backup": ("backup", "rolling backups of database, mail and config; restore"),
    "fetch": ("fetch", "collect mail from remote POP3/IMAP accounts"),
    "fetchd": ("fetch", "run the mail fetcher daemon (accounts by interval)"),
    "import": ("imports", "import from PostfixAdmin or vpopmail (hashes kept)"),
}

EX_USER = 1
EX_INTERNAL = 70


class Parser(argparse.ArgumentParser):
    """Every parser of the command tree: each takes ``--config PATH``.

    So ``--config`` may come before the command or after any (sub)command, daemons
    included (``mailwarden lmtpd --config X``, ``mailwarden domain list --config X``);
    the last one given wins. Subparsers inherit the class (``add_subparsers`` uses the
    parent's type), so the family modules need not add it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument(
            "--config",
            metavar="PATH",
            default=argparse.SUPPRESS,
            help="configuration file (TOML; default $MAILWARDEN_CONFIG, "
            f"else {config.DEFAULT_PATH})",
        )


@functools.cache
def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, built once per process and command (parsing never changes it).

    With ``command`` (one of ``COMMANDS``) only that command's module is imported and
    registers its full parser; every other command is a stub with its name and help,
    enough for ``mailwarden --help`` and argparse's "invalid choice". Without it, every
    module registers (the complete tree). A command module that is not part of this
    installation is left out.
    """
    parser = Parser(
        prog="mailwarden",
        description="Virtual mail hosting around Postfix and Dovecot: domains, mailboxes, "
        "aliases, policy, scanning and delivery.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    parser.add_argument("--version", action="version", version=f"mailwarden {__version__}")
    sub = parser.add_subparsers(dest="family", metavar="COMMAND")
    sub.required = True
    registered: set[str] = set()
    for name, (module_name, help_text) in COMMANDS.items():
        if command is not None and name != command:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        if module_name in registered:
            continue  # one module, several commands (daemons: lmtpd, deliver)
        try:
            module = importlib.import_module(f"mailwarden.admin.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"mailwarden.admin.{module_name}":
                continue  # family not built into this version
            raise
        registered.add(module_name)
        if command is None:
            module.register(sub)
        else:
            module.register(cast("argparse._SubParsersAction[Parser]", _Only(sub, command)))
    return parser


class _Only:
    """The subparsers action as a module sees it when only ``command`` is wanted: a module
    registering several commands (``daemons``) adds the others as stubs."""

    def __init__(self, sub: argparse._SubParsersAction[Parser], command: str) -> None:
        self._sub = sub
        self._command = command

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if name != self._command:
            return Parser(prog=name, add_help=False)  # never attached: parsed by no one
        return self._sub.add_parser(name, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._sub, attr)


def command_in(argv: Sequence[str]) -> str | None:
    """The command named on a ``mailwarden`` command line, if it is one of ``COMMANDS``.

    The first word that is not an option or the value of ``--config`` (or of an
    abbreviation argparse accepts, ``--conf``); None when there is none (``--help``,
    ``--version``) or it is unknown (argparse then says so).
    """
    words = iter(argv)
    for word in words:
        if word.startswith("--c") and "--config".startswith(word):
            next(words, None)
        elif word == "--" or not word.startswith("-"):
            name = next(words, "") if word == "--" else word
            return name if name in COMMANDS else None
    return None


def add_json(parser: argparse.ArgumentParser) -> None:
    """Give a list/show command its ``--json`` switch."""
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    command = command_in(words)
    args = build_parser(command if command is not None else "").parse_args(words)
    if not hasattr(args, "handler"):  # a stub was parsed (command_in missed): all of it
        args = build_parser().parse_args(words)
    from mailwarden.admin.context import Context  # not needed by --help

    ctx: Context | None = None
    try:
        settings = config.load(getattr(args, "config", None))
        ctx = Context(settings, json=bool(getattr(args, "json", False)))
        return int(args.handler(ctx, args) or 0)
    except MailwardenError as exc:
        print(f"mailwarden: {exc}", file=sys.stderr)
        return EX_USER
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into one line
        if args.debug:
            import traceback  # only here: ~5 ms of every start-up otherwise

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
