"""Settings: load and validate mailwarden's TOML configuration.

Who calls it: every ``__main__`` (CLI, daemons, the pipe LDA) once at start-up; the
resulting frozen ``Settings`` is passed down. Nothing reads configuration from globals.

Where the file comes from: ``--config PATH``, else ``$MAILWARDEN_CONFIG``, else
``/etc/mailwarden/mailwarden.toml``; when none of these exists (and none was named
explicitly) the embedded default is used: SQLite at ``/var/lib/mailwarden/mailwarden.db``.

Errors: ``ConfigError`` naming the file and the key for a missing named file, bad TOML,
an unknown section or key, or a value of the wrong type or range.

Metrics off: ``none`` is the one spelling, in ``[metrics] listen`` and in every daemon's
``--metrics`` flag (``metrics_listen`` resolves the two). The empty string, lmtpd's
spelling before 0.2, still means off but is deprecated: each daemon says so in one
line on stderr when it starts.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tomllib
from dataclasses import dataclass, field
from typing import Any

from mailwarden.errors import ConfigError

DEFAULT_PATH = "/etc/mailwarden/mailwarden.toml"
DEFAULT_DB_URL = "sqlite:////var/lib/mailwarden/mailwarden.db"

# lmtpd and the milter listen on unix sockets in directories of their own below Postfix's
# queue directory (Debian's habit for milters: /var/spool/postfix/spamass, .../clamav).
# There a chrooted lmtp(8), smtpd(8) and cleanup(8) reach them (Postfix names them
# relative to the queue directory), and nobody else: ``mailwarden setup`` makes each
# directory <daemon user>:postfix 0750, so no local process can hand lmtpd mail that
# skipped policyd and the scanners, as it could on a TCP port. docs/operations.md.
POSTFIX_QUEUE = "/var/spool/postfix"
LMTP_SOCKET = f"{POSTFIX_QUEUE}/mailwarden-lmtpd/lmtp.sock"
MILTER_SOCKET = f"{POSTFIX_QUEUE}/mailwarden-milter/milter.sock"


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str = DEFAULT_DB_URL
    # Seconds to wait for a connection before the store counts as unavailable.
    connect_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class MailSettings:
    root: str = "/var/mail/vhosts"
    uid: int = 5000
    gid: int = 5000
    layout: str = "flat"  # "flat" = domain/local/, "hashed" = d/o/domain/local/
    recipient_delimiter: str = "+"
    password_scheme: str = "sha512-crypt"  # noqa: S105 - a scheme name, not a password
    quota_full_tempfail: bool = True  # RFC 3463: a full mailbox is a transient failure (4.2.2)
    quota_warning_percent: tuple[int, ...] = (90,)
    junk_folder: str = "Junk"
    postmaster: str = ""


@dataclass(frozen=True, slots=True)
class LdaSettings:
    lmtp_listen: tuple[str, ...] = (f"unix:{LMTP_SOCKET}",)
    # How vacation replies and quota warnings leave: "sendmail" or "smtp".
    sendmail: str = "/usr/sbin/sendmail"
    submit: str = "sendmail"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    metrics_dir: str = "/var/lib/mailwarden/metrics"
    # lmtpd processes (``--workers``); the one setting for systemd and ``serve`` alike.
    lmtp_workers: int = 1


@dataclass(frozen=True, slots=True)
class PolicySettings:
    listen: tuple[str, ...] = ("127.0.0.1:10040",)
    checks: tuple[str, ...] = (
        "relay",
        "recipient",
        "quota",
        "sendas",
        "access",
        "limits",
        "ratelimit",
    )
    cache_ttl: float = 5.0
    cache_size: int = 10000
    max_recipients: int = 1000
    request_timeout: float = 10.0
    workers: int = 1  # policyd processes (``--workers``)


@dataclass(frozen=True, slots=True)
class MilterSettings:
    listen: tuple[str, ...] = (f"unix:{MILTER_SOCKET}",)
    clamd: str = "unix:/run/clamav/clamd.ctl"
    spamd: str = "127.0.0.1:783"
    clamd_failure: str = "tempfail"  # or "accept"
    spamd_failure: str = "accept"  # or "tempfail"
    spam_max_size: int = 512 * 1024
    spam_reject_score: float = 0.0  # 0 = never reject on score at SMTP time
    virus_action: str = "reject"  # reject | discard | quarantine
    max_received: int = 50
    scan_authenticated_spam: bool = False
    scanner_timeout: float = 30.0
    spool_threshold: int = 1024 * 1024
    # Larger than clamd's StreamMaxLength: "accept" (unscanned, no X-Virus-Scanned) or
    # "tempfail" (checked by the milter at start-up, like the other choices).
    clamd_oversize: str = "accept"
    # Mode of a unix listening socket (Postfix's smtpd runs as user postfix); who may
    # connect is decided by its directory (see MILTER_SOCKET).
    socket_mode: str = "0666"


METRICS_OFF = "none"


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    listen: str = "127.0.0.1:9190"  # HOST:PORT, or METRICS_OFF


@dataclass(frozen=True, slots=True)
class BackupSettings:
    # ``mailwarden backup``: where the dated backup directories go, how many are kept.
    dir: str = "/var/backups/mailwarden"
    keep: int = 7


@dataclass(frozen=True, slots=True)
class ListsSettings:
    # Mailing lists run by mlmmj (docs/lists.md): the list directories live below
    # ``spool`` as <domain>/<list>/, owned by ``user`` (Postfix's pipe runs mlmmj as it);
    # mlmmj sends list mail back through the MTA at ``smtp`` (HOST:PORT).
    spool: str = "/var/spool/mlmmj"
    user: str = "mlmmj"
    smtp: str = "127.0.0.1:25"


@dataclass(frozen=True, slots=True)
class SmarthostSettings:
    # What ``mailwarden setup --relayhost`` wrote into Postfix (docs/smarthost.md), so a
    # re-run keeps it and ``--relayhost none`` can take it out; "" = no smarthost. The
    # password is only in Postfix's map (0600 root), never here.
    relayhost: str = ""
    user: str = ""
    tls: str = "encrypt"  # or "secure": the server's certificate is checked
    cafile: str = ""  # with "secure": the CA file (tafile=), else the system CAs


@dataclass(frozen=True, slots=True)
class RelaySettings:
    # POP-before-SMTP (docs/pop-before-smtp.md): after a POP3/IMAP login the client's
    # address may relay for this many minutes (``mailwarden relay allow-login``, called
    # by Dovecot's post-login script); 0 = off.
    pop_before_smtp_minutes: int = 0


@dataclass(frozen=True, slots=True)
class ApiSettings:
    # ``mailwarden api`` (also a child of ``mailwarden serve``; docs/api.md): where it
    # listens (``daemon.listen``: HOST:PORT or unix:/path), its access log (``api.log``;
    # "" = with the daemon's log), and the services bitfield a new mailbox gets when
    # none is named (1 mail, 2 calendar, 4 contacts; Atmail's PROVISION).
    listen: str = "127.0.0.1:8480"
    log: str = ""
    provision: int = 7


@dataclass(frozen=True, slots=True)
class FetchSettings:
    # The mail fetcher (``mailwarden fetch``, ``mailwarden fetchd``; docs/fetch.md): the
    # key file the remote passwords are encrypted with (created 0600 by the first
    # ``fetch add``), where the per-account locks live, the local MTA fetched mail is
    # submitted to (HOST:PORT), how many accounts run at once, the network timeout
    # (seconds) and how often the daemon looks for accounts that are due (seconds).
    key_file: str = "/etc/mailwarden/fetch.key"
    state_dir: str = "/var/lib/mailwarden/fetch"
    smtp: str = "127.0.0.1:25"
    workers: int = 4
    timeout: float = 60.0
    poll: float = 30.0


@dataclass(frozen=True, slots=True)
class TrafficSettings:
    # Who counts the per-domain traffic report (docs/traffic.md): "milter" (the milter
    # at end of message; Postfix sites, the default, so an upgrade never counts twice) or
    # "daemons" (the delivery agent counts mail in, policyd at END-OF-MESSAGE mail out;
    # Exim sites, which have no milter). Each program counts only in its own mode.
    counter: str = "milter"


def _validate_fetch(s: Settings) -> None:
    f = s.fetch
    if not os.path.isabs(f.key_file) or not os.path.isabs(f.state_dir):
        raise ConfigError(f"{s.source}: fetch.key_file and fetch.state_dir must be absolute")
    if not is_host_port(f.smtp):
        raise ConfigError(f"{s.source}: fetch.smtp must be HOST:PORT, got {f.smtp!r}")
    if not 1 <= f.workers <= MAX_WORKERS or not 0 < f.timeout <= 3600 or not 0 < f.poll <= 3600:
        raise ConfigError(
            f"{s.source}: fetch.workers must be 1..{MAX_WORKERS}, "
            "fetch.timeout and fetch.poll 0..3600 seconds"
        )


@dataclass(frozen=True, slots=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    mail: MailSettings = field(default_factory=MailSettings)
    lda: LdaSettings = field(default_factory=LdaSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    milter: MilterSettings = field(default_factory=MilterSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    backup: BackupSettings = field(default_factory=BackupSettings)
    lists: ListsSettings = field(default_factory=ListsSettings)
    smarthost: SmarthostSettings = field(default_factory=SmarthostSettings)
    relay: RelaySettings = field(default_factory=RelaySettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    fetch: FetchSettings = field(default_factory=FetchSettings)
    traffic: TrafficSettings = field(default_factory=TrafficSettings)
    source: str = "(built-in defaults)"


_SECTIONS: dict[str, type[Any]] = {
    "database": DatabaseSettings,
    "mail": MailSettings,
    "lda": LdaSettings,
    "policy": PolicySettings,
    "milter": MilterSettings,
    "metrics": MetricsSettings,
    "backup": BackupSettings,
    "lists": ListsSettings,
    "smarthost": SmarthostSettings,
    "relay": RelaySettings,
    "api": ApiSettings,
    "fetch": FetchSettings,
    "traffic": TrafficSettings,
}


def config_path(explicit: str | None, environ: dict[str, str] | None = None) -> tuple[str, bool]:
    """Return (path, named): the file to read and whether the user named it."""
    env = os.environ if environ is None else environ
    if explicit:
        return explicit, True
    if env.get("MAILWARDEN_CONFIG"):
        return env["MAILWARDEN_CONFIG"], True
    return DEFAULT_PATH, False


def load(explicit: str | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Load settings from the file that applies; built-in defaults when there is none."""
    path, named = config_path(explicit, environ)
    if not os.path.exists(path):
        if named:
            raise ConfigError(f"{path}: configuration file not found")
        return Settings()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return from_dict(data, source=path)


def from_dict(data: dict[str, Any], source: str = "(dict)") -> Settings:
    """Build validated settings from parsed TOML; unknown keys are errors."""
    sections: dict[str, Any] = {}
    for name, value in data.items():
        cls = _SECTIONS.get(name)
        if cls is None:
            raise ConfigError(f"{source}: unknown section [{name}]")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        sections[name] = _section(cls, name, value, source)
    settings = Settings(**sections, source=source)
    _validate(settings)
    return settings


def _section(cls: type[Any], name: str, values: dict[str, Any], source: str) -> Any:
    defaults = cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{source}: unknown key {name}.{key}")
        kwargs[key] = _coerce(getattr(defaults, key), value, f"{name}.{key}", source)
    return cls(**kwargs)


def _coerce(default: Any, value: Any, key: str, source: str) -> Any:
    """Check a TOML value against the type of its default."""
    if isinstance(default, tuple):
        items = [value] if isinstance(value, str | int) else value
        if not isinstance(items, list):
            raise ConfigError(f"{source}: {key} must be a list")
        elem = type(default[0]) if default else str
        if not all(isinstance(v, elem) and not isinstance(v, bool) for v in items):
            raise ConfigError(f"{source}: {key} must be a list of {elem.__name__}")
        return tuple(items)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be true or false")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(default):
        raise ConfigError(f"{source}: {key} must be {type(default).__name__}")
    return value


MAX_WORKERS = 64
MAX_POP_BEFORE_SMTP_MINUTES = 1440  # a day: longer is a permanent entry (relay add)

_CHOICES = {
    ("mail", "layout"): ("flat", "hashed"),
    ("mail", "password_scheme"): ("sha512-crypt", "argon2id"),
    ("lda", "submit"): ("sendmail", "smtp"),
    ("milter", "clamd_failure"): ("tempfail", "accept"),
    ("milter", "spamd_failure"): ("tempfail", "accept"),
    ("milter", "virus_action"): ("reject", "discard", "quarantine"),
    ("smarthost", "tls"): ("encrypt", "secure"),
    ("traffic", "counter"): ("milter", "daemons"),
}


def _validate(s: Settings) -> None:
    _validate_fetch(s)
    for (section, key), allowed in _CHOICES.items():
        value = getattr(getattr(s, section), key)
        if value not in allowed:
            raise ConfigError(f"{s.source}: {section}.{key} must be one of {', '.join(allowed)}")
    if not s.database.url.startswith(("sqlite:///", "mysql://")):
        raise ConfigError(f"{s.source}: database.url must start with sqlite:/// or mysql://")
    if not os.path.isabs(s.mail.root):
        raise ConfigError(f"{s.source}: mail.root must be an absolute path")
    if not 0 <= s.mail.uid < 2**32 or not 0 <= s.mail.gid < 2**32:
        raise ConfigError(f"{s.source}: mail.uid and mail.gid must be valid ids")
    for key, value in (
        ("lda.lmtp_workers", s.lda.lmtp_workers),
        ("policy.workers", s.policy.workers),
    ):
        if not 1 <= value <= MAX_WORKERS:
            raise ConfigError(f"{s.source}: {key} must be 1..{MAX_WORKERS}")
    if not os.path.isabs(s.backup.dir) or not 1 <= s.backup.keep <= 1000:
        raise ConfigError(f"{s.source}: backup.dir must be absolute and backup.keep 1..1000")
    if not 0 <= s.relay.pop_before_smtp_minutes <= MAX_POP_BEFORE_SMTP_MINUTES:
        raise ConfigError(
            f"{s.source}: relay.pop_before_smtp_minutes must be "
            f"0..{MAX_POP_BEFORE_SMTP_MINUTES} (0 = off)"
        )
    if not 1 <= s.api.provision <= 7:
        raise ConfigError(
            f"{s.source}: api.provision must be 1..7 (1 mail, 2 calendar, 4 contacts)"
        )
    if any(not 0 < p <= 100 for p in s.mail.quota_warning_percent):
        raise ConfigError(f"{s.source}: mail.quota_warning_percent values must be 1..100")
    if s.metrics.listen not in (METRICS_OFF, "") and not is_host_port(s.metrics.listen):
        raise ConfigError(
            f"{s.source}: metrics.listen must be HOST:PORT or {METRICS_OFF!r} (off), "
            f"got {s.metrics.listen!r}"
        )


def is_host_port(text: str) -> bool:
    """``HOST:PORT`` or ``[V6]:PORT`` (an empty HOST is 127.0.0.1), port 1..65535."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return False
    return ":" not in host or (host.startswith("[") and host.endswith("]"))


def metrics_listen(flag: str | None, settings: Settings, prog: str) -> str | None:
    """Where a daemon serves ``/metrics``: ``--metrics`` if given, else ``[metrics] listen``.

    None when metrics are off (``none``). The deprecated empty spelling also means off;
    it is reported as one line on stderr, prefixed with ``prog``.
    """
    value = (flag if flag is not None else settings.metrics.listen).strip()
    if value == "":
        if flag is not None:
            how = f"--metrics '' is deprecated: write --metrics {METRICS_OFF}"
        else:
            how = (
                f'{settings.source}: [metrics] listen = "" is deprecated: '
                f'write listen = "{METRICS_OFF}"'
            )
        print(f"{prog}: {how} to switch metrics off", file=sys.stderr)
        return None
    if value == METRICS_OFF:
        return None
    return value
