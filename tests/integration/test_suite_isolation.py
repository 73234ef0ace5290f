"""The test machinery keeps to its own instances, also beside a running quickstart.

``make test`` runs on a machine where the quickstart left Postfix (25), Dovecot (143,
110), spamd (783), clamd (/run/clamav), ``mailwarden serve`` (10040, 8894, 10024,
metrics on 127.0.0.1:9190) and ``/etc/mailwarden/mailwarden.toml``. Covered here, each
failing without its fix: a daemon started by ``tests.daemons.start_daemon`` without
``--metrics`` does not take 127.0.0.1:9190 (it died on ``Address already in use`` and
Postfix answered 4xx through the policy service); ``write_config`` files name no system
service or file; nothing started by a test reads the system's configuration;
``mailwarden_bin`` is this checkout's, not the quickstart's ``/usr/local/bin/mailwarden``;
``Postfix.reload`` returns only when no smtpd of the old configuration can take a
connection.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import smtplib
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailwarden import config
from tests import servers
from tests.conftest import NO_CONFIG, Cli, mailwarden_bin, run_bin, write_config
from tests.daemons import start_daemon

pytestmark = pytest.mark.integration

SYSTEM_METRICS = ("127.0.0.1", 9190)


@contextlib.contextmanager
def system_metrics_port_taken() -> Iterator[None]:
    """127.0.0.1:9190 held, by the quickstart's ``mailwarden serve`` or else by us."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(SYSTEM_METRICS)
            sock.listen()
        except OSError:
            pass  # already held, as after a quickstart
        yield
    finally:
        sock.close()


@pytest.mark.parametrize("kind", ["policyd", "lmtpd", "milter"])
def test_daemon_started_without_metrics_leaves_9190_alone(kind: str, tmp_path: Path) -> None:
    root = tmp_path / "vmail"
    root.mkdir()
    url = f"sqlite:///{tmp_path}/db.sqlite"
    # metrics on purpose at the built-in default, as in a config written by hand
    cfg = write_config(tmp_path / "c.toml", url, root, '[metrics]\nlisten = "127.0.0.1:9190"\n')
    Cli(cfg, url).ok("db", "init")
    listen = {
        "policyd": f"127.0.0.1:{servers.free_port()}",
        "lmtpd": f"unix:{tmp_path}/lmtp.sock",
        "milter": f"inet:{servers.free_port()}@127.0.0.1",
    }[kind]
    with system_metrics_port_taken():
        daemon = start_daemon(kind, cfg, listen, tmp_path / "d.log")  # type: ignore[arg-type]
        try:
            assert daemon.alive, daemon.log_tail()
            assert "Address already in use" not in daemon.log_tail()
        finally:
            daemon.stop()


def test_write_config_names_no_system_service(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/db", tmp_path / "vmail")
    s = config.load(str(path))
    defaults = config.Settings()
    assert s.lda.lmtp_listen == ()
    assert s.metrics.listen == config.METRICS_OFF
    assert s.lda.metrics_dir.startswith(str(tmp_path))
    for ours, system in (
        (s.lda.sendmail, defaults.lda.sendmail),
        (s.milter.clamd, defaults.milter.clamd),
        (s.milter.spamd, defaults.milter.spamd),
    ):
        assert ours != system and "/nonexistent/" in ours
    # what a test sets itself is kept
    extra = '[milter]\nclamd = "unix:/x/clamd.sock"\n[metrics]\nlisten = "127.0.0.1:1"\n'
    s = config.load(str(write_config(tmp_path / "d.toml", "sqlite:///x", tmp_path, extra)))
    assert (s.milter.clamd, s.milter.spamd) == (
        "unix:/x/clamd.sock",
        "unix:/nonexistent/spamd.sock",
    )
    assert s.metrics.listen == "127.0.0.1:1"


def test_commands_without_config_never_read_the_system_one() -> None:
    assert os.environ["MAILWARDEN_CONFIG"] == NO_CONFIG
    r = run_bin("domain", "list")
    err = r.stderr.decode()
    assert r.returncode == 1 and f"{NO_CONFIG}: configuration file not found" in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_mailwarden_bin_is_this_venvs() -> None:
    exe = Path(mailwarden_bin()[0])
    assert exe.parent == Path(sys.executable).parent, exe
    assert exe != Path("/usr/local/bin/mailwarden")


@pytest.fixture
def postfix() -> Iterator[servers.Postfix]:
    missing = servers.missing_requirements(servers.Postfix)
    if missing:
        pytest.skip("cannot run Postfix: " + "; ".join(missing))
    base = servers.make_workdir("mw-isolation-")
    try:
        with servers.Postfix(base) as server:
            yield server
    finally:
        shutil.rmtree(base, ignore_errors=True)


def banner(pf: servers.Postfix) -> str:
    smtp = smtplib.SMTP(timeout=10)
    try:
        return smtp.connect("127.0.0.1", pf.smtp_port)[1].decode()
    finally:
        smtp.close()


def test_postfix_reload_leaves_no_smtpd_of_the_old_config(postfix: servers.Postfix) -> None:
    """A master slow to handle the reload (stopped for a second here) and an idle smtpd of
    the old configuration: the next connection must still see the new configuration."""
    banner(postfix)  # leaves an idle smtpd behind
    postfix.postconf("-e", "smtpd_banner=$myhostname ESMTP after-reload")
    master = postfix.master_pid()
    assert master is not None
    os.kill(master, signal.SIGSTOP)
    timer = threading.Timer(1.0, os.kill, (master, signal.SIGCONT))
    timer.start()
    try:
        postfix.reload()
    finally:
        timer.join()
    assert banner(postfix).endswith("after-reload")
