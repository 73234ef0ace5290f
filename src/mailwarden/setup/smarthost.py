"""The smarthost (an ISP's or provider's SMTP server all outbound mail goes through).

``mailwarden setup --relayhost [smtp.isp.example]:587 --relayhost-user U
--relayhost-password-stdin`` makes Postfix hand every message for a non-local domain to
that server, logged in with SASL AUTH, over TLS only. ``--relayhost none`` takes it out.

What setup writes (docs/smarthost.md):

- ``relayhost = [smtp.isp.example]:587``;
- ``<postfix_dir>/mailwarden/smarthost_passwd``: ``[smtp.isp.example]:587 U:PASSWORD``,
  mode 0600 root, and its indexed copy made by ``postmap`` (``default_database_type``:
  ``hash`` or ``lmdb``); ``smtp_sasl_password_maps`` names it, ``smtp_sasl_auth_enable =
  yes``, ``smtp_sasl_security_options`` and ``smtp_sasl_tls_security_options =
  noanonymous`` (plain-text mechanisms allowed: they only ever run inside TLS);
- ``<postfix_dir>/mailwarden/smarthost_tls``: ``[smtp.isp.example]:587 encrypt`` (or
  ``secure``, certificate checked, ``tafile=`` the CA given), named first in
  ``smtp_tls_policy_maps``: TLS is required to the smarthost only, so Postfix never
  sends the password in clear, and a server without STARTTLS gets no mail (it is
  deferred, not bounced), while the admin's other TLS settings stay as they are.

The password is read from standard input, never shown (``mask``: ``***`` in the dry run)
and never put on a command line. A re-run without ``--relayhost-password-stdin`` keeps
the password already in the map when the server and user are the same.

Who calls it: ``setup.answers`` (``parse_relayhost``, ``check_user``, ``check_password``),
``setup.plan`` (``wanted``, ``removal``, ``files``), ``doctor.smarthost`` (``host_port``).
Errors: ``UsageError`` (one line) for a malformed ``[host]:port``, user or password.
Pure functions except ``current_password`` (reads the map).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mailwarden.errors import UsageError

PASSWD_FILE = "smarthost_passwd"  # noqa: S105 - a file name
TLS_FILE = "smarthost_tls"
TLS_LEVELS = ("encrypt", "secure")
# Port 465 (implicit TLS) needs smtp_tls_wrappermode for every connection; mailwarden
# writes STARTTLS settings (587 or 25) only.
WRAPPER_PORT = 465
# Suffix of the file postmap(1) writes for each database type.
DB_SUFFIX = {"hash": ".db", "btree": ".db", "lmdb": ".lmdb", "cdb": ".cdb", "dbm": ".dir"}
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Smarthost:
    """What setup was asked for: ``relayhost`` "" means take the smarthost out."""

    relayhost: str
    user: str = ""
    password: str | None = None  # None: keep the one in the map (a re-run)
    tls: str = "encrypt"
    cafile: str = ""


def _hostname(host: str) -> bool:
    if re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", host):
        return all(int(part) < 256 for part in host.split("."))
    labels = host.split(".")
    return len(host) <= 253 and all(_LABEL.match(label) for label in labels)


def parse_relayhost(text: str) -> str:
    """``[host]:port``, ``[host]``, ``host:port`` or ``host``, as main.cf will hold it.

    Brackets mean "this host, no MX lookup" (what an ISP's submission server wants);
    without them Postfix looks up the domain's MX records, as it does for relayhost.
    """
    value = text.strip().lower()
    bracketed = value.startswith("[")
    if bracketed:
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise UsageError(f"--relayhost {text!r}: expected [host]:port")
        port = rest[1:] if rest else ""
    else:
        host, _, port = value.partition(":")
    if not host or not _hostname(host):
        raise UsageError(f"--relayhost {text!r}: {host!r} is not a host name or IPv4 address")
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise UsageError(f"--relayhost {text!r}: port must be 1..65535")
    if port and int(port) == WRAPPER_PORT:
        raise UsageError(
            f"--relayhost {text!r}: port 465 (implicit TLS) is not supported; "
            "use the submission port 587 (STARTTLS), which providers offer too"
        )
    shown = f"[{host}]" if bracketed else host
    return f"{shown}:{int(port)}" if port else shown


def host_port(relayhost: str) -> tuple[str, int, bool]:
    """(host, port, mx) of a relayhost value: ``[a]:587`` -> ("a", 587, False)."""
    value = relayhost.strip()
    mx = not value.startswith("[")
    if not mx:
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = value.partition(":")
    return host, int(port) if port.isdigit() else 25, mx


def check_user(user: str) -> str:
    if not user or any(c.isspace() or c == ":" for c in user) or not user.isprintable():
        raise UsageError("--relayhost-user must be non-empty, without spaces or ':'")
    return user


def check_password(password: str) -> str:
    """A password a Postfix map line can hold: one line, no leading/trailing blanks."""
    if not password:
        raise UsageError("--relayhost-password-stdin: the password is empty")
    if not password.isprintable() or password != password.strip():
        raise UsageError(
            "--relayhost-password-stdin: the password must be one line without control "
            "characters or leading/trailing blanks"
        )
    return password


def passwd_map(relayhost: str, user: str, password: str) -> str:
    """The SASL password map's source text (the key is relayhost verbatim)."""
    return (
        "# Written by 'mailwarden setup --relayhost'; re-running setup replaces it.\n"
        f"{relayhost} {user}:{password}\n"
    )


def tls_map(relayhost: str, level: str, cafile: str = "") -> str:
    """The TLS policy map's source text: TLS required to the smarthost only."""
    extra = f" tafile={cafile}" if cafile and level == "secure" else ""
    return (
        "# Written by 'mailwarden setup --relayhost'; re-running setup replaces it.\n"
        f"{relayhost} {level}{extra}\n"
    )


def mask(text: str) -> str:
    """A password map with every password shown as ``***``."""
    out = []
    for line in text.splitlines(keepends=True):
        fields = line.split(None, 1)
        if len(fields) == 2 and not line.lstrip().startswith("#") and ":" in fields[1]:
            user = fields[1].split(":", 1)[0]
            out.append(f"{fields[0]} {user}:***\n")
            continue
        out.append(line)
    return "".join(out)


def password_in(text: str, relayhost: str, user: str) -> str | None:
    """The password a map source holds for (relayhost, user), if any."""
    for line in text.splitlines():
        fields = line.split(None, 1)
        if len(fields) == 2 and fields[0] == relayhost:
            name, sep, password = fields[1].strip().partition(":")
            if sep and name == user:
                return password
    return None


def current_password(postfix_dir: str, relayhost: str, user: str) -> str | None:
    try:
        text = (Path(postfix_dir) / "mailwarden" / PASSWD_FILE).read_text()
    except FileNotFoundError:
        return None
    return password_in(text, relayhost, user)


def paths(postfix_dir: str) -> tuple[Path, Path]:
    """(password map, TLS policy map) source files."""
    d = Path(postfix_dir) / "mailwarden"
    return d / PASSWD_FILE, d / TLS_FILE


def split_list(value: str) -> list[str]:
    return [v for v in re.split(r"[\s,]+", value.strip()) if v]


def with_first(ours: str, current: str) -> str:
    """A map list with ours first, the admin's own maps kept after it."""
    rest = [m for m in split_list(current) if m != ours]
    return ", ".join([ours, *rest])


def wanted(
    relayhost: str, db_type: str, postfix_dir: str, current: dict[str, str]
) -> dict[str, str]:
    """The main.cf settings for a smarthost (``current``: ``postconf -n``)."""
    passwd, tls = (f"{db_type}:{p}" for p in paths(postfix_dir))
    return {
        "relayhost": relayhost,
        "smtp_sasl_auth_enable": "yes",
        "smtp_sasl_password_maps": with_first(passwd, current.get("smtp_sasl_password_maps", "")),
        "smtp_sasl_security_options": "noanonymous",
        "smtp_sasl_tls_security_options": "noanonymous",
        "smtp_tls_policy_maps": with_first(tls, current.get("smtp_tls_policy_maps", "")),
    }


def removal(
    db_type: str, postfix_dir: str, current: dict[str, str]
) -> tuple[list[tuple[str, str]], list[str]]:
    """(settings to set, keys to remove) that take the smarthost out again: ``relayhost``,
    our maps from the map lists, and the SASL switches while they still say what setup
    wrote (an admin's own value stays)."""
    ours = dict(wanted("", db_type, postfix_dir, {}))
    change: list[tuple[str, str]] = []
    remove: list[str] = []
    if current.get("relayhost"):
        remove.append("relayhost")
    for key in ("smtp_sasl_password_maps", "smtp_tls_policy_maps"):
        entries = split_list(current.get(key, ""))
        if ours[key] in entries:
            rest = [e for e in entries if e != ours[key]]
            if rest:
                change.append((key, ", ".join(rest)))
            else:
                remove.append(key)
    for key in ("smtp_sasl_auth_enable", "smtp_sasl_security_options"):
        if current.get(key) == ours[key]:
            remove.append(key)
    if current.get("smtp_sasl_tls_security_options") == ours["smtp_sasl_tls_security_options"]:
        remove.append("smtp_sasl_tls_security_options")
    return change, remove
