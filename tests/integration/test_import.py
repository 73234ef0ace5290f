"""``mailwarden import`` with real sources and real servers.

PostfixAdmin: a real MariaDB holds PostfixAdmin 3.x's tables (data/postfixadmin-3.mysql.sql,
taken from its upgrade.php) with hashes made by the tools admins used (``doveadm pw``,
``openssl passwd``, MariaDB's own ``PASSWORD()``); it is imported into mailwarden on
SQLite and on MariaDB (``cli`` fixture). Then a real Dovecot, wired with contrib's passdb
query, accepts every supported user with the ORIGINAL password, and the contrib Postfix
maps (``postmap -q``) resolve the aliases, forwards, catch-all and alias domain.
vpopmail: a vpopmail tree in tmp_path (vpasswd, .qmail files: the real formats).
Re-running gives only "same" and no new audit rows; a conflict is listed and stops
everything before anything is written; an unsupported hash is reported.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.contrib import CONTRIB, DOVECOT_VIEWS, mail_settings, placeholders, reader_url, render
from tests.integration.test_contrib_dovecot import auth_test, fresh_ip, use_contrib_auth
from tests.integration.test_contrib_postfix import render_maps
from tests.servers import Dovecot, Postfix, missing_requirements

pytestmark = pytest.mark.integration

PASSWORD = "Imp0rted pw"
SCHEMA = Path(__file__).parent / "data" / "postfixadmin-3.mysql.sql"
_n = itertools.count()


def _tool(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def _dove(scheme: str) -> str:
    return _tool("doveadm", "pw", "-s", scheme, "-p", PASSWORD)


def _q(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _md5hex() -> str:
    proc = subprocess.run(["openssl", "md5", "-r"], input=PASSWORD, capture_output=True, text=True)
    return proc.stdout.split()[0]


# mailbox local part -> how PostfixAdmin stored its password
def pfa_hashes() -> dict[str, str]:
    return {
        "sha": _dove("SHA512-CRYPT"),  # {SHA512-CRYPT}$6$... (dovecot:SHA512-CRYPT)
        "crypt6": _tool("openssl", "passwd", "-6", PASSWORD),  # bare $6$ (php_crypt)
        "md5c": _tool("openssl", "passwd", "-1", PASSWORD),  # bare $1$ (md5crypt)
        "md5p": _dove("MD5-CRYPT"),  # {MD5-CRYPT}$1$
        "blf": _dove("BLF-CRYPT"),
        "ssha": _dove("SSHA512"),
        "argon": _dove("ARGON2ID"),
        "md5": _md5hex(),  # PostfixAdmin 'md5': 32 hex digits
        "clear": "{PLAIN}" + PASSWORD,  # dovecot:PLAIN
    }


SUPPORTED = ("sha", "crypt6", "md5c", "md5p", "blf", "ssha", "argon", "md5", "clear")


def build_postfixadmin(mariadb: object) -> str:
    n = next(_n)
    url: str = mariadb.create_database(f"pfa{n}", f"pfa{n}", "pfa pw")  # type: ignore[attr-defined]
    db = f"pfa{n}"
    run = mariadb.execute  # type: ignore[attr-defined]
    run(SCHEMA.read_text(), db)
    rows = [
        "INSERT INTO domain (domain, description, aliases, mailboxes, maxquota, quota,"
        " transport, backupmx, active) VALUES"
        " ('example.org', 'Example', 20, 30, 100, 0, 'virtual', 0, 1),"
        " ('backup.org', 'MX only', 0, 0, 0, 0, 'relay:[10.0.0.9]', 1, 1)",
        "INSERT INTO alias_domain (alias_domain, target_domain, active)"
        " VALUES ('example.net', 'example.org', 1)",
    ]
    hashes = pfa_hashes()
    for user, stored in hashes.items():
        rows.append(
            "INSERT INTO mailbox (username, password, name, maildir, quota, local_part, domain)"
            f" VALUES ('{user}@example.org', {_q(stored)}, 'User {user}',"
            f" 'example.org/{user}/', 51200000, '{user}', 'example.org')"
        )
    rows.append(
        "INSERT INTO mailbox (username, password, name, maildir, quota, local_part, domain)"
        " VALUES ('legacy@example.org', PASSWORD('x'), 'Old', 'example.org/legacy/', 0,"
        " 'legacy', 'example.org')"
    )
    gotos = {user: f"{user}@example.org" for user in [*hashes, "legacy"]}
    gotos["sha"] = "sha@example.org,out@elsewhere.test"  # forward, keep a copy
    gotos["md5c"] = "far@elsewhere.test"  # forward only
    gotos["crypt6"] = "crypt6@example.org,crypt6#example.org@autoreply.example.org"
    gotos["info"] = "sha@example.org,blf@example.org"
    gotos[""] = "ssha@example.org"  # catch-all @example.org
    for local, goto in gotos.items():
        rows.append(
            f"INSERT INTO alias (address, goto, domain) VALUES ('{local}@example.org',"
            f" {_q(goto)}, 'example.org')"
        )
    rows.append(
        "INSERT INTO vacation (email, subject, body, domain, active, activeuntil) VALUES"
        " ('crypt6@example.org', 'Away', 'Back on Monday.', 'example.org', 1,"
        " '2030-01-02 00:00:00')"
    )
    run(";\n".join(rows) + ";", db)
    return str(url)


def audit_rows(cli: Cli) -> int:
    return len(json.loads(cli.ok("audit", "list", "--json", "--limit", "1000")))


def items(out: str) -> dict[str, str]:
    return {f"{i['kind']} {i['object']}": i["status"] for i in json.loads(out)["items"]}


@pytest.fixture
def pfa_url(request: pytest.FixtureRequest) -> str:
    if any(not _tool("sh", "-c", f"command -v {t} || true") for t in ("doveadm", "openssl")):
        pytest.skip("doveadm and openssl are needed to make the hashes")
    return build_postfixadmin(request.getfixturevalue("mariadb"))


def test_postfixadmin_dry_run_conflicts_and_rerun(cli: Cli, pfa_url: str) -> None:
    dry = cli.ok("import", "postfixadmin", pfa_url, "--dry-run", "--json")
    got = items(dry)
    assert got["mailbox legacy@example.org"] == "unsupported"
    assert {s for k, s in got.items() if k != "mailbox legacy@example.org"} == {"add"}
    assert json.loads(dry)["written"] is False
    assert "example.org" not in cli.ok("domain", "list")
    # Without --skip-conflicts an unsupported hash stops everything, listed first.
    r = cli("import", "postfixadmin", pfa_url)
    assert r.rc == 1 and "nothing written" in r.err and "1 unsupported" in r.err
    assert "unsupported mailbox legacy@example.org" in " ".join(r.out.split())
    assert "example.org" not in cli.ok("domain", "list")
    before = audit_rows(cli)
    out = cli.ok("import", "postfixadmin", pfa_url, "--skip-conflicts")
    assert "rsync -a <postfixadmin maildir root>/example.org/sha/" in out
    after = audit_rows(cli)
    assert after - before == len(got) - 1  # one audit row per object written
    # Re-run: everything the same, nothing written, no new audit row.
    again = items(cli.ok("import", "postfixadmin", pfa_url, "--skip-conflicts", "--json"))
    assert {s for k, s in again.items() if k != "mailbox legacy@example.org"} == {"same"}
    assert audit_rows(cli) == after
    # A conflict: listed, and nothing else is written (a new source mailbox stays out).
    cli.ok("user", "set", "blf@example.org", "--name", "Changed here")
    r = cli("import", "postfixadmin", pfa_url, "--json")
    assert r.rc == 1 and "1 conflict(s)" in r.err
    listed = json.loads(r.out)["items"]
    (conflict,) = [i for i in listed if i["status"] == "conflict"]
    assert conflict["object"] == "blf@example.org" and "Changed here" in conflict["detail"]
    assert audit_rows(cli) == after + 1
    # Imported values.
    box = json.loads(cli.ok("user", "show", "sha@example.org", "--json"))
    assert box["quota_bytes"] == 51200000 and box["forwards"] == ["out@elsewhere.test"]
    assert box["keep_copy"] is True
    dom = json.loads(cli.ok("domain", "show", "example.org", "--json"))
    assert (dom["max_mailboxes"], dom["max_aliases"]) == (30, 20)
    assert dom["default_quota_bytes"] == 100 * 1024000
    vac = json.loads(cli.ok("vacation", "show", "crypt6@example.org", "--json"))
    assert vac["subject"] == "Away" and vac["until"] == "2030-01-02T00:00:00Z"


@pytest.fixture
def imported(cli: Cli, pfa_url: str) -> Cli:
    cli.ok("import", "postfixadmin", pfa_url, "--skip-conflicts")
    return cli


@contextlib.contextmanager
def dovecot_for(cli: Cli, request: pytest.FixtureRequest, workdir: Path) -> Iterator[Dovecot]:
    """A real Dovecot authenticating through contrib's passdb query on ``cli``'s database."""
    if missing := missing_requirements(Dovecot):
        pytest.skip(f"Dovecot not usable: {', '.join(missing)}")
    server = request.getfixturevalue("mariadb") if cli.url.startswith("mysql:") else None
    url = reader_url(cli.url, server, "dovecot", DOVECOT_VIEWS)
    root, uid, gid = mail_settings(cli.config_path)
    values = placeholders(url, mail_root=root, uid=uid, gid=gid)
    sql_file = CONTRIB / f"dovecot/dovecot-sql.conf.ext.{values['@DB_DIALECT@']}"
    instance = Dovecot(workdir, render(sql_file.read_text(), values), root)
    use_contrib_auth(instance, values)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def dovecot(imported: Cli, request: pytest.FixtureRequest, workdir: Path) -> Iterator[Dovecot]:
    with dovecot_for(imported, request, workdir) as instance:
        yield instance


def test_postfixadmin_hashes_work_in_dovecot(dovecot: Dovecot) -> None:
    for user in SUPPORTED:
        assert auth_test(dovecot, f"{user}@example.org", PASSWORD), user
    assert not auth_test(dovecot, "md5c@example.org", "wrong", f"rip={fresh_ip()}")
    assert not auth_test(dovecot, "legacy@example.org", "x", f"rip={fresh_ip()}")


def test_postfixadmin_aliases_resolve_in_postfix(
    imported: Cli, request: pytest.FixtureRequest, workdir: Path
) -> None:
    if missing := missing_requirements(Postfix):
        pytest.skip(f"Postfix not usable: {', '.join(missing)}")
    postfix = Postfix(workdir)
    try:
        maps = render_maps(imported, request, postfix)
        va, ad = "virtual_alias_maps", "virtual_alias_domain_maps"
        assert maps.q_list(va, "info@example.org") == ["blf@example.org", "sha@example.org"]
        assert maps.q_list(va, "@example.org") == ["ssha@example.org"]
        assert maps.q_list(va, "sha@example.org") == ["out@elsewhere.test", "sha@example.org"]
        assert maps.q_list(va, "md5c@example.org") == ["far@elsewhere.test"]
        assert maps.q_list(va, "crypt6@example.org") == ["crypt6@example.org"]  # no autoreply
        assert maps.q_list(ad, "info@example.net") == ["info@example.org"]
        assert maps.q("virtual_mailbox_maps", "blf@example.org") == "example.org/blf/"
        assert maps.q("virtual_mailbox_maps", "legacy@example.org") is None
        assert maps.q("relay_domains", "backup.org") == "backup.org"
        assert maps.q("transport_maps", "backup.org") == "relay:[10.0.0.9]"
    finally:
        postfix.stop()


# ----------------------------------------------------------------------------- vpopmail


def build_vpopmail(home: Path) -> None:
    d = home / "domains" / "hsphere.test"
    for user in ("md5", "sha", "clear", "bad"):
        (d / user / "Maildir").mkdir(parents=True)
    md5 = _tool("openssl", "passwd", "-1", PASSWORD)
    sha = _tool("openssl", "passwd", "-6", PASSWORD)
    (d / "vpasswd").write_text(
        f"md5:{md5}:1:0:Md Five:{d}/md5:NOQUOTA:\n"
        f"sha:{sha}:1:0:Sha:{d}/sha:5000000S,100C:\n"
        f"clear:notahash!:1:0:Clear:{d}/clear:NOQUOTA:{PASSWORD}\n"
        f"bad:notahash!:1:0:Bad:{d}/bad:NOQUOTA:\n"
    )
    (d / ".qmail-sales").write_text("&md5@hsphere.test\nsha@hsphere.test\n")
    (d / ".qmail-robot").write_text("|/usr/bin/autorespond 3600 5 msg\n")
    (d / ".qmail-default").write_text(f"| /home/vpopmail/bin/vdelivermail '' {d}/sha\n")
    (d / "md5" / ".qmail").write_text(f"away@elsewhere.test\n{d}/md5/Maildir/\n")
    (home / "domains" / "alias.test").symlink_to(d)


def test_vpopmail_import(
    cli: Cli, tmp_path: Path, request: pytest.FixtureRequest, workdir: Path
) -> None:
    build_vpopmail(tmp_path)
    out = cli.ok("import", "vpopmail", str(tmp_path), "--dry-run")
    assert "unsupported" in out and "bad@hsphere.test" in out
    assert "autorespond" in out  # the program line is reported
    r = cli("import", "vpopmail", str(tmp_path))
    assert r.rc == 1 and "1 unsupported" in r.err
    cli.ok("import", "vpopmail", str(tmp_path), "--skip-conflicts")
    written = audit_rows(cli)
    again = items(cli.ok("import", "vpopmail", str(tmp_path), "--skip-conflicts", "--json"))
    assert {s for k, s in again.items() if k != "mailbox bad@hsphere.test"} == {"same"}
    assert audit_rows(cli) == written
    box = json.loads(cli.ok("user", "show", "sha@hsphere.test", "--json"))
    assert (box["quota_bytes"], box["quota_messages"]) == (5000000, 100)
    fwd = json.loads(cli.ok("user", "show", "md5@hsphere.test", "--json"))
    assert fwd["forwards"] == ["away@elsewhere.test"] and fwd["keep_copy"] is True
    aliases = {a["source"]: a for a in json.loads(cli.ok("alias", "list", "--json"))}
    assert aliases["@hsphere.test"]["destinations"] == ["sha@hsphere.test"]
    assert aliases["sales@hsphere.test"]["destinations"] == ["md5@hsphere.test", "sha@hsphere.test"]
    assert "robot@hsphere.test" not in aliases
    assert (
        json.loads(cli.ok("domain", "show", "alias.test", "--json"))["alias_of"] == "hsphere.test"
    )


def sqlite_schema() -> str:
    """data/postfixadmin-3.mysql.sql the way upgrade.php's SQLite flavour has it."""
    text = re.sub(r"CHARACTER SET \w+|COLLATE \w+", "", SCHEMA.read_text())
    text = re.sub(r"^\s*KEY .*\n", "", text, flags=re.M)
    text = re.sub(r",\s*\n\)", "\n)", text)
    return re.sub(r"\) DEFAULT CHARSET=\w+ COMMENT='[^']*';", ");", text)


def test_postfixadmin_from_sqlite_one_domain(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "postfixadmin.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(sqlite_schema())
        db.executescript(
            "INSERT INTO domain (domain, description, transport) VALUES"
            " ('a.test', '', 'virtual'), ('b.test', '', 'virtual');"
            "INSERT INTO mailbox (username, password, name, maildir, local_part, domain) VALUES"
            " ('x@a.test', '{PLAIN}" + PASSWORD + "', 'X', 'a.test/x/', 'x', 'a.test'),"
            " ('y@b.test', 'hunter2', 'Y', 'b.test/y/', 'y', 'b.test');"
            "INSERT INTO alias (address, goto, domain) VALUES ('x@a.test', 'x@a.test', 'a.test'),"
            " ('y@b.test', 'y@b.test', 'b.test');"
            "INSERT INTO vacation (email, subject, body, domain, activefrom) VALUES"
            " ('x@a.test', 'Off', 'Gone fishing.', 'a.test', '2030-05-01 08:00:00');"
        )
        db.commit()
    url = f"sqlite:///{path}"
    out = json.loads(cli.ok("import", "postfixadmin", url, "--domain", "a.test", "--json"))
    assert {i["object"] for i in out["items"]} == {"a.test", "x@a.test"}
    assert out["written"] is True and out["counts"]["add"] == 3
    assert json.loads(cli.ok("vacation", "show", "x@a.test", "--json"))["from"] == (
        "2030-05-01T08:00:00Z"
    )
    # b.test: 'hunter2' is no hash; with --cleartext (PostfixAdmin 'cleartext') it is one.
    r = cli("import", "postfixadmin", url, "--domain", "b.test")
    assert r.rc == 1 and "1 unsupported" in r.err and "--cleartext" in r.out
    cli.ok("import", "postfixadmin", url, "--domain", "b.test", "--cleartext")
    assert json.loads(cli.ok("user", "show", "y@b.test", "--json"))["name"] == "Y"
    # Read only: the source file keeps its journal mode (mailwarden's own files go to WAL).
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_not_a_postfixadmin_database(cli: Cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    err = cli.fails("import", "postfixadmin", f"sqlite:///{empty}")
    assert "is not a PostfixAdmin 3.x database" in err
    assert "does not exist" in cli.fails("import", "postfixadmin", f"sqlite:///{tmp_path}/none.db")
    assert "domains" in cli.fails("import", "vpopmail", str(tmp_path))
