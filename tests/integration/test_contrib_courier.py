"""contrib/courier against the real schema: Courier authlib's ``authtest`` accepts the
CLI-created mailboxes through authmysqlrc and authsqliterc edited with the contrib keys.

authdaemond and its modules only read the compiled-in /etc/courier/auth*rc and serve the
compiled-in socket /run/courier/authdaemon/socket. So authdaemond runs in a private mount
namespace (``unshare -m``) where a test dir is bind-mounted over /etc/courier and another
over /run/courier/authdaemon, and ``authtest`` joins that namespace (``nsenter``); nothing
on the host changes. Where namespaces are not allowed (an unprivileged container), the
real /etc/courier files are backed up, rewritten and restored around the test instead.

authdaemond runs in the foreground with its output in a file: it logs through
courierlogger to syslog otherwise, and there is no syslog here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.contrib import (
    CONTRIB,
    COURIER_VIEWS,
    courier_rc,
    mail_settings,
    placeholders,
    reader_url,
    render,
)
from tests.servers import unix_socket_open

pytestmark = pytest.mark.integration

AUTHDAEMOND = Path("/usr/lib/courier/courier-authlib/authdaemond")
AUTHTEST = shutil.which("authtest", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
ETC = Path("/etc/courier")
RUN = Path("/run/courier/authdaemon")
RC_FILES = ("authdaemonrc", "authmysqlrc", "authsqliterc")
PASSWORD = "Corr3ct horse"
READY_TIMEOUT = 15.0


def namespaces_work() -> bool:
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


class Authdaemon:
    """authdaemond with the given rc files in place of /etc/courier's."""

    def __init__(self, base: Path, rc_texts: dict[str, str]) -> None:
        self.dir = base
        self.etc = base / "etc"
        self.run = base / "run"
        self.log = base / "authdaemond.log"
        self.isolated = namespaces_work()
        self._proc: subprocess.Popen[bytes] | None = None
        self._backup = base / "etc-backup"
        self._lock: int | None = None
        for path in (self.etc, self.run):
            path.mkdir(parents=True)
        shutil.chown(self.run, "courier", "courier")
        self.run.chmod(0o750)
        for name in RC_FILES:
            shutil.copy2(ETC / name, self.etc / name)
            if name in rc_texts:
                (self.etc / name).write_text(rc_texts[name])

    @property
    def socket(self) -> Path:
        return (self.run if self.isolated else RUN) / "socket"

    def start(self) -> None:
        if self.isolated:
            argv = [
                "unshare", "-m", "--propagation", "private", "sh", "-c",
                f'mount --bind "$1" {ETC} && mount --bind "$2" {RUN} && exec "$3"',
                "sh", str(self.etc), str(self.run), str(AUTHDAEMOND),
            ]  # fmt: skip
        else:
            self._install_in_etc()
            argv = [str(AUTHDAEMOND)]
        with open(self.log, "ab") as out:
            self._proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while not unix_socket_open(self.socket):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"authdaemond not ready:\n{self.log.read_text()}")
            time.sleep(0.02)

    def _install_in_etc(self) -> None:
        """The fallback: swap the real rc files, under a lock, restored by stop()."""
        self._lock = os.open("/tmp/mailwarden-tests-courier.lock", os.O_CREAT | os.O_RDWR)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self._backup.mkdir()
        for name in RC_FILES:
            shutil.copy2(ETC / name, self._backup / name)
            shutil.copy2(self.etc / name, ETC / name)

    def authtest(self, user: str, password: str) -> subprocess.CompletedProcess[str]:
        assert AUTHTEST is not None
        prefix = ["nsenter", "-t", str(self._proc.pid), "-m"] if self.isolated else []  # type: ignore[union-attr]
        return subprocess.run(
            [*prefix, AUTHTEST, user, password],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(10)
        if self._lock is not None:
            for name in RC_FILES:
                if (self._backup / name).exists():
                    shutil.copy2(self._backup / name, ETC / name)
            with contextlib.suppress(FileNotFoundError):
                (RUN / "socket").unlink()
            os.close(self._lock)  # releases the flock
            self._lock = None


def build_mailboxes(cli: Cli) -> None:
    pw = PASSWORD + "\n"
    cli.ok("domain", "add", "example.test")
    cli.ok("group", "add", "noimap", "--no-imap")
    cli.ok("user", "add", "alice@example.test", "--password-stdin", "--quota", "1G", stdin=pw)
    cli.ok("user", "add", "Bob@Example.test", "--password-stdin", stdin=pw)
    cli.ok("user", "add", "carol@example.test", "--password-stdin", "--group", "noimap", stdin=pw)
    cli.ok("user", "add", "dave@example.test", "--password-stdin", "--scheme", "argon2id", stdin=pw)
    cli.ok("user", "add", "eve@example.test", "--password-stdin", "--inactive", stdin=pw)


@pytest.fixture
def authdaemon(cli: Cli, request: pytest.FixtureRequest, workdir: Path) -> Iterator[Authdaemon]:
    if not AUTHDAEMOND.is_file() or AUTHTEST is None:
        pytest.skip("courier-authdaemon is not installed (authdaemond, authtest)")
    build_mailboxes(cli)
    server = request.getfixturevalue("mariadb") if cli.url.startswith("mysql:") else None
    url = reader_url(cli.url, server, "courier", COURIER_VIEWS)
    root, uid, gid = mail_settings(cli.config_path)
    values = placeholders(url, mail_root=root, uid=uid, gid=gid)
    module = f"auth{values['@DB_DIALECT@']}"
    fragment = render((CONTRIB / f"courier/{module}rc.mailwarden").read_text(), values)
    daemonrc = (ETC / "authdaemonrc").read_text().splitlines()
    daemonrc = [
        f'authmodulelist="{module}"' if line.startswith("authmodulelist=")
        else "daemons=1" if line.startswith("daemons=")
        else "DEBUG_LOGIN=1" if line.startswith("DEBUG_LOGIN=")
        else line
        for line in daemonrc
    ]  # fmt: skip
    rc_texts = {
        f"{module}rc": courier_rc((ETC / f"{module}rc").read_text(), fragment),
        "authdaemonrc": "\n".join(daemonrc) + "\n",
    }
    daemon = Authdaemon(workdir / f"courier-{os.urandom(4).hex()}", rc_texts)
    daemon.start()
    yield daemon
    daemon.stop()


def authtest_fields(output: str) -> dict[str, str]:
    """'     Home Directory: /x' lines of authtest's report as a dict."""
    fields = {}
    for line in output.splitlines():
        key, sep, value = line.strip().partition(": ")
        if sep:
            fields[key] = value.strip()
    return fields


def test_authtest(authdaemon: Authdaemon, cli: Cli) -> None:
    root = mail_settings(cli.config_path)[0]
    proc = authdaemon.authtest("alice@example.test", PASSWORD)
    assert proc.returncode == 0, proc.stdout + proc.stderr + authdaemon.log.read_text()
    fields = authtest_fields(proc.stdout)
    assert fields["Authenticated"] == "alice@example.test  (uid 5000, gid 5000)"
    assert fields["Home Directory"] == f"{root}/example.test/alice/"
    assert fields["Maildir"] == f"{root}/example.test/alice/"
    assert fields["Quota"] == f"{1 << 30}S"
    assert fields["Options"] == "disableimap=0,disablepop3=0"
    # Logins are stored lower-cased.
    fields = authtest_fields(authdaemon.authtest("bob@example.test", PASSWORD).stdout)
    assert fields["Authenticated"].startswith("bob@example.test ")
    assert fields["Quota"] == "(none)"
    # A group without IMAP becomes Courier's disableimap=1.
    fields = authtest_fields(authdaemon.authtest("carol@example.test", PASSWORD).stdout)
    assert fields["Options"] == "disableimap=1,disablepop3=0"


def test_authtest_refuses(authdaemon: Authdaemon) -> None:
    assert authdaemon.authtest("alice@example.test", "wrong").returncode != 0
    assert authdaemon.authtest("eve@example.test", PASSWORD).returncode != 0  # inactive
    assert authdaemon.authtest("nobody@example.test", PASSWORD).returncode != 0
    # Courier knows no {ARGON2ID}: such mailboxes can only use Dovecot (sql/README.md).
    assert authdaemon.authtest("dave@example.test", PASSWORD).returncode != 0
