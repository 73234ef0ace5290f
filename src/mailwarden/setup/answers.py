"""What the operator chose: flags, or answers at the prompts.

Defaults come from the existing configuration file when there is one (a re-run
changes nothing unless told to), else from mailwarden's built-in defaults.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TextIO

from mailwarden import address, config
from mailwarden.config import Settings
from mailwarden.errors import ConfigError, MailwardenError, UsageError
from mailwarden.setup import postconf, smarthost
from mailwarden.setup.smarthost import Smarthost
from mailwarden.store.db import parse_url

DEFAULT_CLAMD = "unix:/run/clamav/clamd.ctl"
DEFAULT_SPAMD = "127.0.0.1:783"


@dataclass(frozen=True)
class Answers:
    database_url: str
    domains: tuple[str, ...]
    postmaster: str
    mail_root: str
    mail_uid: int
    mail_gid: int
    postfix_dir: str
    dovecot_dir: str
    config_path: str
    clamd: str  # "" = no ClamAV
    spamd: str  # "" = no SpamAssassin
    policy_listen: str
    milter_listen: str
    lmtp_listen: str
    metrics_listen: str
    existing: Settings | None  # the configuration file as it was, if any
    # --relayhost: None = leave the smarthost as it is (setup.smarthost)
    smarthost: Smarthost | None = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--non-interactive", action="store_true", help="take flags, ask nothing")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print every change (the default)")
    mode.add_argument("--apply", action="store_true", help="make the changes, reload services")
    p.add_argument("--database-url", metavar="URL", help="sqlite:////path.db or mysql://...")
    p.add_argument("--domain", action="append", metavar="NAME", help="mail domain (repeatable)")
    p.add_argument("--postmaster", metavar="ADDRESS", help="postmaster/admin mailbox")
    p.add_argument(
        "--mail-root", metavar="DIR", help="Maildirs live below (default /var/mail/vhosts)"
    )
    p.add_argument("--mail-uid", type=int, metavar="UID", help="owner of the Maildirs (5000)")
    p.add_argument("--mail-gid", type=int, metavar="GID", help="group of the Maildirs (5000)")
    p.add_argument("--postfix-dir", default="/etc/postfix", metavar="DIR")
    p.add_argument("--dovecot-dir", default="/etc/dovecot", metavar="DIR")
    p.add_argument(
        "--config-path", default=config.DEFAULT_PATH, metavar="PATH", help="file to write"
    )
    p.add_argument("--with-clamav", nargs="?", const=DEFAULT_CLAMD, metavar="ADDRESS")
    p.add_argument("--with-spamassassin", nargs="?", const=DEFAULT_SPAMD, metavar="ADDRESS")
    p.add_argument("--policy-listen", metavar="HOST:PORT", help="policyd (127.0.0.1:10040)")
    p.add_argument(
        "--milter-listen",
        metavar="ADDR",
        help=f"milter (unix:{config.MILTER_SOCKET}, below Postfix's queue_directory)",
    )
    p.add_argument(
        "--lmtp-listen",
        metavar="ADDR",
        help=f"lmtpd (unix:{config.LMTP_SOCKET}, below Postfix's queue_directory)",
    )
    p.add_argument("--metrics-listen", metavar="HOST:PORT", help="serve's /metrics")
    p.add_argument("--contrib-dir", metavar="DIR", help="the contrib/ templates")
    add_smarthost_arguments(p)


def add_smarthost_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--relayhost",
        metavar="[HOST]:PORT",
        help="send outbound mail through this smarthost (AUTH, TLS required); none = stop",
    )
    p.add_argument("--relayhost-user", metavar="USER", help="the smarthost login")
    p.add_argument(
        "--relayhost-password-stdin",
        action="store_true",
        help="read the smarthost password from standard input (one line)",
    )
    p.add_argument(
        "--relayhost-tls",
        choices=smarthost.TLS_LEVELS,
        help="encrypt (default: TLS required) or secure (certificate checked too)",
    )
    p.add_argument(
        "--relayhost-cafile", metavar="FILE", help="with secure: trust this CA (PEM) only"
    )


def existing_settings(path: str) -> Settings | None:
    """The file's settings; ConfigError (one line, naming file and key) if it is invalid."""
    if not os.path.exists(path):
        return None
    return config.load(path)


def gather(args: argparse.Namespace, ask: Callable[[str, str], str] | None) -> Answers:
    """Answers from flags, prompting for what is missing when ``ask`` is given."""
    old = existing_settings(args.config_path)
    base = old or Settings()
    lmtp_listen, milter_listen = base.lda.lmtp_listen[0], base.milter.listen[0]
    if old is None and not (args.lmtp_listen and args.milter_listen):
        # The sockets' defaults, below this Postfix's queue directory.
        try:
            queue = postconf.queue_directory(args.postfix_dir)
        except ConfigError:  # a broken main.cf: preflight says so in its own words
            queue = config.POSTFIX_QUEUE
        lmtp_listen = postconf.in_queue(lmtp_listen, queue)
        milter_listen = postconf.in_queue(milter_listen, queue)
    clamd = args.with_clamav if args.with_clamav is not None else base.milter.clamd if old else ""
    spamd = (
        args.with_spamassassin
        if args.with_spamassassin is not None
        else base.milter.spamd
        if old
        else ""
    )
    a = Answers(
        database_url=args.database_url or base.database.url,
        domains=tuple(args.domain or ()),
        postmaster=args.postmaster or base.mail.postmaster,
        mail_root=args.mail_root or base.mail.root,
        mail_uid=args.mail_uid if args.mail_uid is not None else base.mail.uid,
        mail_gid=args.mail_gid if args.mail_gid is not None else base.mail.gid,
        postfix_dir=args.postfix_dir,
        dovecot_dir=args.dovecot_dir,
        config_path=args.config_path,
        clamd=clamd,
        spamd=spamd,
        policy_listen=args.policy_listen or base.policy.listen[0],
        milter_listen=args.milter_listen or milter_listen,
        lmtp_listen=args.lmtp_listen or lmtp_listen,
        metrics_listen=args.metrics_listen or base.metrics.listen,
        existing=old,
        smarthost=smarthost_answer(args, old),
    )
    if ask is not None:
        a = prompt(a, ask)
    return validate(a)


def prompt(
    a: Answers,
    ask: Callable[[str, str], str],
    secret: Callable[[str], str] = getpass.getpass,
) -> Answers:
    url = ask("Database URL (sqlite:////path or mysql://user:pass@host:port/db)", a.database_url)
    domains = ask("Mail domains, separated by commas", ",".join(a.domains))
    first = domains.split(",")[0].strip()
    postmaster = ask("Postmaster/admin address", a.postmaster or f"postmaster@{first}")
    root = ask("Mail root (Maildirs live below)", a.mail_root)
    uid = ask("Maildir owner uid", str(a.mail_uid))
    gid = ask("Maildir owner gid", str(a.mail_gid))
    clamd = ask("ClamAV clamd address ('' = no virus scanning)", a.clamd or DEFAULT_CLAMD)
    spamd = ask("SpamAssassin spamd address ('' = no spam scanning)", a.spamd or DEFAULT_SPAMD)
    relay = prompt_smarthost(a.smarthost, ask, secret)
    try:
        return replace(
            a,
            database_url=url,
            domains=tuple(d.strip() for d in domains.split(",") if d.strip()),
            postmaster=postmaster,
            mail_root=root,
            mail_uid=int(uid),
            mail_gid=int(gid),
            clamd="" if clamd in ("''", "-", "none") else clamd,
            spamd="" if spamd in ("''", "-", "none") else spamd,
            smarthost=relay,
        )
    except ValueError:
        raise UsageError("uid and gid must be numbers") from None


def prompt_smarthost(
    current: Smarthost | None,
    ask: Callable[[str, str], str],
    secret: Callable[[str], str],
) -> Smarthost | None:
    """The smarthost question: the default keeps what there is ('-' when nothing: Postfix's
    relayhost stays as the admin left it), 'none' takes it out, a new one asks for the
    login and the password (not echoed)."""
    shown = current.relayhost if current and current.relayhost else "-"
    answer = ask(
        "Smarthost for outbound mail, [host]:port ('none' = deliver directly, '-' = as is)",
        shown,
    ).strip()
    if answer in ("", "-"):
        return current
    if answer.lower() == "none":
        return Smarthost("")
    relayhost = smarthost.parse_relayhost(answer)
    if current and relayhost == current.relayhost:
        return current
    user = smarthost.check_user(ask("Smarthost login", current.user if current else ""))
    password = smarthost.check_password(secret("Smarthost password (not shown): "))
    return Smarthost(relayhost, user, password, current.tls if current else "encrypt")


def terminal_ask(question: str, default: str) -> str:
    sys.stdout.write(f"{question} [{default}]: ")
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line:
        raise UsageError("no answer (end of input): use --non-interactive with flags")
    return line.strip() or default


def validate(a: Answers) -> Answers:
    """Normalise domains and the postmaster; one clear line for anything invalid."""
    try:
        parse_url(a.database_url)
    except MailwardenError as exc:
        raise ConfigError(f"--database-url: {exc}") from None
    if not a.database_url.startswith(("sqlite:///", "mysql://")):
        raise ConfigError("--database-url must start with sqlite:/// or mysql://")
    domains = tuple(dict.fromkeys(address.normalize_domain(d) for d in a.domains))
    postmaster = a.postmaster
    if postmaster:
        box = address.parse_mailbox_address(postmaster)
        postmaster = f"{box.local}@{box.domain}"
        if box.domain not in domains:
            domains = (*domains, box.domain)
    if not domains and a.existing is None:
        raise UsageError("give at least one --domain")
    if not os.path.isabs(a.mail_root):
        raise ConfigError(f"--mail-root {a.mail_root!r} must be an absolute path")
    for name in ("postfix_dir", "dovecot_dir", "config_path"):
        if not os.path.isabs(getattr(a, name)):
            raise ConfigError(f"--{name.replace('_', '-')} must be an absolute path")
    return replace(a, domains=domains, postmaster=postmaster)


def read_password(stdin: TextIO) -> str:
    """One line from standard input (``getpass`` at a terminal: nothing is echoed)."""
    if stdin.isatty():
        return getpass.getpass("Smarthost password: ")
    line = stdin.readline()
    if not line:
        raise UsageError("--relayhost-password-stdin: no password on standard input")
    return line.rstrip("\r\n")


def smarthost_answer(args: argparse.Namespace, old: Settings | None) -> Smarthost | None:
    """The smarthost asked for: flags, else what the configuration file recorded."""
    given = args.relayhost is not None
    if not given:
        for flag in ("relayhost_user", "relayhost_tls", "relayhost_cafile"):
            if getattr(args, flag) is not None:
                raise UsageError(f"--{flag.replace('_', '-')} needs --relayhost")
        if args.relayhost_password_stdin and not (old and old.smarthost.relayhost):
            raise UsageError("--relayhost-password-stdin needs --relayhost")
    recorded = old.smarthost if old is not None else None
    if given and args.relayhost.strip().lower() == "none":
        return Smarthost("")
    if not given and not (recorded and recorded.relayhost):
        return None
    relayhost = smarthost.parse_relayhost(
        args.relayhost if given or recorded is None else recorded.relayhost
    )
    user = args.relayhost_user or (recorded.user if recorded else "")
    if not user:
        raise UsageError("--relayhost needs --relayhost-user")
    tls = args.relayhost_tls or (recorded.tls if recorded else "encrypt")
    cafile = args.relayhost_cafile
    if cafile is None:
        cafile = recorded.cafile if recorded and tls == "secure" else ""
    if cafile and (tls != "secure" or not os.path.isabs(cafile)):
        raise UsageError("--relayhost-cafile needs --relayhost-tls secure and an absolute path")
    if cafile:
        _readable_by_postfix(cafile)
    password = None
    if args.relayhost_password_stdin:
        password = smarthost.check_password(read_password(sys.stdin))
    return Smarthost(relayhost, smarthost.check_user(user), password, tls, cafile)


def _readable_by_postfix(path: str) -> None:
    """smtp(8) reads the CA file (``tafile=``) as user postfix, at each connection."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise UsageError(f"--relayhost-cafile {path}: {exc.strerror}") from None
    if not mode & 0o004:
        raise UsageError(
            f"--relayhost-cafile {path}: user postfix must be able to read it "
            "(chmod 0644: a CA certificate is public)"
        )
