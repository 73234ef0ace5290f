"""Backup format rules: names, path checks, Maildir message keys, what is linked, rotation
order, the MariaDB client's options (no password on the command line), ``[backup]``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailwarden import config
from mailwarden.backup import manifest as mf
from mailwarden.backup.run import _order
from mailwarden.backup.snapshot import Previous, message_key
from mailwarden.errors import ConfigError
from mailwarden.store import backup as dumps
from mailwarden.store.db import parse_url


@pytest.mark.parametrize(
    "path",
    [
        "../x",
        "a/../../x",
        "/etc/passwd",
        "a//b",
        "./a",
        "a/./b",
        "",
        "a/\0b",
        "a/..",
    ],
)
def test_unsafe_paths_refused(path: str) -> None:
    with pytest.raises(mf.BackupError, match="unsafe path"):
        mf.safe_relpath(path)


@pytest.mark.parametrize(
    "path", ["example.test/a/cur/1.M2P3.h,S=5:2,S", "d/o/domain/local/", "a/..b/c..", "x"]
)
def test_safe_paths_pass(path: str) -> None:
    assert mf.safe_relpath(path) == path


def test_entry_line_round_trip_with_odd_bytes() -> None:
    name = os.fsdecode(b"example.test/a/cur/\xff\t\nname:2,S")
    entry = mf.Entry(name, 12, 34, "ab" * 32)
    assert mf.Entry.parse(entry.line()) == entry
    assert "\n" not in entry.line().rstrip("\n")


def test_entry_with_dotdot_refused() -> None:
    with pytest.raises(mf.BackupError):
        mf.Entry.parse('["a/../../x", 1, 2, "00"]')


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("example.test/a/cur/1.M2.h,S=5:2,FS", ("example.test/a", "1.M2.h,S=5")),
        ("example.test/a/new/1.M2.h,S=5", ("example.test/a", "1.M2.h,S=5")),
        ("example.test/a/.Sent/cur/9.M1.h:2,", ("example.test/a/.Sent", "9.M1.h")),
        ("cur/9.M1.h:2,S", ("", "9.M1.h")),
        ("example.test/a/maildirsize", None),
        ("example.test/a/tmp/1.M2.h", None),
        ("example.test/a/cur/.hidden", None),
    ],
)
def test_message_key(path: str, key: tuple[str, str] | None) -> None:
    assert message_key(path) == key


def test_previous_links_moved_and_flagged_messages() -> None:
    prev = Previous(
        "/b/old",
        [
            mf.Entry("d/a/new/1.M2.h,S=5", 5, 100, "aa"),
            mf.Entry("d/a/dovecot-uidlist", 40, 200, "bb"),
        ],
    )
    st = os.stat_result((0o100600, 0, 0, 1, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0))
    assert prev.match("d/a/cur/1.M2.h,S=5:2,S", st) is not None  # moved and flagged
    other = os.stat_result((0o100600, 0, 0, 1, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0))
    assert prev.match("d/a/cur/1.M2.h,S=5:2,S", other) is None  # other size: copied
    assert prev.match("d/b/cur/1.M2.h,S=5:2,S", st) is None  # other mailbox
    assert prev.match("d/a/dovecot-uidlist", other) is None  # other size (and mtime)


def test_names_are_unique_and_ordered() -> None:
    now = 1796452658.0
    first = mf.new_name(now, set())
    assert first == "2026-12-05T063738Z" and mf.is_name(first)
    second = mf.new_name(now, {first})
    tenth = mf.new_name(now, {first, *(f"{first}-{n}" for n in range(2, 10))})
    assert (second, tenth) == (f"{first}-2", f"{first}-10")
    assert sorted([tenth, second, first], key=_order) == [first, second, tenth]
    for bad in ("../x", "latest", "2026-12-05T063738Z/..", "2026-12-05T063738Z-"):
        with pytest.raises(mf.BackupError):
            mf.check_name(bad)


def test_mysql_password_only_in_the_defaults_file(tmp_path: Path) -> None:
    db = parse_url("mysql://mw:s3cr%27et%20pw%22%5C@127.0.0.1:3307/mail")
    text = dumps.defaults_text(db)
    assert 'password="s3cr\'et pw\\"\\\\"' in text
    assert 'user="mw"' in text and "port=3307" in text
    argv = dumps.dump_argv("/usr/bin/mariadb-dump", "/tmp/x.cnf", db.database)
    assert argv[1] == "--defaults-extra-file=/tmp/x.cnf"
    assert "--single-transaction" in argv
    assert not any("s3cr" in a or a == "mw" for a in argv)
    with dumps.defaults_file(db) as cnf:
        assert os.stat(cnf).st_mode & 0o777 == 0o600
        assert os.stat(os.path.dirname(cnf)).st_mode & 0o777 == 0o700
    assert not os.path.exists(cnf)


def test_backup_settings() -> None:
    s = config.from_dict({"backup": {"dir": "/srv/backup", "keep": 14}})
    assert (s.backup.dir, s.backup.keep) == ("/srv/backup", 14)
    assert config.Settings().backup.keep == 7
    for bad in ({"dir": "relative"}, {"keep": 0}):
        with pytest.raises(ConfigError, match="backup"):
            config.from_dict({"backup": bad})
