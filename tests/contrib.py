"""Render the files in ``contrib/`` for a test database, the way ``mailwarden setup`` will.

The contrib files are templates with ``@NAME@`` placeholders (listed in
``contrib/README.md``). ``placeholders`` computes their values from a database URL and the
``[mail]`` settings; ``render`` substitutes them and refuses to leave one behind.
``@TCP@`` and ``@SOCKET@`` start the lines that only apply to a TCP or a unix-socket
MySQL connection: the one in use becomes ``""``, the other ``"#"`` (a comment in every
file format involved).

Courier authlib will not read an rc file without the sysconftool markers of the installed
one, so ``courier_rc`` merges the key lines of ``contrib/courier/*.mailwarden`` into the
installed ``/etc/courier/auth*rc`` text instead of replacing it.

Used by tests/integration/test_contrib_*.py; touches only the paths it is given.
"""

from __future__ import annotations

import re
import secrets
import shutil
import tomllib
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from mailwarden.setup import render as setup_render
from mailwarden.store.db import parse_url

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"

POSTFIX_VIEWS = (
    "postfix_mailbox_domains",
    "postfix_alias_domains",
    "postfix_relay_domains",
    "postfix_transport",
    "postfix_mailboxes",
    "postfix_virtual_alias",
    "postfix_alias_domain_map",
    "postfix_sender_login",
    "postfix_list_transport",
    "postfix_domain_classes",
)
DOVECOT_VIEWS = ("dovecot_users",)
COURIER_VIEWS = ("courier_users",)

_RC_KEY = re.compile(r"^([A-Z][A-Z0-9_]*)[ \t]+\S")


def placeholders(
    url: str,
    *,
    mail_root: Path | str,
    uid: int = 5000,
    gid: int = 5000,
    dovecot_dir: Path | str = "/etc/dovecot",
    postfix_dir: Path | str = "/etc/postfix/mailwarden",
    sasl_socket: Path | str = "/var/spool/postfix/private/auth",
) -> dict[str, str]:
    """Values of every placeholder, exactly as ``mailwarden setup`` computes them."""
    return setup_render.placeholders(
        url,
        mail_root=str(mail_root),
        uid=uid,
        gid=gid,
        dovecot_dir=str(dovecot_dir),
        postfix_dir=str(postfix_dir),
        sasl_socket=str(sasl_socket),
    )


# The same substitution ``mailwarden setup`` writes files with.
render = setup_render.render
main_cf_settings = setup_render.main_cf_settings


def render_file(
    relpath: str, values: dict[str, str], dest: Path, *, mode: int = 0o644, group: str = "root"
) -> Path:
    """Render ``contrib/<relpath>`` to the file ``dest`` (owner root, ``group``); return it.

    A missing parent directory is created with the same group and mode 0750.
    """
    if not dest.parent.is_dir():
        dest.parent.mkdir(mode=0o750, parents=True)
        shutil.chown(dest.parent, group=group)
    dest.write_text(render((CONTRIB / relpath).read_text(), values))
    shutil.chown(dest, group=group)
    dest.chmod(mode)
    return dest


def mail_settings(config_path: Path) -> tuple[Path, int, int]:
    """``[mail]`` root, uid and gid of a mailwarden TOML config file."""
    mail = tomllib.loads(config_path.read_text())["mail"]
    return Path(mail["root"]), int(mail["uid"]), int(mail["gid"])


def rc_keys(text: str) -> dict[str, str]:
    """The active ``KEY value`` lines of a Courier rc file or fragment (comments skipped)."""
    keys: dict[str, str] = {}
    for line in text.splitlines():
        match = _RC_KEY.match(line)
        if match:
            keys[match.group(1)] = line
    return keys


def courier_rc(installed: str, fragment: str) -> str:
    """The installed rc text with the fragment's keys replaced in place or added.

    A key already active in the installed file is replaced on its own line; a new key is
    added just before the ``##NAME: MARKER`` block, which must stay last. The
    ``##VERSION`` line and every ``##NAME`` line are kept as they are.
    """
    wanted = rc_keys(fragment)
    lines = installed.splitlines()
    marker = next((i for i, line in enumerate(lines) if line.startswith("##NAME: MARKER")), None)
    if not lines or not lines[0].startswith("##VERSION:") or marker is None:
        raise ValueError("not a sysconftool rc file: ##VERSION or ##NAME: MARKER line missing")
    done: set[str] = set()
    out: list[str] = []
    for line in lines[:marker]:
        match = _RC_KEY.match(line)
        if match and match.group(1) in wanted:
            if match.group(1) not in done:
                out.append(wanted[match.group(1)])
                done.add(match.group(1))
            continue
        out.append(line)
    added = [wanted[key] for key in wanted if key not in done]
    if added:
        out += ["# mailwarden", *added, ""]
    return "\n".join(out + lines[marker:]) + "\n"


class SqlServer(Protocol):
    """What ``reader_url`` needs of tests.servers.MariaDB."""

    def execute(self, sql: str, database: str | None = None) -> str: ...


def reader_url(url: str, server: SqlServer | None, role: str, views: tuple[str, ...]) -> str:
    """A URL for an MTA/IMAP server: for MySQL a new account that may only SELECT ``views``.

    That is how contrib/README.md says to deploy, and Dovecot 2.3 needs it anyway: it
    splits ``connect`` at spaces, so the CLI's own password (the tests use one with a space
    and a quote) cannot go there. SQLite URLs come back unchanged.
    """
    db = parse_url(url)
    if db.dialect != "mysql":
        return url
    if server is None:
        raise ValueError("a MySQL URL needs the MariaDB server to create the account")
    user, password = f"{db.database}_{role}"[:80], secrets.token_hex(12)
    stmts = []
    for host in ("127.0.0.1", "localhost"):
        account = f"'{user}'@'{host}'"
        stmts.append(f"CREATE OR REPLACE USER {account} IDENTIFIED BY '{password}'")
        stmts += [f"GRANT SELECT ON `{db.database}`.`{view}` TO {account}" for view in views]
    server.execute(";\n".join(stmts) + ";")
    return f"mysql://{user}:{password}@{db.host}:{db.port}/{quote(db.database)}"


def via_socket(url: str, socket: Path | str) -> str:
    """The same MySQL URL, connecting over the server's unix socket instead of TCP."""
    return f"{url}?unix_socket={quote(str(socket))}"
