"""``mailwarden list`` on both dialects: the rows, the views Postfix reads, mlmmj's files,
and the rule that a list address is never also a mailbox or an alias.

mlmmj itself is not run here (tests/integration/test_lists_mlmmj.py does); the list
directories go to a temporary spool owned by root (``[lists] user = "root"``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mailwarden.address import Address
from mailwarden.store import policy
from mailwarden.store.db import Database
from tests.conftest import Cli, write_config
from tests.contrib import placeholders, reader_url, render_file
from tests.servers import Postfix, make_workdir, missing_requirements

pytestmark = pytest.mark.integration

L = "team@example.test"


@pytest.fixture
def lcli(db_url: str, tmp_path: Path) -> Cli:
    root = tmp_path / "vmail"
    root.mkdir()
    extra = f'[lists]\nspool = "{tmp_path / "spool"}"\nuser = "root"\nsmtp = "127.0.0.1:2525"\n'
    cli = Cli(write_config(tmp_path / "mw.toml", db_url, root, extra), db_url)
    cli.ok("db", "init")
    cli.ok("domain", "add", "example.test")
    cli.ok("domain", "add", "alias.test", "--alias-of", "example.test")
    for user in ("owner", "alice", "bob"):
        cli.ok("user", "add", f"{user}@example.test", "--password-stdin", stdin="pw\n")
    return cli


def _spool(cli: Cli) -> Path:
    return cli.config_path.parent / "spool"


def test_add_show_members_and_the_files(lcli: Cli) -> None:
    out = json.loads(lcli.ok("list", "add", L, "--owner", "owner@example.test", "--json"))
    assert out["ok"] and out["address"] == L
    lcli.ok("list", "subscribe", L, "alice@example.test", "bob@example.test")
    lcli.ok("list", "subscribe", L, "ext@outside.test", "--mode", "digest")
    members = json.loads(lcli.ok("list", "members", L, "--json"))
    assert [(m["address"], m["mode"]) for m in members] == [
        ("alice@example.test", "normal"),
        ("bob@example.test", "normal"),
        ("ext@outside.test", "digest"),
    ]
    listdir = _spool(lcli) / "example.test" / "team"
    assert (listdir / "subscribers.d" / "a").read_text() == "alice@example.test\n"
    assert (listdir / "digesters.d" / "e").read_text() == "ext@outside.test\n"
    assert (listdir / "control" / "smtpport").read_text() == "2525\n"
    shown = json.loads(lcli.ok("list", "show", L, "--json"))
    assert shown["transport"] == "mlmmj:example.test/team"
    assert shown["subscribers_only"] is True and shown["members"] == 3
    rows = json.loads(lcli.ok("list", "list", "--json"))
    assert [r["address"] for r in rows] == [L]


def test_members_who_subscribed_by_mail_are_mirrored(lcli: Cli) -> None:
    lcli.ok("list", "add", L, "--owner", "owner@example.test")
    # what mlmmj-sub writes after a confirmed list+subscribe@ mail
    (_spool(lcli) / "example.test" / "team" / "subscribers.d" / "m").write_text("mail@x.test\n")
    assert "mail@x.test" in lcli.ok("list", "members", L)
    (_spool(lcli) / "example.test" / "team" / "subscribers.d" / "m").write_text("")
    assert "mail@x.test" not in lcli.ok("list", "members", L)


def test_moderation(lcli: Cli) -> None:
    lcli.ok("list", "add", L, "--owner", "owner@example.test")
    lcli.ok("list", "subscribe", L, "alice@example.test")
    err = lcli.fails("list", "moderate", L, "--on", "--add-moderator", "bob@example.test")
    assert "bob@example.test is not a member" in err
    out = lcli.ok("list", "moderate", L, "--on", "--add-moderator", "alice@example.test")
    assert "moderated by alice@example.test" in out
    control = _spool(lcli) / "example.test" / "team" / "control"
    assert (control / "moderated").exists()
    assert (control / "moderators").read_text() == "alice@example.test\n"
    lcli.ok("list", "moderate", L, "--off", "--subscribers-only", "no")
    assert not (control / "moderated").exists() and not (control / "subonlypost").exists()


def test_a_list_address_is_not_a_mailbox_or_an_alias(lcli: Cli) -> None:
    lcli.ok("alias", "add", "info@example.test", "alice@example.test")
    assert "already taken by a mailbox" in lcli.fails(
        "list", "add", "alice@example.test", "--owner", "owner@example.test"
    )
    assert "already taken by an alias" in lcli.fails(
        "list", "add", "info@example.test", "--owner", "owner@example.test"
    )
    lcli.ok("list", "add", L, "--owner", "owner@example.test")
    assert "is a mailing list" in lcli.fails("user", "add", L, "--password-stdin", stdin="pw\n")
    assert "is a mailing list" in lcli.fails("alias", "add", L, "alice@example.test")
    lcli.ok("alias", "add", "all@example.test", L)  # a list is a valid alias destination
    lcli.ok("forward", "set", "bob@example.test", L)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("list", "add", "a+b@example.test", "--owner", "o@x.test"), "no '+'"),
        (("list", "add", "x@alias.test", "--owner", "o@x.test"), "alias domain"),
        (("list", "add", "x@nowhere.test", "--owner", "o@x.test"), "unknown domain"),
        (("list", "show", "ghost@example.test"), "unknown list"),
        (("list", "subscribe", "ghost@example.test", "a@x.test"), "unknown list"),
    ],
)
def test_errors_are_one_line(lcli: Cli, args: tuple[str, ...], message: str) -> None:
    assert message in lcli.fails(*args)


def test_postfix_and_policyd_see_the_list(lcli: Cli) -> None:
    lcli.ok("list", "add", L, "--owner", "owner@example.test")
    db = Database(lcli.url)
    try:
        with db.transaction() as tx:
            assert tx.all("SELECT destination FROM postfix_virtual_alias WHERE address = ?", (L,))
            (row,) = tx.all("SELECT transport FROM postfix_list_transport WHERE address = ?", (L,))
            assert row["transport"] == "mlmmj:example.test/team"
            (alias_row,) = tx.all(
                "SELECT destination FROM postfix_alias_domain_map"
                " WHERE alias_domain = 'alias.test' AND local_part = 'team'"
            )
            assert alias_row["destination"] == L
            for local in ("team", "team+subscribe"):
                found = policy.resolve(tx, Address(local, "example.test"), "example.test", "+")
                assert found.alias, local
            assert not policy.resolve(
                tx, Address("nope", "example.test"), "example.test", "+"
            ).alias
    finally:
        db.close()


def test_remove_moves_the_directory_and_frees_the_address(lcli: Cli) -> None:
    lcli.ok("list", "add", L, "--owner", "owner@example.test")
    lcli.ok("list", "subscribe", L, "alice@example.test")
    out = json.loads(lcli.ok("list", "remove", L, "--json"))
    moved = Path(out["moved_to"])
    assert (moved / "subscribers.d" / "a").read_text() == "alice@example.test\n"
    assert not (_spool(lcli) / "example.test" / "team").exists()
    assert "unknown list" in lcli.fails("list", "show", L)
    lcli.ok("user", "add", L, "--password-stdin", stdin="pw\n")


def test_sync_rebuilds_a_lost_directory_from_the_schema(lcli: Cli) -> None:
    lcli.ok("list", "add", L, "--owner", "owner@example.test")
    lcli.ok("list", "subscribe", L, "alice@example.test")
    shutil.rmtree(_spool(lcli))
    lcli.ok("list", "sync")
    listdir = _spool(lcli) / "example.test" / "team"
    assert (listdir / "subscribers.d" / "a").read_text() == "alice@example.test\n"
    assert (listdir / "control" / "listaddress").read_text() == L + "\n"


def test_postmap_routes_list_addresses_to_mlmmj(
    lcli: Cli, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """contrib/postfix/<dialect>/list_transport_maps.cf through ``postmap -q``, read by a
    SELECT-only account on the one view (MariaDB), as contrib/README.md deploys it."""
    if missing := missing_requirements(Postfix):
        pytest.skip(f"Postfix not usable: {', '.join(missing)}")
    lcli.ok("list", "add", L, "--owner", "owner@example.test")
    server = request.getfixturevalue("mariadb") if lcli.url.startswith("mysql:") else None
    url = reader_url(lcli.url, server, "lists", ("postfix_list_transport",))
    postfix = Postfix(make_workdir("mailwarden-listmap-"))
    try:
        map_dir = postfix.config_dir / "mailwarden"
        values = placeholders(url, mail_root=tmp_path, postfix_dir=map_dir)
        dialect = values["@DB_DIALECT@"]
        path = render_file(
            f"postfix/{dialect}/list_transport_maps.cf",
            values,
            map_dir / "list_transport_maps.cf",
            mode=0o640,
            group="postfix",
        )
        spec = f"{dialect}:{path}"
        assert postfix.postmap_q(L, spec) == "mlmmj:example.test/team"
        assert postfix.postmap_q("TEAM@Example.Test", spec) == "mlmmj:example.test/team"
        assert postfix.postmap_q("alice@example.test", spec) is None
        assert postfix.postmap_q("example.test", spec) is None
    finally:
        postfix.stop()
        shutil.rmtree(postfix.dir.parent, ignore_errors=True)
