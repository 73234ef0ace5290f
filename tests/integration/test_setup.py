"""``mailwarden setup`` against a private Postfix (tests.servers.Postfix, running) and a
private copy of the Dovecot configuration: dry run, apply, idempotence, hand edits,
and every bad input stopping before anything changes."""

from __future__ import annotations

import grp
import hashlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import (
    Postfix,
    free_port,
    make_workdir,
    missing_requirements,
    stock_dovecot_dir,
)

pytestmark = pytest.mark.integration
SRC = str(Path(__file__).resolve().parents[2] / "src")


@dataclass
class Env:
    base: Path
    postfix: Postfix
    dovecot_dir: Path
    config: Path
    db: Path
    mail_root: Path
    policy: int
    milter: int
    metrics: int

    def args(self, *extra: str, url: str | None = None) -> list[str]:
        return [
            "setup",
            "--non-interactive",
            "--database-url",
            url or f"sqlite:///{self.db}",
            "--domain",
            "example.test",
            "--domain",
            "example.org",
            "--postmaster",
            "postmaster@example.test",
            "--mail-root",
            str(self.mail_root),
            "--postfix-dir",
            str(self.postfix.config_dir),
            "--dovecot-dir",
            str(self.dovecot_dir),
            "--config-path",
            str(self.config),
            "--policy-listen",
            f"127.0.0.1:{self.policy}",
            "--milter-listen",
            f"inet:{self.milter}@127.0.0.1",
            "--metrics-listen",
            f"127.0.0.1:{self.metrics}",
            "--lmtp-listen",
            f"unix:{self.base}/lmtp.sock",
            *extra,
        ]

    def run(self, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PYTHONPATH=SRC)
        env.pop("MAILWARDEN_CONFIG", None)  # a fresh machine has none; setup writes it
        if path is not None:
            env["PATH"] = path
        return subprocess.run(
            [sys.executable, "-m", "mailwarden", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def snapshot(self) -> dict[str, str]:
        """Hash of every file setup might touch (and whether db/config/mail root exist)."""
        files: dict[str, str] = {}
        for top in (self.postfix.config_dir, self.dovecot_dir):
            for path in sorted(top.rglob("*")):
                if path.is_file():
                    files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        for path in (self.config, self.db, self.mail_root):
            files[f"exists:{path}"] = str(path.exists())
        return files

    def postconf(self, key: str) -> str:
        return self.postfix.postconf("-h", key).strip()


@pytest.fixture
def env() -> Iterator[Env]:
    missing = missing_requirements(Postfix)
    if missing or not shutil.which("dovecot"):
        pytest.skip(f"needs Postfix and Dovecot: {missing}")
    base = make_workdir("mw-setup-")
    postfix = Postfix(base)
    postfix.start()
    dovecot_dir = base / "dovecot"
    stock_dovecot_dir(dovecot_dir)
    (base / "var").mkdir()
    e = Env(
        base,
        postfix,
        dovecot_dir,
        base / "etc" / "mailwarden.toml",
        base / "var" / "mw.db",
        base / "vmail",
        free_port(),
        free_port(),
        free_port(),
    )
    yield e
    postfix.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_dry_run_changes_nothing_and_shows_every_change(env: Env) -> None:
    before = env.snapshot()
    r = env.run(*env.args("--dry-run"))
    assert r.returncode == 0, r.stderr
    assert env.snapshot() == before
    out = r.stdout
    assert f"+++ {env.postfix.config_dir}/master.cf" in out
    assert "+# BEGIN mailwarden" in out and "+# END mailwarden" in out
    assert f"+++ {env.dovecot_dir}/conf.d/10-mailwarden-auth.conf" in out
    assert f"+++ {env.config}" in out
    assert (
        f"postconf -c {env.postfix.config_dir} -e "
        f"'smtpd_milters = inet:127.0.0.1:{env.milter}'" in out
    )
    assert f"--- {env.postfix.config_dir}/main.cf" in out
    assert "database: add mailbox postmaster@example.test" in out
    assert "nothing changed" in out


def subscribe_setting(env: Env, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["doveconf", "-c", str(env.dovecot_dir / "dovecot.conf")]
        + ["-h", f"namespace/inbox/mailbox/{name}/auto"],
        capture_output=True,
        text=True,
        check=False,
    )


def test_apply_writes_settings_and_second_run_is_a_no_op(env: Env) -> None:
    r = env.run(*env.args("--apply"))
    assert r.returncode == 0, r.stderr
    assert "reloaded postfix" in r.stdout
    assert "postmaster@example.test password:" in r.stdout
    assert env.postconf("smtpd_milters") == f"inet:127.0.0.1:{env.milter}"
    assert f"inet:127.0.0.1:{env.policy}" in env.postconf("smtpd_recipient_restrictions")
    assert env.postconf("virtual_transport") == f"lmtp:unix:{env.base}/lmtp.sock"
    maps = env.postconf("virtual_mailbox_domains")
    assert maps.startswith("proxy:sqlite:")
    assert env.postfix.postmap_q("example.test", maps.removeprefix("proxy:")) == "example.test"
    mailbox_map = env.postconf("virtual_mailbox_maps").removeprefix("proxy:")
    assert env.postfix.postmap_q("postmaster@example.test", mailbox_map)
    master = (env.postfix.config_dir / "master.cf").read_text()
    assert master.count("# BEGIN mailwarden") == 1 and "mailwarden unix" in master
    auth = (env.dovecot_dir / "conf.d/10-mailwarden-auth.conf").read_text()
    assert f"args = {env.dovecot_dir}/dovecot-mailwarden-sql.conf.ext" in auth
    sql = (env.dovecot_dir / "dovecot-mailwarden-sql.conf.ext").read_text()
    assert f"connect = {env.db}" in sql
    check = subprocess.run(
        ["doveconf", "-c", str(env.dovecot_dir / "dovecot.conf"), "-h", "mail_location"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0 and check.stdout.strip() == "maildir:~/", check.stderr
    # SMTP AUTH: Postfix asks Dovecot over private/auth below *this* Postfix's queue
    # directory, and Dovecot merges the block with the stock service auth listeners.
    assert env.postconf("smtpd_sasl_type") == "dovecot"
    assert env.postconf("smtpd_sasl_path") == "private/auth"
    conf = subprocess.run(
        ["doveconf", "-c", str(env.dovecot_dir / "dovecot.conf"), "service/auth"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert conf.returncode == 0, conf.stderr
    assert f"unix_listener {env.postfix.queue_dir}/private/auth" in conf.stdout, conf.stdout
    assert "unix_listener auth-userdb" in conf.stdout, conf.stdout
    # last_login (92-mailwarden-last-login.conf): IMAP and POP3 logins are recorded.
    for protocol in ("imap", "pop3"):
        plugins = subprocess.run(
            ["doveconf", "-c", str(env.dovecot_dir / "dovecot.conf")]
            + ["-f", f"protocol={protocol}", "-h", "mail_plugins"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert "last_login" in plugins.stdout.split(), plugins.stdout + plugins.stderr
    # 15-mailwarden-mailboxes.conf: the four folders, created and subscribed at a login.
    for name in ("Drafts", "Sent", "Trash", "Junk"):
        auto = subscribe_setting(env, name)
        assert auto.stdout.strip() == "subscribe", auto.stdout + auto.stderr
    assert env.mail_root.is_dir() and env.mail_root.stat().st_uid == 5000
    listing = env.run("--config", str(env.config), "alias", "list")
    assert "postmaster@example.org" in listing.stdout

    before = env.snapshot()
    again = env.run(*env.args("--apply"))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "mailwarden setup: nothing to change"
    assert env.snapshot() == before
    # and with no flags at all, the existing config supplies the answers
    bare = env.run(
        "setup",
        "--non-interactive",
        "--config-path",
        str(env.config),
        "--postfix-dir",
        str(env.postfix.config_dir),
        "--dovecot-dir",
        str(env.dovecot_dir),
    )
    assert bare.stdout.strip() == "mailwarden setup: nothing to change", bare.stdout + bare.stderr


def _undo(stmt: str) -> str:
    """The statement that takes one migration statement back ("" when none is needed)."""
    words = [w.strip("();") for w in stmt.split()]
    upper = [w.upper() for w in words]
    if upper[:1] == ["CREATE"]:
        kind = upper[2] if upper[1] == "UNIQUE" else upper[1]
        name = words[words.index(next(w for w in words if w.upper() == kind)) + 1]
        if name.upper() == "IF":  # CREATE TABLE IF NOT EXISTS name
            name = words[upper.index("EXISTS") + 1]
        return (
            f"DROP {kind} IF EXISTS {name}" if kind in ("TABLE", "VIEW", "INDEX", "TRIGGER") else ""
        )
    if upper[:2] == ["ALTER", "TABLE"] and upper[3:5] == ["ADD", "COLUMN"]:
        return f"ALTER TABLE {words[2]} DROP COLUMN {words[5]}"
    return ""


def test_rerun_after_upgrade_migrates_and_keeps_existing_accounts(env: Env) -> None:
    """A newer mailwarden (pending migrations) re-running setup: upgrade, add nothing twice."""
    assert env.run(*env.args("--apply")).returncode == 0
    from mailwarden.store import migrate
    from mailwarden.store.db import Database

    db = Database(f"sqlite:///{env.db}")
    latest = migrate.status(db).latest
    previous = migrate.available("sqlite")[-2].version  # numbers may have gaps
    with db.transaction() as tx:  # pretend the last migration has not run yet
        tx.execute("DELETE FROM schema_version WHERE version = ?", (latest,))
        for stmt in reversed(migrate.available("sqlite")[-1].statements()):
            undo = _undo(stmt)
            if undo:
                tx.execute(undo)
    db.close()
    r = env.run(*env.args("--apply"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"upgrade schema {previous} -> {latest}" in r.stdout
    assert "add domain" not in r.stdout and "add mailbox" not in r.stdout
    db = Database(f"sqlite:///{env.db}")
    assert migrate.status(db).pending == ()
    db.close()


def test_hand_edits_outside_markers_survive(env: Env) -> None:
    assert env.run(*env.args("--apply")).returncode == 0
    master = env.postfix.config_dir / "master.cf"
    master.write_text("# my own first line\n" + master.read_text() + "# my own last line\n")
    env.postfix.postconf("-e", "myhostname = handmade.example.test")
    quota = env.dovecot_dir / "conf.d/90-mailwarden-quota.conf"
    quota.write_text(quota.read_text() + "# admin note after the block\n")
    new_policy = free_port()
    env.policy = new_policy
    r = env.run(*env.args("--apply"))
    assert r.returncode == 0, r.stderr
    text = master.read_text()
    assert text.startswith("# my own first line\n") and text.endswith("# my own last line\n")
    assert env.postconf("myhostname") == "handmade.example.test"
    assert quota.read_text().endswith("# admin note after the block\n")
    assert f"inet:127.0.0.1:{new_policy}" in env.postconf("smtpd_relay_restrictions")


def _fails_cleanly(env: Env, r: subprocess.CompletedProcess[str], before: dict[str, str]) -> str:
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert env.snapshot() == before
    return r.stderr


def test_postfix_missing(env: Env) -> None:
    before = env.snapshot()
    r = env.run(*env.args("--apply"), path="/usr/bin:/bin")
    assert "Postfix is not installed: apt-get install postfix" in _fails_cleanly(env, r, before)


def test_dovecot_missing(env: Env, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for program in ("postconf", "postfix", "postmap"):
        (bindir / program).symlink_to(f"/usr/sbin/{program}")
    before = env.snapshot()
    r = env.run(*env.args("--apply"), path=f"{bindir}:/bin")
    err = _fails_cleanly(env, r, before)
    assert "Dovecot is not installed: apt-get install dovecot-core" in err


def test_wrong_mariadb_password(env: Env, mariadb: object) -> None:
    url = mariadb.create_database("mwsetup", "mwsetup", "right")  # type: ignore[attr-defined]
    before = env.snapshot()
    r = env.run(*env.args("--apply", url=url.replace(":right@", ":wrong@")))
    assert "Access denied" in _fails_cleanly(env, r, before)


def test_unwritable_mail_root(env: Env) -> None:
    blocker = env.base / "afile"
    blocker.write_text("not a directory\n")
    env.mail_root = blocker / "vmail"
    before = env.snapshot()
    r = env.run(*env.args("--apply"))
    assert "mail root" in _fails_cleanly(env, r, before)


def test_port_in_use(env: Env) -> None:
    before = env.snapshot()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", env.policy))
        busy.listen()
        r = env.run(*env.args("--apply"))
    err = _fails_cleanly(env, r, before)
    assert f"policy port 127.0.0.1:{env.policy} is in use" in err


def test_config_typo(env: Env) -> None:
    env.config.parent.mkdir(parents=True, exist_ok=True)
    env.config.write_text('[mail]\nrooot = "/var/mail/vhosts"\n')
    before = env.snapshot()
    r = env.run(*env.args("--apply"))
    assert "unknown key mail.rooot" in _fails_cleanly(env, r, before)


def test_bad_domain(env: Env) -> None:
    before = env.snapshot()
    r = env.run(*env.args("--apply", "--domain", "not a domain"))
    _fails_cleanly(env, r, before)


# --- Postfix address classes (issue 9): a hosted domain never stays in mydestination ---

DEBIAN_MYDESTINATION = "$myhostname, example.test, vm, localhost.localdomain, localhost"


def test_debian_postinst_mydestination_is_fixed_and_the_dry_run_shows_it(env: Env) -> None:
    """What Debian's postinst writes when the hosted domain was the debconf mail name."""
    env.postfix.postconf("-e", f"mydestination = {DEBIAN_MYDESTINATION}")
    dry = env.run(*env.args("--dry-run"))
    assert dry.returncode == 0, dry.stderr
    fixed = "$myhostname, vm, localhost.localdomain, localhost"
    assert f"postconf -c {env.postfix.config_dir} -e 'mydestination = {fixed}'" in dry.stdout
    assert env.postconf("mydestination") == DEBIAN_MYDESTINATION  # a dry run changes nothing
    r = env.run(*env.args("--apply"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert env.postconf("mydestination") == fixed
    again = env.run(*env.args("--apply"))
    assert again.stdout.strip() == "mailwarden setup: nothing to change", again.stdout


def test_mydomain_in_mydestination_is_removed(env: Env) -> None:
    # tests.servers.Postfix: myhostname = mx.example.test, mydomain = example.test
    env.postfix.postconf("-e", "mydestination = $myhostname, $mydomain, localhost")
    r = env.run(*env.args("--apply"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert env.postconf("mydestination") == "$myhostname, localhost"


def test_domain_already_in_the_database_is_taken_out_of_mydestination(env: Env) -> None:
    assert env.run(*env.args("--apply")).returncode == 0
    env.run("--config", str(env.config), "domain", "add", "late.example")
    env.postfix.postconf("-e", "mydestination = localhost, late.example")
    r = env.run(*env.args("--apply"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert env.postconf("mydestination") == "localhost"


def test_hosted_domain_that_is_the_machines_hostname_stops_setup(env: Env) -> None:
    env.postfix.postconf(
        "-e", "myhostname = example.test", "mydestination = $myhostname, localhost"
    )
    before = env.snapshot()
    err = _fails_cleanly(env, env.run(*env.args("--apply")), before)
    assert "example.test is this machine's own mail name (myhostname = example.test)" in err
    assert "mydestination" in err


def test_hosted_domain_from_a_mydestination_table_stops_setup(env: Env) -> None:
    env.postfix.postconf("-e", "mydestination = localhost, inline:{example.org=ok}")
    before = env.snapshot()
    err = _fails_cleanly(env, env.run(*env.args("--apply")), before)
    assert "example.org is in mydestination through inline:{example.org=ok}" in err


def test_broken_main_cf(env: Env) -> None:
    main_cf = env.postfix.config_dir / "main.cf"
    good = main_cf.read_text()
    main_cf.write_text(good + "this line has no equals sign\n")
    try:
        before = env.snapshot()
        err = _fails_cleanly(env, env.run(*env.args("--apply")), before)
        assert f"{main_cf} is broken, fix it first" in err and "missing '='" in err
    finally:
        main_cf.write_text(good)


def test_missing_main_cf(env: Env) -> None:
    main_cf = env.postfix.config_dir / "main.cf"
    saved = main_cf.with_name("main.cf.saved")
    main_cf.rename(saved)
    try:
        before = env.snapshot()
        err = _fails_cleanly(env, env.run(*env.args("--apply")), before)
        assert f"{main_cf} does not exist" in err
    finally:
        saved.rename(main_cf)


def test_database_file_not_writable(env: Env) -> None:
    assert env.run(*env.args("--apply")).returncode == 0
    immutable = subprocess.run(["chattr", "+i", str(env.db)], capture_output=True, check=False)
    if immutable.returncode != 0:
        pytest.skip(f"chattr +i not supported here: {immutable.stderr!r}")
    try:
        before = env.snapshot()
        r = env.run(*env.args("--apply", "--domain", "new.example"))
        err = _fails_cleanly(env, r, before)
        assert f"database {env.db} is not writable" in err
    finally:
        subprocess.run(["chattr", "-i", str(env.db)], check=False)


def _fake_dovecot(tmp_path: Path, version: str) -> str:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "dovecot").write_text(f"#!/bin/sh\necho '{version} (0000000000)'\n")
    (bindir / "dovecot").chmod(0o755)
    (bindir / "doveadm").symlink_to(shutil.which("doveadm") or "/usr/bin/doveadm")
    return f"{bindir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"


def test_unsupported_dovecot_version(env: Env, tmp_path: Path) -> None:
    before = env.snapshot()
    r = env.run(*env.args("--apply"), path=_fake_dovecot(tmp_path, "2.2.36"))
    err = _fails_cleanly(env, r, before)
    assert "Dovecot 2.2.36 is not supported" in err


def test_dovecot_24_binary_with_a_23_configuration(env: Env, tmp_path: Path) -> None:
    before = env.snapshot()
    r = env.run(*env.args("--apply"), path=_fake_dovecot(tmp_path, "2.4.1-4"))
    err = _fails_cleanly(env, r, before)
    assert "is a Dovecot 2.3 configuration but Dovecot 2.4.1-4 is installed" in err


def test_rerun_switches_an_older_sqlite_database_to_wal(env: Env) -> None:
    """An install made before WAL (file 0640, rollback journal): a re-run that changes
    nothing else still shares the file and switches it, and the dry run says so."""
    import sqlite3

    assert env.run(*env.args("--apply")).returncode == 0
    conn = sqlite3.connect(env.db)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    os.chmod(env.db, 0o640)
    dry = env.run(*env.args("--dry-run"))
    assert "switch it to WAL mode" in dry.stdout, dry.stdout + dry.stderr
    r = env.run(*env.args("--apply"))
    assert r.returncode == 0, r.stdout + r.stderr
    conn = sqlite3.connect(env.db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert env.db.stat().st_mode & 0o777 == 0o660
    again = env.run(*env.args("--apply"))
    assert again.stdout.strip() == "mailwarden setup: nothing to change", again.stdout


def _without(args: list[str], *flags: str) -> list[str]:
    out = list(args)
    for flag in flags:
        i = out.index(flag)
        del out[i : i + 2]
    return out


def _connect_as(user: str, path: Path) -> str:
    """Connect to a unix socket as ``user``: the greeting, or the error's name."""
    code = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_UNIX); s.settimeout(10)\n"
        "try:\n s.connect(sys.argv[1]); print(s.recv(100).decode().split()[0])\n"
        "except OSError as e: print(type(e).__name__)\n"
    )
    import pwd

    gid = pwd.getpwnam(user).pw_gid  # the user's own groups, as a login would have
    groups = [g.gr_gid for g in grp.getgrall() if user in g.gr_mem]
    proc = subprocess.run(
        ["/usr/bin/python3", "-c", code, str(path)],
        user=user,
        group=gid,
        extra_groups=groups,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc.stdout.strip() or proc.stderr.strip()


def test_sockets_below_the_queue_directory_only_postfix_may_connect(env: Env) -> None:
    """Setup's default sockets: directories below *this* Postfix's queue directory,
    <user>:postfix 0750, named relative to it in main.cf (what a chrooted lmtp/smtpd
    needs); the real lmtpd there answers Postfix's user and refuses another local user."""
    from tests.daemons import start_daemon

    args = _without(env.args("--dry-run"), "--lmtp-listen", "--milter-listen")
    dry = env.run(*args)
    assert dry.returncode == 0, dry.stderr
    queue = env.postfix.queue_dir
    postfix_gid = grp.getgrnam("postfix").gr_gid
    assert f"install -d -o 5000 -g {postfix_gid} -m 0750 {queue}/mailwarden-lmtpd" in dry.stdout
    assert not (queue / "mailwarden-lmtpd").exists()
    r = env.run(*_without(env.args("--apply"), "--lmtp-listen", "--milter-listen"))
    assert r.returncode == 0, r.stderr
    assert env.postconf("virtual_transport") == "lmtp:unix:mailwarden-lmtpd/lmtp.sock"
    assert env.postconf("smtpd_milters") == "unix:mailwarden-milter/milter.sock"
    text = env.config.read_text()
    assert f'lmtp_listen = ["unix:{queue}/mailwarden-lmtpd/lmtp.sock"]' in text
    assert f'listen = ["unix:{queue}/mailwarden-milter/milter.sock"]' in text
    for name, uid in (("mailwarden-lmtpd", 5000), ("mailwarden-milter", None)):
        st = (queue / name).stat()
        assert (st.st_gid, st.st_mode & 0o7777) == (postfix_gid, 0o750), name
        assert uid is None or st.st_uid == uid
    again = env.run(*_without(env.args("--apply"), "--lmtp-listen", "--milter-listen"))
    assert again.stdout.strip() == "mailwarden setup: nothing to change", again.stdout
    sock = queue / "mailwarden-lmtpd" / "lmtp.sock"
    lmtpd = start_daemon("lmtpd", env.config, f"unix:{sock}", env.base / "lmtpd.log")
    try:
        assert _connect_as("postfix", sock) == "220"
        assert _connect_as("vmail", sock) == "220"  # the pipe LDA hands over to lmtpd
        assert _connect_as("nobody", sock) == "PermissionError"
    finally:
        lmtpd.stop()
