"""``mailwarden backup``: rolling backups and restore against real Dovecot, MariaDB and disks.

The round trip (both dialects): messages delivered by the delivery core, read over IMAP
by a real Dovecot 2.3 with the contrib auth files, ``backup run``; then one message is
deleted over IMAP, the mailbox row is removed, new mail arrives; ``restore --database``
brings the row back, ``restore --mailbox`` the deleted message, and IMAP shows the old
messages and the new one. The other tests (SQLite) cover the faults: a disk that fills
during a backup (a real 1 MiB tmpfs: earlier backups intact, partial one removed, one
line, exit 1), keep-N rotation, ``verify`` finding a corrupted file and dump, and a
manifest path with ``..`` refused before anything is written. The hard-link test measures
what a second backup of an unchanged 1,000-message tree costs on disk (docs/backups.md).
"""

from __future__ import annotations

import imaplib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from mailwarden.delivery.maildir import Names, open_maildir
from tests.conftest import Cli, write_config
from tests.contrib import CONTRIB, DOVECOT_VIEWS, mail_settings, placeholders, reader_url, render
from tests.integration.test_contrib_dovecot import use_contrib_auth
from tests.servers import Dovecot, missing_requirements

pytestmark = pytest.mark.integration

USER = "keep@example.test"
PASSWORD = "Corr3ct horse"


def with_backup_dir(cli: Cli, directory: Path, keep: int = 7) -> Path:
    """Add a ``[backup]`` section to the CLI's config."""
    text = cli.config_path.read_text()
    cli.config_path.write_text(text + f'[backup]\ndir = "{directory}"\nkeep = {keep}\n')
    return directory


def deliver(cli: Cli, subject: str, body: str = "hello\r\n", folder: str = "") -> str:
    """One message into the mailbox's Maildir through the delivery core (as lmtpd does)."""
    root, uid, gid = mail_settings(cli.config_path)
    msg = f"From: a@outside.test\r\nTo: {USER}\r\nSubject: {subject}\r\n\r\n{body}".encode()
    with open_maildir(str(root), str(root / "example.test/keep"), (uid, gid)) as box:
        box.ensure()
        return box.deliver(msg, Names(), box.folder(folder) if folder else "")


def run_json(cli: Cli, *args: str) -> dict[str, object]:
    data = json.loads(cli.ok(*args, "--json"))
    assert isinstance(data, dict)
    return data


def subjects(port: int) -> list[str]:
    with imaplib.IMAP4("127.0.0.1", port, timeout=30) as imap:
        imap.login(USER, PASSWORD)
        assert imap.select("INBOX")[0] == "OK"
        _, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        imap.logout()
    found = [
        part[1].decode().strip().removeprefix("Subject: ")
        for part in data
        if isinstance(part, tuple)
    ]
    return sorted(found)


def imap_delete(port: int, subject: str) -> None:
    with imaplib.IMAP4("127.0.0.1", port, timeout=30) as imap:
        imap.login(USER, PASSWORD)
        assert imap.select("INBOX")[0] == "OK"
        uids = imap.uid("SEARCH", "SUBJECT", f'"{subject}"')[1][0].split()
        assert len(uids) == 1, uids
        assert imap.uid("STORE", uids[0].decode(), "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
        assert imap.expunge()[0] == "OK"
        imap.logout()


def journal_mode(url: str) -> str | None:
    if not url.startswith("sqlite:"):
        return None
    with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])


@pytest.fixture
def dovecot(cli: Cli, request: pytest.FixtureRequest, workdir: Path) -> Iterator[Dovecot]:
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
    yield instance
    instance.stop()


def test_backup_delete_over_imap_restore_round_trip(
    cli: Cli, dovecot: Dovecot, workdir: Path
) -> None:
    backups = with_backup_dir(cli, workdir / f"backups-{cli.config_path.stem}")
    cli.ok("domain", "add", "example.test")
    cli.ok("user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
    for subject in ("one", "two", "three"):
        deliver(cli, subject)
    deliver(cli, "filed", folder="Archive")
    assert subjects(dovecot.imap_port) == ["one", "three", "two"]  # Dovecot moved them to cur/

    made = run_json(cli, "backup", "run")
    assert made["files"] and made["copied_files"] == made["files"]
    name = str(made["name"])
    assert cli.ok("backup", "verify").strip() == f"backup {name}: ok"
    dump = "database.sql" if cli.url.startswith("mysql:") else "database.sqlite"
    assert (backups / name / dump).stat().st_mode & 0o777 == 0o600

    # Disaster: a message deleted over IMAP, the mailbox row removed; meanwhile new mail.
    imap_delete(dovecot.imap_port, "two")
    cli.ok("user", "remove", USER)
    deliver(cli, "four (after the backup)")

    mode = journal_mode(cli.url)
    plan = run_json(cli, "backup", "restore", "--database", "--dry-run")
    assert plan["dry_run"] is True
    cli.fails("backup", "restore", "--database")  # asks for --yes
    cli.ok("backup", "restore", "--database", "--yes")
    assert USER in cli.ok("user", "list")
    assert journal_mode(cli.url) == mode  # WAL stays WAL (store/db.py: Postfix needs it)
    dovecot.reload()  # docs/backups.md: its auth worker's statements predate the restore

    dry = run_json(cli, "backup", "restore", "--mailbox", USER, "--dry-run")
    assert dry["restore"] == 1, dry  # "two"; the others are present (flags renamed them)
    done = run_json(cli, "backup", "restore", "--mailbox", USER)
    assert done["restored"] == 1
    assert subjects(dovecot.imap_port) == ["four (after the backup)", "one", "three", "two"]
    # maildirsize recalculated and quota_usage recorded; a second restore changes nothing.
    usage = json.loads(cli.ok("quota", "show", USER, "--json"))
    assert usage["used_messages"] == 5  # with the Archive folder's message
    assert run_json(cli, "backup", "restore", "--mailbox", USER)["restored"] == 0
    assert run_json(cli, "backup", "restore", "--all")["restored"] == 0
    assert run_json(cli, "backup", "restore", "--domain", "example.test")["restored"] == 0


@pytest.fixture
def sqlite_cli(workdir: Path, tmp_path: Path) -> Cli:
    root = tmp_path / "vmail"
    root.mkdir()
    url = f"sqlite:///{tmp_path}/mw.sqlite"
    runner = Cli(write_config(tmp_path / "mw.toml", url, root), url)
    runner.ok("db", "init")
    runner.ok("domain", "add", "example.test")
    runner.ok("user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
    return runner


def test_restore_onto_mailbox_with_new_mail_keeps_everything(
    sqlite_cli: Cli, tmp_path: Path
) -> None:
    cli = sqlite_cli
    with_backup_dir(cli, tmp_path / "b")
    root, _, _ = mail_settings(cli.config_path)
    box = root / "example.test/keep"
    old = [deliver(cli, f"old {n}") for n in range(3)]
    cli.ok("backup", "run")
    # Since: one old message read and flagged (renamed into cur/), one deleted, new mail.
    (box / "cur").mkdir(exist_ok=True)
    os.rename(box / "new" / old[0], box / "cur" / f"{old[0]}:2,FS")
    (box / "new" / old[1]).unlink()
    new = deliver(cli, "new")
    before = {
        p: p.read_bytes() for p in box.rglob("*") if p.is_file() and "maildirsize" not in p.name
    }

    out = cli.ok("backup", "restore", "--mailbox", USER, "--dry-run")
    assert f"would restore example.test/keep/new/{old[1]}" in out
    assert "nothing changed" in out
    assert not (box / "new" / old[1]).exists()
    cli.ok("backup", "restore", "--mailbox", USER)

    after = {
        p: p.read_bytes() for p in box.rglob("*") if p.is_file() and "maildirsize" not in p.name
    }
    assert all(after[p] == data for p, data in before.items())  # nothing changed or lost
    assert (box / "new" / new).exists() and (box / "cur" / f"{old[0]}:2,FS").exists()
    assert (box / "new" / old[1]).exists()  # the deleted one is back
    assert not (box / "new" / old[0]).exists()  # the flagged one was not duplicated
    assert set(after) - set(before) == {box / "new" / old[1]}
    assert (box / "maildirsize").read_text().splitlines()[-1].split()[1] == "4"


def test_disk_full_keeps_earlier_backups(sqlite_cli: Cli, tmp_path: Path) -> None:
    cli = sqlite_cli
    backups = tmp_path / "small"
    backups.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(backups)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        with_backup_dir(cli, backups)
        deliver(cli, "small")
        first = str(run_json(cli, "backup", "run")["name"])
        deliver(cli, "big", body="x" * 76 + "\r\n" * 1 + ("y" * 78 + "\r\n") * 20000)  # 1.6 MB
        err = cli.fails("backup", "run")
        assert "no space left" in err and "earlier backups kept" in err, err
        assert sorted(os.listdir(backups)) == [".lock", first]  # partial one removed
        assert cli.ok("backup", "verify", first).strip() == f"backup {first}: ok"
        assert [r["name"] for r in json.loads(cli.ok("backup", "list", "--json"))] == [first]
    finally:
        subprocess.run(["umount", str(backups)], check=False)


def test_database_restore_keeps_sqlite_wal(sqlite_cli: Cli, tmp_path: Path) -> None:
    cli = sqlite_cli
    with_backup_dir(cli, tmp_path / "b")
    path = cli.url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
    cli.ok("backup", "run")
    cli.ok("domain", "add", "later.test")
    dry = run_json(cli, "backup", "restore", "--database", "--dry-run")
    assert dry["now"] == {"domains": 2, "mailboxes": 1}
    assert dry["backup_counts"] == {"domains": 1, "mailboxes": 1}
    cli.ok("backup", "restore", "--database", "--yes")
    assert "later.test" not in cli.ok("domain", "list")
    assert journal_mode(cli.url) == "wal"


def test_keep_n_rotation(sqlite_cli: Cli, tmp_path: Path) -> None:
    cli = sqlite_cli
    backups = with_backup_dir(cli, tmp_path / "b", keep=2)
    deliver(cli, "one")
    (backups / ".partial-2026-01-01T000000Z").mkdir(parents=True)  # a run killed (SIGKILL)
    names = [str(run_json(cli, "backup", "run")["name"]) for _ in range(3)]
    assert len(set(names)) == 3
    kept = [r["name"] for r in json.loads(cli.ok("backup", "list", "--json"))]
    assert kept == names[1:]
    assert sorted(p.name for p in backups.iterdir()) == sorted([".lock", *names[1:]])
    # The removed one was the oldest; the later ones still hold the message.
    assert cli.ok("backup", "verify").strip().endswith(": ok")


def test_verify_detects_corruption(sqlite_cli: Cli, tmp_path: Path) -> None:
    cli = sqlite_cli
    backups = with_backup_dir(cli, tmp_path / "b")
    name = deliver(cli, "precious")
    backup = str(run_json(cli, "backup", "run")["name"])
    copy = backups / backup / "mail/example.test/keep/new" / name
    data = bytearray(copy.read_bytes())
    data[-3] ^= 0x20  # same size, other content
    copy.write_bytes(bytes(data))
    result = cli(*["backup", "verify", backup])
    assert result.rc == 1 and f"new/{name}: checksum differs" in result.out, result
    assert len(result.err.strip().splitlines()) == 1
    quick = json.loads(cli("backup", "verify", backup, "--quick", "--json").out)
    assert quick["ok"] is True  # sizes only: same size passes
    # A truncated database dump fails its checksum and its integrity check.
    dump = backups / backup / "database.sqlite"
    dump.write_bytes(dump.read_bytes()[:1000])
    report = json.loads(cli("backup", "verify", backup, "--json").out)
    assert report["ok"] is False
    assert any("database.sqlite" in p for p in report["problems"]), report


def test_restore_refuses_paths_leaving_the_mail_root(sqlite_cli: Cli, tmp_path: Path) -> None:
    cli = sqlite_cli
    backups = with_backup_dir(cli, tmp_path / "b")
    deliver(cli, "one")
    backup = backups / str(run_json(cli, "backup", "run")["name"])
    manifest = backup / "manifest.json"
    original = manifest.read_text()
    data = json.loads(original)
    data["mailboxes"][0]["maildir"] = "../../escape/"
    manifest.write_text(json.dumps(data))
    assert "unsafe path" in cli.fails("backup", "restore", "--mailbox", USER)
    manifest.write_text(original)
    files = backup / "files.jsonl"
    line = json.loads(files.read_text().splitlines()[0])
    line[0] = "example.test/keep/cur/../../../../escaped"
    files.write_text(json.dumps(line) + "\n" + files.read_text())
    assert "unsafe path" in cli.fails("backup", "restore", "--mailbox", USER)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "escape").exists()
    files.write_text(files.read_text().split("\n", 1)[1])  # the planted line gone
    root, _, _ = mail_settings(cli.config_path)
    shutil.rmtree(root / "example.test/keep")
    (root / "example.test/keep").symlink_to(tmp_path)  # a symlink planted in its place
    assert "symlink" in cli.fails("backup", "restore", "--mailbox", USER)
    assert not {"cur", "new", "tmp"} & {p.name for p in tmp_path.iterdir()}  # nothing through it
    assert "not a backup name" in cli.fails("backup", "restore", "../x", "--mailbox", USER)


def test_second_backup_of_unchanged_tree_costs_no_disk(sqlite_cli: Cli, tmp_path: Path) -> None:
    cli = sqlite_cli
    backups = with_backup_dir(cli, tmp_path / "b")
    root, uid, gid = mail_settings(cli.config_path)
    body = "z" * 2000 + "\r\n"
    with open_maildir(str(root), str(root / "example.test/keep"), (uid, gid)) as box:
        box.ensure()
        names = Names()
        for n in range(1000):
            box.deliver(f"Subject: m{n}\r\n\r\n{body}".encode(), names)
    first = run_json(cli, "backup", "run")
    second = run_json(cli, "backup", "run")
    assert first["copied_files"] == 1000 and second["linked_files"] == 1000
    assert second["copied_files"] == 0

    def blocks(path: Path, seen: set[int]) -> int:
        total = 0
        for p in [path, *path.rglob("*")]:
            st = p.lstat()
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_blocks * 512
        return total

    seen: set[int] = set()
    one = blocks(backups / str(first["name"]), seen)
    two = blocks(backups / str(second["name"]), seen)  # only what is not linked to the first
    dump = (backups / str(second["name"]) / "database.sqlite").stat().st_blocks * 512
    listing = (backups / str(second["name"]) / "files.jsonl").stat().st_blocks * 512
    rest = two - dump - listing  # directories and the manifest
    print(f"\nfirst backup {one} bytes on disk; second {two} more: dump {dump}, ")
    print(f"files.jsonl {listing}, directories and manifest {rest}")
    assert one > 1000 * 2000
    assert rest < 200_000 and listing < 200 * 1000  # names only, no message data copied
    shutil.rmtree(backups)
