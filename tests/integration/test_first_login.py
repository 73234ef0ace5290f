"""Provisioning at the first login through a real Dovecot 2.3 (seed 002's
``checkUserProvisioning``), on SQLite and MariaDB.

Dovecot runs with contrib/dovecot's auth (10-mailwarden-auth.conf + the SQL file), its
folders (15-mailwarden-mailboxes.conf: Drafts, Sent, Trash, Junk with ``auto =
subscribe``) and its post-login script (mailwarden-postlogin.sh via
93-mailwarden-postlogin.conf), which runs ``mailwarden user first-login``. The first
IMAP login finds the four folders there and subscribed (Dovecot makes a folder's
directory when a client first uses it), ``last_login`` and
``provisioned_at`` set and one ``first login: OK`` line; a second login changes nothing.
The API's ``/me`` is the other first login (tests/integration/test_api.py).
"""

from __future__ import annotations

import imaplib
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailwarden.store.db import Database
from tests.conftest import Cli
from tests.contrib import CONTRIB, DOVECOT_VIEWS, mail_settings, placeholders, reader_url, render
from tests.integration.test_contrib_dovecot import IMAP, POP3, use_contrib_auth
from tests.servers import Dovecot, missing_requirements

pytestmark = pytest.mark.integration
SRC = Path(__file__).resolve().parents[2] / "src"
PASSWORD = "Corr3ct horse"
FOLDERS = {"Drafts", "Sent", "Trash", "Junk"}


def hook_files(base: Path, config: Path) -> str:
    """The contrib post-login script (its command's output kept in hook.out) and the
    Dovecot blocks that run it and create the folders."""
    wrapper = base / "mailwarden"
    wrapper.write_text(
        f'#!/bin/sh\nPYTHONPATH={SRC} {sys.executable} -m mailwarden "$@" >>{base}/hook.out 2>&1\n'
    )
    wrapper.chmod(0o755)
    text = (CONTRIB / "dovecot/mailwarden-postlogin.sh").read_text()
    text = text.replace("MAILWARDEN=/usr/local/bin/mailwarden", f"MAILWARDEN={wrapper}")
    text = text.replace(
        "MAILWARDEN_CONFIG=/etc/mailwarden/mailwarden.toml", f"MAILWARDEN_CONFIG={config}"
    )
    script = base / "postlogin.sh"
    script.write_text(text)
    script.chmod(0o755)
    conf = (CONTRIB / "dovecot/93-mailwarden-postlogin.conf").read_text()
    conf = conf.replace("/usr/local/lib/mailwarden/postlogin.sh", str(script))
    conf = conf.replace("user = $default_internal_user", "user = root")
    return conf + "\n" + (CONTRIB / "dovecot/15-mailwarden-mailboxes.conf").read_text()


@pytest.fixture
def dovecot(cli: Cli, request: pytest.FixtureRequest, workdir: Path) -> Iterator[Dovecot]:
    if missing := missing_requirements(Dovecot):
        pytest.skip(f"Dovecot not usable: {', '.join(missing)}")
    cli.ok("domain", "add", "example.test")
    for user in ("alice", "bob"):
        cli.ok("user", "add", f"{user}@example.test", "--password-stdin", stdin=PASSWORD + "\n")
    server = request.getfixturevalue("mariadb") if cli.url.startswith("mysql:") else None
    url = reader_url(cli.url, server, "dovecot", DOVECOT_VIEWS)
    root, uid, gid = mail_settings(cli.config_path)
    values = placeholders(url, mail_root=root, uid=uid, gid=gid)
    sql_file = CONTRIB / f"dovecot/dovecot-sql.conf.ext.{values['@DB_DIALECT@']}"
    base = Path(tempfile.mkdtemp(prefix="first-login.", dir=workdir))
    instance = Dovecot(
        workdir,
        render(sql_file.read_text(), values),
        root,
        extra_conf=hook_files(base, cli.config_path),
    )
    use_contrib_auth(instance, values)
    instance.start()
    instance.hook_out = base / "hook.out"  # type: ignore[attr-defined]
    yield instance
    instance.stop()


def state(cli: Cli, user: str) -> dict[str, object]:
    db = Database(cli.url)
    try:
        with db.read() as tx:
            row = tx.one(
                "SELECT provisioned_at, last_login FROM mailboxes WHERE address = ?", (user,)
            )
    finally:
        db.close()
    assert row is not None
    return row


def wait_provisioned(cli: Cli, user: str, timeout: float = 20.0) -> dict[str, object]:
    """The script's command runs in the background: wait for its row."""
    deadline = time.monotonic() + timeout
    while (row := state(cli, user))["provisioned_at"] is None:
        assert time.monotonic() < deadline, f"{user}: not provisioned after the login"
        time.sleep(0.2)
    return row


def folders(dovecot: Dovecot, user: str) -> tuple[set[str], set[str]]:
    """(every folder, the subscribed ones) as the IMAP client sees them."""
    with IMAP(dovecot.imap_port) as imap:
        imap.login(user, PASSWORD)
        listed = {_name(line) for line in imap.list()[1]}
        subscribed = {_name(line) for line in imap.lsub()[1]}
        imap.logout()
    return listed, subscribed


def _name(line: object) -> str:
    text = line.decode() if isinstance(line, bytes) else str(line)
    return re.sub(r'^\(.*?\) "?.?"? ', "", text).strip('"')


def hook_lines(dovecot: Dovecot) -> list[str]:
    path: Path = dovecot.hook_out  # type: ignore[attr-defined]
    text = path.read_text() if path.exists() else ""
    return [ln for ln in text.splitlines() if ln.startswith("first login:")]


def test_first_imap_login_provisions_once(cli: Cli, dovecot: Dovecot) -> None:
    user = "alice@example.test"
    assert state(cli, user) == {"provisioned_at": None, "last_login": None}
    listed, subscribed = folders(dovecot, user)
    assert FOLDERS | {"INBOX"} <= listed
    assert subscribed >= FOLDERS
    # Dovecot makes a folder's directory when it is first used; to IMAP they exist now
    box = dovecot.mail_root / "example.test/alice"
    first = wait_provisioned(cli, user)
    assert first["last_login"] is not None
    assert hook_lines(dovecot) == [
        f"first login: OK address={user} client=127.0.0.1 "
        f"services=mail,calendar,contacts maildir={box}"
    ]
    # the second login: nothing changes, no second line
    again_listed, again_subscribed = folders(dovecot, user)
    assert (again_listed, again_subscribed) == (listed, subscribed)
    time.sleep(3)  # the background command of the second login has run by now
    assert state(cli, user)["provisioned_at"] == first["provisioned_at"]
    assert len(hook_lines(dovecot)) == 1
    # a failed login provisions nothing
    with IMAP(dovecot.imap_port, "127.0.0.9") as imap, pytest.raises(imaplib.IMAP4.error):
        imap.login("bob@example.test", "wrong")
    time.sleep(2)
    assert state(cli, "bob@example.test")["provisioned_at"] is None


def test_first_pop3_login_provisions_too(cli: Cli, dovecot: Dovecot) -> None:
    pop = POP3(dovecot.pop3_port)
    try:
        pop.user("bob@example.test")
        pop.pass_(PASSWORD)
        pop.quit()
    finally:
        pop.close()
    assert wait_provisioned(cli, "bob@example.test")["last_login"] is not None
    listed, subscribed = folders(dovecot, "bob@example.test")
    assert listed >= FOLDERS and subscribed >= FOLDERS
