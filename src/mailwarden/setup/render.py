"""Render the ``contrib/`` templates: ``@NAME@`` placeholders (contrib/README.md).

``placeholders`` computes the values from a database URL and the ``[mail]`` settings;
``render`` substitutes them and refuses to leave one behind. ``@TCP@`` and ``@SOCKET@``
start the lines that only apply to a TCP or a unix-socket MySQL connection: the one in
use becomes ``""``, the other ``"#"``; ``@SQLITE@`` and ``@MYSQL@`` start lines for one
dialect only.
``main_cf_settings`` reads a main.cf fragment.

The same logic as ``tests/contrib.py`` (which CI uses to test these templates against
real Postfix and Dovecot), so what setup writes is what was tested.
"""

from __future__ import annotations

import grp
import os
import re
import sys
from pathlib import Path

from mailwarden.errors import ConfigError
from mailwarden.store.db import parse_url

_PLACEHOLDER = re.compile(r"@[A-Z][A-Z0-9_]*@")


def contrib_dir(explicit: str | None = None) -> Path:
    """Where the contrib templates are: ``--contrib-dir``, ``$MAILWARDEN_CONTRIB``, the
    source checkout this module runs from, or a shared data directory."""
    here = Path(__file__).resolve()
    candidates = [
        explicit,
        os.environ.get("MAILWARDEN_CONTRIB"),
        str(here.parents[3] / "contrib"),
        f"{sys.prefix}/share/mailwarden/contrib",
        "/usr/share/mailwarden/contrib",
        "/opt/mailwarden/contrib",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "postfix" / "main.cf.maps").is_file():
            return Path(candidate)
    if explicit:
        raise ConfigError(f"--contrib-dir {explicit}: no contrib/postfix/main.cf.maps there")
    raise ConfigError("contrib templates not found: give --contrib-dir (the repository's contrib/)")


def placeholders(
    url: str,
    *,
    mail_root: str,
    uid: int,
    gid: int,
    dovecot_dir: str,
    postfix_dir: str,
    sasl_socket: str = "/var/spool/postfix/private/auth",
) -> dict[str, str]:
    """Values of every placeholder for one database URL and mail root; ``sasl_socket``
    is Postfix's ``queue_directory`` + ``/private/auth`` (Dovecot's SASL listener)."""
    db = parse_url(url)
    socket = db.dialect == "mysql" and bool(db.unix_socket)
    return {
        "@DB_HOST@": db.host if db.dialect == "mysql" else "",
        "@DB_PORT@": str(db.port) if db.dialect == "mysql" else "",
        "@DB_USER@": db.user,
        "@DB_PASSWORD@": db.password,
        "@DB_NAME@": db.database,
        "@DB_SOCKET@": db.unix_socket,
        "@SQLITE_PATH@": db.path,
        "@MAIL_ROOT@": mail_root.rstrip("/"),
        "@MAIL_UID@": str(uid),
        "@MAIL_GID@": str(gid),
        "@MAIL_GROUP@": _group_name(gid),
        "@DB_DIALECT@": db.dialect,
        "@DOVECOT_DIR@": dovecot_dir.rstrip("/"),
        "@POSTFIX_DIR@": postfix_dir.rstrip("/"),
        "@SASL_SOCKET@": sasl_socket,
        "@TCP@": "#" if socket else "",
        "@SOCKET@": "" if socket else "#",
        "@SQLITE@": "" if db.dialect == "sqlite" else "#",
        "@MYSQL@": "" if db.dialect == "mysql" else "#",
    }


def _group_name(gid: int) -> str:
    """The name of the mail group (Dovecot's unix_listener ``group`` takes only names)."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def render(text: str, values: dict[str, str]) -> str:
    """Substitute every placeholder; ConfigError names one that has no value."""

    def one(match: re.Match[str]) -> str:
        try:
            value = values[match.group(0)]
        except KeyError:
            raise ConfigError(f"contrib template: unknown placeholder {match.group(0)}") from None
        if "\n" in value or "\r" in value:
            # A newline in a password or path would inject configuration lines.
            raise ConfigError(f"contrib template: {match.group(0)} must be a single line")
        return value

    return _PLACEHOLDER.sub(one, text)


def main_cf_settings(text: str) -> dict[str, str]:
    """``name = value`` pairs of a main.cf fragment (comments dropped, continuations joined)."""
    settings: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and name:
            settings[name] = f"{settings[name]} {line.strip()}".strip()
            continue
        name, _, value = line.partition("=")
        name = name.strip()
        settings[name] = value.strip()
    return settings


def normalize(value: str) -> str:
    """A main.cf value with whitespace collapsed, for comparing."""
    return " ".join(value.split())
