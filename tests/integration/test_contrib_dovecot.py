"""contrib/dovecot against the real schema: a real Dovecot 2.3 authenticating CLI-created
mailboxes through dovecot-sql.conf.ext.{mysql,sqlite} and 10-mailwarden-auth.conf.

The Dovecot of tests/servers.py gets the rendered 10-mailwarden-auth.conf in place of its
own passdb/userdb blocks, so the prefetch userdb and the mail location shipped in contrib/
are the ones under test. MariaDB is read through a SELECT-only account on dovecot_users.

Dovecot's auth penalty delays every attempt from an address that has just failed (about
4 s here), so each attempt meant to fail comes from its own client address: a ``rip``
for ``doveadm auth test``, a 127.0.0.x source address for IMAP and POP3.
"""

from __future__ import annotations

import imaplib
import itertools
import poplib
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.contrib import CONTRIB, DOVECOT_VIEWS, mail_settings, placeholders, reader_url, render
from tests.servers import Dovecot, missing_requirements

pytestmark = pytest.mark.integration

PASSWORD = "Corr3ct horse"
_client_ips = (f"127.0.0.{n}" for n in itertools.count(2))


def build_mailboxes(cli: Cli) -> None:
    cli.ok("domain", "add", "example.test")
    cli.ok("group", "add", "noimap", "--no-imap")
    cli.ok("group", "add", "nopop", "--no-pop3")
    cli.ok("group", "add", "nosmtp", "--no-smtp")
    pw = PASSWORD + "\n"
    cli.ok("user", "add", "alice@example.test", "--password-stdin", "--quota", "1G", stdin=pw)
    cli.ok("user", "add", "bob@example.test", "--password-stdin", "--scheme", "argon2id", stdin=pw)
    for name in ("noimap", "nopop", "nosmtp"):
        cli.ok("user", "add", f"{name}@example.test", "--password-stdin", "--group", name, stdin=pw)
    cli.ok("user", "add", "eve@example.test", "--password-stdin", "--inactive", stdin=pw)
    cli.ok("user", "add", "frank@example.test", "--password-stdin", stdin=pw)
    cli.ok("user", "set", "frank@example.test", "--active", "no")


def use_contrib_auth(dovecot: Dovecot, values: dict[str, str]) -> None:
    """Swap the passdb/userdb blocks of the generated dovecot.conf for the contrib file."""
    shutil.copy2(dovecot.sql_conf_path, dovecot.dir / "dovecot-sql.conf.ext")
    values = values | {"@DOVECOT_DIR@": str(dovecot.dir)}
    auth = render((CONTRIB / "dovecot/10-mailwarden-auth.conf").read_text(), values)
    conf, blocks = re.subn(
        r"^(passdb|userdb) \{\n.*?^\}\n", "", dovecot.conf_path.read_text(), flags=re.S | re.M
    )
    assert blocks == 2, "tests/servers.Dovecot changed its passdb/userdb blocks"
    dovecot.conf_path.write_text(conf + "\n# contrib/dovecot/10-mailwarden-auth.conf\n" + auth)


@pytest.fixture
def dovecot(cli: Cli, request: pytest.FixtureRequest, workdir: Path) -> Iterator[Dovecot]:
    if missing := missing_requirements(Dovecot):
        pytest.skip(f"Dovecot not usable: {', '.join(missing)}")
    build_mailboxes(cli)
    server = request.getfixturevalue("mariadb") if cli.url.startswith("mysql:") else None
    url = reader_url(cli.url, server, "dovecot", DOVECOT_VIEWS)
    root, uid, gid = mail_settings(cli.config_path)
    values = placeholders(url, mail_root=root, uid=uid, gid=gid)
    sql_file = CONTRIB / f"dovecot/dovecot-sql.conf.ext.{values['@DB_DIALECT@']}"
    sql_text = render(sql_file.read_text(), values)
    # auth_debug: the log shows which userdb answered (prefetch or sql).
    instance = Dovecot(workdir, sql_text, root, extra_conf="auth_debug = yes")
    use_contrib_auth(instance, values)
    instance.start()
    yield instance
    instance.stop()


def auth_test(dovecot: Dovecot, user: str, password: str, *info: str) -> bool:
    proc = dovecot.doveadm("auth", "test", *(f"-x{i}" for i in info), user, password)
    assert proc.returncode in (0, 77), proc.stdout + proc.stderr  # 77 = auth failed
    return proc.returncode == 0


def fresh_ip() -> str:
    return next(_client_ips)


class _Bound:
    """Connect from a given loopback address (the auth penalty is per client address)."""

    source = "127.0.0.1"

    def _create_socket(self, timeout: float | None) -> socket.socket:
        host, port = self.host, self.port  # type: ignore[attr-defined]
        return socket.create_connection((host, port), timeout, (self.source, 0))


class IMAP(_Bound, imaplib.IMAP4):
    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.source = source
        super().__init__("127.0.0.1", port, timeout=30)


class POP3(_Bound, poplib.POP3):
    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.source = source
        super().__init__("127.0.0.1", port, timeout=30)


def imap_login(dovecot: Dovecot, user: str, source: str = "127.0.0.1") -> bool:
    with IMAP(dovecot.imap_port, source) as imap:
        try:
            imap.login(user, PASSWORD)
        except imaplib.IMAP4.error:
            return False
        assert imap.select("INBOX")[0] == "OK"
        imap.logout()
        return True


def pop3_login(dovecot: Dovecot, user: str, source: str = "127.0.0.1") -> bool:
    pop = POP3(dovecot.pop3_port, source)
    try:
        pop.user(user)
        pop.pass_(PASSWORD)
    except poplib.error_proto:
        return False
    finally:
        pop.close()
    return True


def test_doveadm_auth(dovecot: Dovecot) -> None:
    assert auth_test(dovecot, "alice@example.test", PASSWORD)  # {CRYPT}$6$ (the default)
    assert auth_test(dovecot, "bob@example.test", PASSWORD)  # {ARGON2ID}
    assert auth_test(dovecot, "Alice@EXAMPLE.test", PASSWORD)  # auth_username_format = %Lu
    assert not auth_test(dovecot, "alice@example.test", "wrong", f"rip={fresh_ip()}")
    assert not auth_test(dovecot, "bob@example.test", "wrong", f"rip={fresh_ip()}")
    for inactive in ("eve@example.test", "frank@example.test", "nobody@example.test"):
        assert not auth_test(dovecot, inactive, PASSWORD, f"rip={fresh_ip()}")
    # The group's services, by the %s of the login.
    expected = {
        ("noimap", "imap"): False,
        ("noimap", "pop3"): True,
        ("nopop", "imap"): True,
        ("nopop", "pop3"): False,
        ("nosmtp", "smtp"): False,
        ("nosmtp", "imap"): True,
        ("alice", "smtp"): True,
        ("alice", "sieve"): True,
    }
    got = {
        (user, service): auth_test(
            dovecot, f"{user}@example.test", PASSWORD, f"service={service}", f"rip={fresh_ip()}"
        )
        for user, service in expected
    }
    assert got == expected


def test_imap_and_pop3_logins(dovecot: Dovecot) -> None:
    root = dovecot.mail_root
    assert imap_login(dovecot, "alice@example.test")
    # Dovecot created the Maildir at mail root + the mailbox's relative path.
    assert (root / "example.test/alice/cur").is_dir()
    assert imap_login(dovecot, "bob@example.test")
    assert pop3_login(dovecot, "alice@example.test")
    assert not imap_login(dovecot, "noimap@example.test", fresh_ip())
    assert pop3_login(dovecot, "noimap@example.test")
    assert imap_login(dovecot, "nopop@example.test")
    assert not pop3_login(dovecot, "nopop@example.test", fresh_ip())
    assert not imap_login(dovecot, "eve@example.test", fresh_ip())
    assert not pop3_login(dovecot, "frank@example.test", fresh_ip())
    assert not (root / "example.test/eve").exists()


def userdb_fields(output: str) -> dict[str, str]:
    fields = {}
    for line in output.splitlines():
        key, sep, value = line.strip().partition("\t")
        if sep:
            fields[key] = value
    return fields


def test_userdb(dovecot: Dovecot) -> None:
    root = dovecot.mail_root
    proc = dovecot.doveadm("user", "alice@example.test")
    assert proc.returncode == 0, proc.stderr
    fields = userdb_fields(proc.stdout)
    assert fields["home"] == f"{root}/example.test/alice/"
    assert fields["uid"] == "5000" and fields["gid"] == "5000"
    assert fields["quota_rule"] == f"*:bytes={1 << 30}:messages=0"
    assert fields["mail"] == "maildir:~/"
    assert dovecot.doveadm("user", "eve@example.test").returncode == 67  # EX_NOUSER
    # iterate_query: every mailbox that may log in, none of the inactive ones.
    proc = dovecot.doveadm("user", "*")
    assert sorted(proc.stdout.split()) == [
        f"{u}@example.test" for u in ("alice", "bob", "noimap", "nopop", "nosmtp")
    ]
    # A login takes its userdb fields from the passdb query's userdb_* (prefetch).
    proc = dovecot.doveadm("auth", "login", "alice@example.test", PASSWORD)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    userdb = proc.stdout.partition("userdb extra fields:")[2].split()
    assert f"home={root}/example.test/alice/" in userdb
    assert f"quota_rule=*:bytes={1 << 30}:messages=0" in userdb
    assert "uid=5000" in userdb
    assert "prefetch(alice@example.test): success" in dovecot.log_path.read_text()


def test_services_without_mail_refuse_imap_pop3_and_delivery(cli: Cli, dovecot: Dovecot) -> None:
    """The services bitfield's mail bit (1): off = no login over IMAP/POP3 (the passdb
    reads dovecot_users, which holds only mailboxes with mail) and no userdb (deliveries);
    on again = both back. The same bit core.recipient reads for its 5.2.1 at RCPT."""
    cli.ok(
        "user",
        "add",
        "dav@example.test",
        "--password-stdin",
        "--services",
        "calendar,contacts",
        stdin=PASSWORD + "\n",
    )
    assert not auth_test(dovecot, "dav@example.test", PASSWORD, f"rip={fresh_ip()}")
    assert not imap_login(dovecot, "dav@example.test", fresh_ip())
    assert not pop3_login(dovecot, "dav@example.test", fresh_ip())
    assert dovecot.doveadm("user", "dav@example.test").returncode == 67  # EX_NOUSER
    cli.ok("user", "set", "dav@example.test", "--services", "mail,calendar")
    assert auth_test(dovecot, "dav@example.test", PASSWORD, f"rip={fresh_ip()}")
    assert imap_login(dovecot, "dav@example.test", fresh_ip())
