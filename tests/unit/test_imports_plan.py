"""The pure parts of ``mailwarden import``: hash schemes, the plan, the PostfixAdmin row
mapping and the vpopmail file formats (a tree in tmp_path: the real format)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from mailwarden.imports import hashes, plan, postfixadmin, vpopmail
from mailwarden.imports.hashes import Clear, Kept, Unsupported


@pytest.mark.parametrize(
    ("raw", "stored", "weak"),
    [
        ("{SHA512-CRYPT}$6$abc$def", "{SHA512-CRYPT}$6$abc$def", False),
        ("$6$abc$def", "{SHA512-CRYPT}$6$abc$def", False),
        ("$5$abc$def", "{SHA256-CRYPT}$5$abc$def", False),
        ("$1$abc$def", "{MD5-CRYPT}$1$abc$def", True),
        ("$2y$05$abc", "{BLF-CRYPT}$2y$05$abc", False),
        ("$2b$05$abc", "{BLF-CRYPT}$2b$05$abc", False),
        ("$argon2id$v=19$x", "{ARGON2ID}$argon2id$v=19$x", False),
        ("$y$j9T$abc", "{CRYPT}$y$j9T$abc", False),
        ("abPAmMzNR85PQ", "{DES-CRYPT}abPAmMzNR85PQ", True),
        ("9D594869256771566813787018512240", "{PLAIN-MD5}9d594869256771566813787018512240", True),
        (
            "{md5raw}9d594869256771566813787018512240",
            "{PLAIN-MD5}9d594869256771566813787018512240",
            True,
        ),
        ("{MD5}nVlIaSVncVZoE3hwGFEiQA==", "{LDAP-MD5}nVlIaSVncVZoE3hwGFEiQA==", True),
        ("{MD5}$1$abc$def", "{MD5}$1$abc$def", False),
        ("{SSHA512}abcd", "{SSHA512}abcd", False),
        ("{SHA512-CRYPT.B64}JDYk", "{SHA512-CRYPT.B64}JDYk", False),
        ("{sha}AORsQDDU=", "{sha}AORsQDDU=", True),
    ],
)
def test_kept_hashes(raw: str, stored: str, weak: bool) -> None:
    got = hashes.classify(raw)
    assert isinstance(got, Kept)
    assert (got.stored, got.weak) == (stored, weak)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "*94BDCEBE19083CE2A1F959FD02F964C7AF4CFC29",
        "{BOGUS}xyz",
        "{MD5}notbase64!",
        "hunter2",
        "{SHA512-CRYPT}",
    ],
)
def test_unsupported_hashes(raw: str) -> None:
    assert isinstance(hashes.classify(raw), Unsupported)


def test_clear_text() -> None:
    assert hashes.classify("{PLAIN}hunter2") == Clear("hunter2")
    assert hashes.classify("{CLEARTEXT}x") == Clear("x")
    assert hashes.classify("hunter2", cleartext=True) == Clear("hunter2")
    assert hashes.classify("abPAmMzNR85PQ", cleartext=True) == Clear("abPAmMzNR85PQ")


def _box(addr: str, raw: str = "$6$a$b", **kw: object) -> plan.Mailbox:
    return plan.Mailbox(addr, hashes.classify(raw), **kw)  # type: ignore[arg-type]


def test_plan_add_same_conflict_unsupported() -> None:
    src = plan.Source(
        domains=[
            plan.Domain("b.test", "alias", alias_of="a.test"),
            plan.Domain("a.test", limits={"max_mailboxes": 5}),
        ],
        mailboxes=[_box("x@a.test", name="X"), _box("y@a.test"), _box("z@a.test", "*" + "A" * 40)],
        aliases=[plan.Alias("@a.test", ("x@a.test",)), plan.Alias("y@a.test", ("x@a.test",))],
        forwards=[plan.Forward("x@a.test", ("out@else.test",), keep_copy=True)],
    )
    have = plan.Existing(
        domains={"a.test": {"kind": "local", "active": True, "max_mailboxes": 5}},
        mailboxes={
            "x@a.test": {
                "name": "X",
                "quota_bytes": 0,
                "quota_messages": 0,
                "active": True,
                "forwards": ["out@else.test"],
                "keep_copy": True,
            },
            "y@a.test": {"name": "old", "quota_bytes": 0, "quota_messages": 0, "active": True},
        },  # fmt: skip
    )
    got = {(i.kind, i.key): i.status for i in plan.make_plan(src, have).items}
    assert got == {
        ("domain", "a.test"): "same",
        ("domain", "b.test"): "add",
        ("mailbox", "x@a.test"): "same",
        ("mailbox", "y@a.test"): "conflict",
        ("mailbox", "z@a.test"): "unsupported",
        ("alias", "@a.test"): "add",
        ("alias", "y@a.test"): "conflict",  # a mailbox with this address exists
        ("forward", "x@a.test"): "same",
    }
    p = plan.make_plan(src, have)
    assert [i.key for i in p.items][:2] == ["a.test", "b.test"]  # local before alias domains
    assert p.blocked
    assert "name is 'old'" in p.having("conflict")[0].detail


def test_plan_domain_limits_differ() -> None:
    src = plan.Source(domains=[plan.Domain("a.test", limits={"max_mailboxes": 5})])
    have = plan.Existing(domains={"a.test": {"kind": "local", "active": True, "max_mailboxes": 9}})
    (item,) = plan.make_plan(src, have).items
    assert item.status == "conflict" and "max_mailboxes" in item.detail


def test_plan_nothing_there_is_all_add() -> None:
    src = plan.Source(domains=[plan.Domain("a.test")], mailboxes=[_box("x@a.test")])
    p = plan.make_plan(src, plan.Existing())
    assert p.counts() == {"add": 2, "same": 0, "conflict": 0, "unsupported": 0}
    assert not p.blocked


def test_postfixadmin_rows() -> None:
    domains = [
        {"domain": "A.test", "description": "", "aliases": 10, "mailboxes": -1, "maxquota": 100,
         "quota": 2048, "transport": "virtual", "backupmx": 0, "active": 1},
        {"domain": "mx.test", "description": "", "aliases": 0, "mailboxes": 0, "maxquota": 0,
         "quota": 0, "transport": "relay:[10.0.0.1]", "backupmx": 1, "active": 1},
    ]  # fmt: skip
    alias_domains = [{"alias_domain": "b.test", "target_domain": "a.test", "active": 1}]
    boxes = [
        {"username": "x@a.test", "password": "$1$s$h", "name": "X", "maildir": "a.test/x/",
         "quota": 1024000, "local_part": "x", "domain": "a.test", "active": 1},
        {"username": "y@a.test", "password": "{PLAIN}pw", "name": "", "maildir": "a.test/y/",
         "quota": 0, "local_part": "y", "domain": "a.test", "active": 0},
    ]  # fmt: skip
    aliases = [
        {"address": "x@a.test", "goto": "x@a.test", "domain": "a.test", "active": 1},
        {"address": "y@a.test", "goto": "y@a.test,out@else.test,y#a.test@autoreply.a.test",
         "domain": "a.test", "active": 1},
        {"address": "@a.test", "goto": "x@a.test", "domain": "a.test", "active": 1},
        {"address": "old@a.test", "goto": "x@a.test", "domain": "a.test", "active": 0},
        {"address": "team@a.test", "goto": "x@a.test, y@a.test", "domain": "a.test", "active": 1},
    ]  # fmt: skip
    vacations = [
        {"email": "x@a.test", "subject": "Away", "body": "Back soon", "interval_time": 0,
         "activefrom": datetime(2000, 1, 1), "activeuntil": "2026-12-24 00:00:00",
         "domain": "a.test", "active": 1},
    ]  # fmt: skip
    src = postfixadmin.convert(domains, alias_domains, boxes, aliases, vacations)
    a, mx, b = src.domains
    assert a == plan.Domain(
        "a.test", limits={"max_mailboxes": 0, "max_aliases": 10, "default_quota_bytes": 102400000}
    )
    assert mx == plan.Domain("mx.test", "relay", transport="relay:[10.0.0.1]")
    assert b == plan.Domain("b.test", "alias", alias_of="a.test")
    assert [m.password for m in src.mailboxes] == [
        Kept("{MD5-CRYPT}$1$s$h", "MD5-CRYPT", True),
        Clear("pw"),
    ]
    assert not src.mailboxes[1].active
    assert src.forwards == [plan.Forward("y@a.test", ("out@else.test",), keep_copy=True)]
    assert src.aliases == [
        plan.Alias("@a.test", ("x@a.test",)),
        plan.Alias("team@a.test", ("x@a.test", "y@a.test")),
    ]
    assert src.vacations == [plan.Vacation("x@a.test", "Away", "Back soon", None, 1798070400, None)]
    assert any("old@a.test" in n for n in src.notes)
    assert any("-1" in n for n in src.notes) and any("2048" in n for n in src.notes)
    only = postfixadmin.convert(domains, alias_domains, boxes, aliases, vacations, only=["mx.test"])
    assert [d.name for d in only.domains] == ["mx.test"] and not only.mailboxes


@pytest.mark.parametrize(
    ("text", "want"),
    [("NOQUOTA", (0, 0)), ("", (0, 0)), ("1000000S", (1000000, 0)), ("50M", (50 * 1024**2, 0)),
     ("1000000S,500C", (1000000, 500)), ("2048", (2048, 0))],
)  # fmt: skip
def test_vpopmail_quota(text: str, want: tuple[int, int]) -> None:
    assert vpopmail.parse_quota(text) == want


def test_vpopmail_quota_bad() -> None:
    with pytest.raises(ValueError, match="quota"):
        vpopmail.parse_quota("lots")


def test_vpopmail_tree(tmp_path: Path) -> None:
    d = tmp_path / "domains" / "a.test"
    for user in ("x", "y"):
        (d / user / "Maildir").mkdir(parents=True)
    (d / "vpasswd").write_text(
        f"x:$1$s$h:1:0:Mr X:{d}/x:NOQUOTA:\ny:*MYSQL:1:2:Y:{d}/y:1000000S:clearpw\nbroken line\n"
    )
    (d / ".qmail-sales:team").write_text("&x@a.test\ny@a.test\n|/usr/bin/autorespond\n")
    (d / ".qmail-default").write_text("| /home/vpopmail/bin/vdelivermail '' delete\n")
    (d / "x" / ".qmail").write_text(f"out@else.test\n{d}/x/Maildir/\n")
    (tmp_path / "domains" / "b.test").symlink_to(d)
    src = vpopmail.read(tmp_path)
    assert src.domains == [plan.Domain("a.test"), plan.Domain("b.test", "alias", alias_of="a.test")]
    x, y = src.mailboxes
    assert x.password == Kept("{MD5-CRYPT}$1$s$h", "MD5-CRYPT", True) and x.name == "Mr X"
    assert y.password == Clear("clearpw") and y.quota_bytes == 1000000
    assert src.aliases == [
        plan.Alias("@a.test", ("discard",)),
        plan.Alias("sales.team@a.test", ("x@a.test", "y@a.test")),
    ]
    assert src.forwards == [plan.Forward("x@a.test", ("out@else.test",), keep_copy=True)]
    assert any("autorespond" in n for n in src.notes)
    assert any("broken line" not in n and "vpasswd" in n for n in src.notes)


def test_vpopmail_default_bounce(tmp_path: Path) -> None:
    d = tmp_path / "domains" / "a.test"
    d.mkdir(parents=True)
    (d / "vpasswd").write_text("")
    (d / ".qmail-default").write_text("| /home/vpopmail/bin/vdelivermail '' bounce-no-mailbox\n")
    assert vpopmail.read(tmp_path).aliases == []


def test_vpopmail_no_tree(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="domains"):
        vpopmail.read(tmp_path)


def test_plan_dependents_of_an_unsupported_mailbox() -> None:
    src = plan.Source(
        domains=[plan.Domain("a.test")],
        mailboxes=[_box("x@a.test", "*" + "A" * 40), _box("y@a.test")],
        aliases=[plan.Alias("info@a.test", ("x@a.test",)), plan.Alias("ok@a.test", ("y@a.test",))],
        forwards=[plan.Forward("x@a.test", ("out@else.test",), keep_copy=False)],
        vacations=[plan.Vacation("x@a.test", "Away", "Gone")],
    )
    got = {
        (i.kind, i.key): (i.status, i.detail) for i in plan.make_plan(src, plan.Existing()).items
    }
    assert got[("alias", "info@a.test")] == ("unsupported", "x@a.test is not imported")
    assert got[("alias", "ok@a.test")][0] == "add"
    assert got[("forward", "x@a.test")][0] == "unsupported"
    assert got[("vacation", "x@a.test")][0] == "unsupported"
