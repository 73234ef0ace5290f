"""contrib/postfix against the real schema: every map through ``postmap -q``, then a real
Postfix wired with contrib/postfix/main.cf.maps resolving mail end to end.

All data is created with the mailwarden CLI, in SQLite and in MariaDB (``cli`` fixture).
Postfix reads MariaDB through a SELECT-only account on the postfix_* views, as
contrib/README.md tells admins to set it up.
"""

from __future__ import annotations

import os
import re
import smtplib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.contrib import (
    CONTRIB,
    POSTFIX_VIEWS,
    mail_settings,
    main_cf_settings,
    placeholders,
    reader_url,
    render,
    render_file,
    via_socket,
)
from tests.servers import Postfix, missing_requirements

pytestmark = pytest.mark.integration

MAPS = (
    "virtual_mailbox_domains",
    "virtual_alias_domains",
    "virtual_mailbox_maps",
    "virtual_alias_maps",
    "virtual_alias_domain_maps",
    "relay_domains",
    "transport_maps",
    "smtpd_sender_login_maps",
    "list_transport_maps",  # mailing lists: tests/integration/test_cli_lists.py queries it
)
DISCARD = "discard@discard.mailwarden.invalid"


def build_mail_system(cli: Cli) -> None:
    """The scenario every test here reads (passwords are irrelevant to Postfix)."""
    for args in (
        ("domain", "add", "example.test"),
        ("domain", "add", "other.test"),
        ("domain", "add", "alias.test", "--alias-of", "example.test"),
        ("domain", "add", "alias2.test", "--alias-of", "other.test"),
        ("domain", "add", "relay.test", "--relay", "--transport", "smtp:[mx.relay.test]"),
        ("domain", "add", "backup.test", "--relay", "--transport", "discard:relayed"),
    ):
        cli.ok(*args)
    for address in ("alice", "bob", "carol", "dave"):
        cli.ok("user", "add", f"{address}@example.test", "--password-stdin", stdin="pw\n")
    cli.ok("user", "add", "eve@other.test", "--password-stdin", "--inactive", stdin="pw\n")
    cli.ok("user", "add", "frank@other.test", "--password-stdin", stdin="pw\n")
    cli.ok("user", "set", "frank@other.test", "--active", "no")
    cli.ok("alias", "add", "info@example.test", "alice@example.test")
    cli.ok("alias", "add", "team@example.test", "alice@example.test", "bob@example.test")
    cli.ok("alias", "add", "@example.test", "bob@example.test")
    cli.ok("alias", "add", "null@example.test", "discard")
    cli.ok("forward", "set", "carol@example.test", "carol@outside.test")
    cli.ok("forward", "set", "dave@example.test", "dave@outside.test", "--keep-copy")
    cli.ok("sendas", "grant", "alice@example.test", "boss@example.test")
    # Wildcards: *.wild.test is local; an exact relay domain and a longer relay wildcard
    # inside it win over it; a switched-off exact domain is not taken over.
    for args in (
        ("domain", "add", "*.wild.test"),
        ("domain", "add", "exact.wild.test", "--relay", "--transport", "discard:exactrelay"),
        ("domain", "add", "*.deep.wild.test", "--relay", "--transport", "discard:deeprelay"),
        ("domain", "add", "off.wild.test"),
        ("domain", "set", "off.wild.test", "--active", "no"),
    ):
        cli.ok(*args)
    cli.ok("user", "add", "w@a.wild.test", "--password-stdin", stdin="pw\n")


@dataclass
class PostfixMaps:
    """The contrib maps rendered for one test database, queried with ``postmap -q``."""

    postfix: Postfix
    dialect: str
    url: str
    map_dir: Path
    values: dict[str, str]

    def spec(self, name: str) -> str:
        return f"{self.dialect}:{self.map_dir / name}.cf"

    def q(self, name: str, key: str) -> str | None:
        return self.postfix.postmap_q(key, self.spec(name))

    def q_list(self, name: str, key: str) -> list[str] | None:
        value = self.q(name, key)
        return None if value is None else sorted(value.split(","))


def render_maps(cli: Cli, request: pytest.FixtureRequest, postfix: Postfix) -> PostfixMaps:
    """Render contrib/postfix/<dialect>/*.cf into the Postfix config dir (group postfix)."""
    server = request.getfixturevalue("mariadb") if cli.url.startswith("mysql:") else None
    url = reader_url(cli.url, server, "postfix", POSTFIX_VIEWS)
    map_dir = postfix.config_dir / "mailwarden"
    root, uid, gid = mail_settings(cli.config_path)
    values = placeholders(url, mail_root=root, uid=uid, gid=gid, postfix_dir=map_dir)
    dialect = values["@DB_DIALECT@"]
    for name in MAPS:
        path = render_file(
            f"postfix/{dialect}/{name}.cf",
            values,
            map_dir / f"{name}.cf",
            mode=0o640,
            group="postfix",
        )
        past = time.time() - 60  # Postfix pauses before reading a file changed within 1 s
        os.utime(path, (past, past))
    return PostfixMaps(postfix, dialect, url, map_dir, values)


@pytest.fixture
def maps(cli: Cli, request: pytest.FixtureRequest, workdir: Path) -> Iterator[PostfixMaps]:
    if missing := missing_requirements(Postfix):
        pytest.skip(f"Postfix not usable: {', '.join(missing)}")
    build_mail_system(cli)
    postfix = Postfix(workdir)
    yield render_maps(cli, request, postfix)
    postfix.stop()


# --------------------------------------------------------------------------- postmap -q

VA, AD, SL = "virtual_alias_maps", "virtual_alias_domain_maps", "smtpd_sender_login_maps"

# (map, key) -> the sorted results postmap -q must print, None = not found.
LOOKUPS: dict[tuple[str, str], list[str] | None] = {
    # Domain classes: each domain in exactly one (Postfix refuses a domain in two).
    ("virtual_mailbox_domains", "example.test"): ["example.test"],
    ("virtual_mailbox_domains", "other.test"): ["other.test"],
    ("virtual_mailbox_domains", "alias.test"): None,
    ("virtual_mailbox_domains", "relay.test"): None,
    ("virtual_mailbox_domains", "unknown.test"): None,
    ("virtual_alias_domains", "alias.test"): ["alias.test"],
    ("virtual_alias_domains", "example.test"): None,
    ("virtual_alias_domains", "relay.test"): None,
    ("relay_domains", "relay.test"): ["relay.test"],
    ("relay_domains", "backup.test"): ["backup.test"],
    ("relay_domains", "example.test"): None,
    ("relay_domains", "alias.test"): None,
    # Wildcards (postfix_domain_classes): exact wins, then the longest suffix.
    ("virtual_mailbox_domains", "a.wild.test"): ["a.wild.test"],
    ("virtual_mailbox_domains", "x.y.wild.test"): ["x.y.wild.test"],
    ("virtual_mailbox_domains", "deep.wild.test"): ["deep.wild.test"],
    ("virtual_mailbox_domains", "A.Wild.Test"): ["a.wild.test"],
    ("virtual_mailbox_domains", "wild.test"): None,
    ("virtual_mailbox_domains", ".a.wild.test"): None,
    ("virtual_mailbox_domains", "exact.wild.test"): None,
    ("virtual_mailbox_domains", "b.deep.wild.test"): None,
    ("virtual_mailbox_domains", "off.wild.test"): None,
    ("virtual_mailbox_domains", "notwild.test"): None,
    ("relay_domains", "exact.wild.test"): ["exact.wild.test"],
    ("relay_domains", "b.deep.wild.test"): ["b.deep.wild.test"],
    ("relay_domains", "c.b.deep.wild.test"): ["c.b.deep.wild.test"],
    ("relay_domains", "a.wild.test"): None,
    ("relay_domains", "deep.wild.test"): None,
    ("relay_domains", ".b.deep.wild.test"): None,
    ("transport_maps", "exact.wild.test"): ["discard:exactrelay"],
    ("transport_maps", "b.deep.wild.test"): ["discard:deeprelay"],
    ("transport_maps", ".b.deep.wild.test"): None,
    ("transport_maps", "x@b.deep.wild.test"): None,
    ("transport_maps", "a.wild.test"): None,
    ("virtual_alias_domains", "a.wild.test"): None,
    ("virtual_mailbox_maps", "w@a.wild.test"): ["a.wild.test/w/"],
    # Mailboxes: forwarding keeps the mailbox; inactive ones are gone (both ways to be so).
    ("virtual_mailbox_maps", "alice@example.test"): ["example.test/alice/"],
    ("virtual_mailbox_maps", "carol@example.test"): ["example.test/carol/"],
    ("virtual_mailbox_maps", "eve@other.test"): None,
    ("virtual_mailbox_maps", "frank@other.test"): None,
    ("virtual_mailbox_maps", "info@example.test"): None,
    ("virtual_mailbox_maps", "@example.test"): None,
    ("virtual_mailbox_maps", "alice@alias.test"): None,
    # Aliases. A mailbox maps to itself, so Postfix finds it before the catch-all.
    (VA, "alice@example.test"): ["alice@example.test"],
    (VA, "info@example.test"): ["alice@example.test"],
    (VA, "team@example.test"): ["alice@example.test", "bob@example.test"],
    (VA, "@example.test"): ["bob@example.test"],
    (VA, "unknown@example.test"): None,
    (VA, "null@example.test"): [DISCARD],
    # A forward without a copy replaces the mailbox; with --keep-copy both get the mail.
    (VA, "carol@example.test"): ["carol@outside.test"],
    (VA, "dave@example.test"): ["dave@example.test", "dave@outside.test"],
    (VA, "eve@other.test"): None,
    (VA, "frank@other.test"): None,
    (VA, "alice@alias.test"): None,
    # Alias domain: x@alias.test -> x@example.test, @alias.test -> the catch-all targets.
    (AD, "alice@alias.test"): ["alice@example.test"],
    (AD, "info@alias.test"): ["info@example.test"],
    (AD, "carol@alias.test"): ["carol@example.test"],
    (AD, "@alias.test"): ["bob@example.test"],
    (AD, "unknown@alias.test"): None,
    (AD, "alice@example.test"): None,
    (AD, "@example.test"): None,
    (AD, "alias.test"): None,
    (AD, "@alias2.test"): None,
    (AD, "eve@alias2.test"): None,
    # Transports: relay domains, and the discard sink.
    ("transport_maps", "relay.test"): ["smtp:[mx.relay.test]"],
    ("transport_maps", "backup.test"): ["discard:relayed"],
    ("transport_maps", "discard.mailwarden.invalid"): ["discard:"],
    ("transport_maps", "example.test"): None,
    ("transport_maps", "someone@relay.test"): None,
    # Send-as: itself, its aliases, its alias-domain address, explicit grants.
    (SL, "alice@example.test"): ["alice@example.test"],
    (SL, "info@example.test"): ["alice@example.test"],
    (SL, "team@example.test"): ["alice@example.test", "bob@example.test"],
    (SL, "alice@alias.test"): ["alice@example.test"],
    (SL, "boss@example.test"): ["alice@example.test"],
    # A catch-all gives no right to send as every address of the domain.
    (SL, "unknown@example.test"): None,
    (SL, "@example.test"): None,
    (SL, "eve@other.test"): None,
}


def test_contrib_maps_render_to_plain_postfix_tables() -> None:
    for dialect in ("mysql", "sqlite"):
        url = "sqlite:////var/lib/mw.db" if dialect == "sqlite" else "mysql://u:p@h:1/db"
        values = placeholders(url, mail_root="/var/vmail")
        assert {p.stem for p in (CONTRIB / "postfix" / dialect).glob("*.cf")} == set(MAPS)
        for name in MAPS:
            text = render((CONTRIB / "postfix" / dialect / f"{name}.cf").read_text(), values)
            assert "query = SELECT " in text, name
            for line in text.splitlines():
                # Postfix has no trailing comments: a '#' after a value is part of it.
                assert line.startswith("#") or "#" not in line, f"{dialect}/{name}: {line!r}"


def test_postmap_lookups(maps: PostfixMaps, request: pytest.FixtureRequest) -> None:
    got = {(name, key): maps.q_list(name, key) for name, key in LOOKUPS}
    assert got == LOOKUPS
    if maps.dialect == "mysql":
        # The other connection variant of the same files: the server's unix socket.
        mariadb = request.getfixturevalue("mariadb")
        values = placeholders(via_socket(maps.url, mariadb.socket), mail_root="/var/vmail")
        path = render_file(
            "postfix/mysql/virtual_mailbox_maps.cf", values, maps.map_dir / "socket.cf"
        )
        assert "\nhosts = unix:" in path.read_text()
        assert (
            maps.postfix.postmap_q("alice@example.test", f"mysql:{path}") == "example.test/alice/"
        )


# --------------------------------------------------------------------------- real Postfix


def send(port: int, rcpt: str) -> tuple[int, str]:
    """One message to one recipient; (RCPT code, queue id or RCPT reply text)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("sender@outside.test")
        code, reply = smtp.rcpt(rcpt)
        if code != 250:
            return code, reply.decode()
        code, reply = smtp.data(f"From: sender@outside.test\r\nTo: {rcpt}\r\n\r\ntest\r\n")
        assert code == 250, reply
        match = re.search(r"queued as (\w+)", reply.decode())
        assert match, reply
        return code, match.group(1)


def delivered(postfix: Postfix, queue_id: str) -> set[tuple[str, str]]:
    """(final recipient, discard(8) reason) for each delivery of one message."""
    postfix.wait_log(rf"{queue_id}: removed", timeout=30)
    log = postfix.log_text()
    pattern = rf"{queue_id}: to=<([^>]*)>.*status=sent \(([^)]*)\)"
    return set(re.findall(pattern, log))


# Where each test recipient must end up: (final recipient, discard(8) reason). Every
# delivery ends in discard(8): virtual_transport = discard:mailbox, external mail goes to
# default_transport = discard:external, relay domains and the sink have their own.
MAILBOX, EXTERNAL = "mailbox", "external"
ROUTES: dict[str, set[tuple[str, str]]] = {
    "alice@example.test": {("alice@example.test", MAILBOX)},
    "team@example.test": {("alice@example.test", MAILBOX), ("bob@example.test", MAILBOX)},
    "unknown@example.test": {("bob@example.test", MAILBOX)},
    "alice@alias.test": {("alice@example.test", MAILBOX)},
    "info@alias.test": {("alice@example.test", MAILBOX)},
    "unknown@alias.test": {("bob@example.test", MAILBOX)},
    "carol@example.test": {("carol@outside.test", EXTERNAL)},
    "carol@alias.test": {("carol@outside.test", EXTERNAL)},
    "dave@example.test": {("dave@example.test", MAILBOX), ("dave@outside.test", EXTERNAL)},
    "null@example.test": {(DISCARD, "discard.mailwarden.invalid")},
    "someone@backup.test": {("someone@backup.test", "relayed")},
    "w@a.wild.test": {("w@a.wild.test", MAILBOX)},
    "someone@exact.wild.test": {("someone@exact.wild.test", "exactrelay")},
    "someone@b.deep.wild.test": {("someone@b.deep.wild.test", "deeprelay")},
}


def test_real_postfix_routes_through_main_cf_maps(maps: PostfixMaps) -> None:
    postfix = maps.postfix
    text = render((CONTRIB / "postfix/main.cf.maps").read_text(), maps.values)
    settings = main_cf_settings(text)
    assert len(settings) == 7, settings
    settings |= {
        "virtual_transport": f"discard:{MAILBOX}",
        "default_transport": f"discard:{EXTERNAL}",
    }
    postfix.postconf("-e", *(f"{k}={v}" for k, v in settings.items()))
    postfix.start()
    got = {}
    for rcpt in ROUTES:
        code, queue_id = send(postfix.smtp_port, rcpt)
        assert code == 250, f"RCPT {rcpt}: {code} {queue_id}"
        got[rcpt] = delivered(postfix, queue_id)
    assert got == ROUTES
    # No mailbox (inactive counts as none), no alias, no catch-all: refused at RCPT.
    for rcpt in (
        "eve@other.test",
        "frank@other.test",
        "nobody@other.test",
        "x@alias2.test",
        "nobody@a.wild.test",
    ):
        code, reply = send(postfix.smtp_port, rcpt)
        assert code == 550, f"RCPT {rcpt}: {code} {reply}"
        assert "5.1.1" in reply, reply
