"""What the operator chose: flags, or answers at the prompts.

Defaults come from the existing configuration file when there is one (a re-run
changes nothing unless told to), else from mailwarden's built-in defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace

from mailwarden import address, config
from mailwarden.config import Settings
from mailwarden.errors import ConfigError, MailwardenError, UsageError
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
    p.add_argument("--milter-listen", metavar="ADDR", help="milter (inet:8894@127.0.0.1)")
    p.add_argument("--lmtp-listen", metavar="ADDR", help="lmtpd (unix:/run/mailwarden/lmtp.sock)")
    p.add_argument("--metrics-listen", metavar="HOST:PORT", help="serve's /metrics")
    p.add_argument("--contrib-dir", metavar="DIR", help="the contrib/ templates")


def existing_settings(path: str) -> Settings | None:
    """The file's settings; ConfigError (one line, naming file and key) if it is invalid."""
    if not os.path.exists(path):
        return None
    return config.load(path)


def gather(args: argparse.Namespace, ask: Callable[[str, str], str] | None) -> Answers:
    """Answers from flags, prompting for what is missing when ``ask`` is given."""
    old = existing_settings(args.config_path)
    base = old or Settings()
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
        milter_listen=args.milter_listen or base.milter.listen[0],
        lmtp_listen=args.lmtp_listen or base.lda.lmtp_listen[0],
        metrics_listen=args.metrics_listen or base.metrics.listen,
        existing=old,
    )
    if ask is not None:
        a = prompt(a, ask)
    return validate(a)


def prompt(a: Answers, ask: Callable[[str, str], str]) -> Answers:
    url = ask("Database URL (sqlite:////path or mysql://user:pass@host:port/db)", a.database_url)
    domains = ask("Mail domains, separated by commas", ",".join(a.domains))
    first = domains.split(",")[0].strip()
    postmaster = ask("Postmaster/admin address", a.postmaster or f"postmaster@{first}")
    root = ask("Mail root (Maildirs live below)", a.mail_root)
    uid = ask("Maildir owner uid", str(a.mail_uid))
    gid = ask("Maildir owner gid", str(a.mail_gid))
    clamd = ask("ClamAV clamd address ('' = no virus scanning)", a.clamd or DEFAULT_CLAMD)
    spamd = ask("SpamAssassin spamd address ('' = no spam scanning)", a.spamd or DEFAULT_SPAMD)
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
        )
    except ValueError:
        raise UsageError("uid and gid must be numbers") from None


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
