"""``mailwarden setup`` on a Dovecot 2.4 host (Debian 13): it detects the version and
writes the 2.4 file, which real ``doveconf`` 2.4 accepts.

Dovecot 2.4.1 lives in the Debian 13 chroot scripts/install-deps.sh builds
(``MAILWARDEN_DOVECOT24_ROOT``, /opt/mailwarden-test/trixie). Setup runs on the host with
``dovecot``/``doveconf``/``doveadm`` on its PATH being wrappers that run the chroot's
binaries, against a copy of the chroot's stock /etc/dovecot placed inside the chroot, so
the same files are read by setup (host path) and by doveconf 2.4 (chroot path); Postfix is
a private test instance.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import Postfix, free_port, make_workdir, missing_requirements

pytestmark = pytest.mark.integration
SRC = str(Path(__file__).resolve().parents[2] / "src")
ROOT = Path(os.environ.get("MAILWARDEN_DOVECOT24_ROOT", "/opt/mailwarden-test/trixie"))


@dataclass
class Env24:
    base: Path
    postfix: Postfix
    inside: str  # the work dir as the chroot sees it
    host: Path  # the same dir from the host
    path: str  # PATH with the 2.4 wrappers first
    ports: tuple[int, int, int]

    @property
    def dovecot_dir(self) -> Path:
        return self.host / "dovecot"

    def setup(self, *extra: str) -> subprocess.CompletedProcess[str]:
        argv = [
            sys.executable,
            "-m",
            "mailwarden",
            "setup",
            "--non-interactive",
            "--database-url",
            f"sqlite:///{self.base}/var/mw.db",
            "--domain",
            "example.test",
            "--postmaster",
            "postmaster@example.test",
            "--mail-root",
            str(self.base / "vmail"),
            "--postfix-dir",
            str(self.postfix.config_dir),
            "--dovecot-dir",
            str(self.dovecot_dir),
            "--config-path",
            str(self.base / "etc" / "mailwarden.toml"),
            "--policy-listen",
            f"127.0.0.1:{self.ports[0]}",
            "--milter-listen",
            f"inet:{self.ports[1]}@127.0.0.1",
            "--metrics-listen",
            f"127.0.0.1:{self.ports[2]}",
            "--lmtp-listen",
            f"unix:{self.base}/lmtp.sock",
            *extra,
        ]
        env = dict(os.environ, PYTHONPATH=SRC, PATH=self.path)
        env.pop("MAILWARDEN_CONFIG", None)  # a fresh machine has none; setup writes it
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)

    def doveconf(self, *args: str) -> subprocess.CompletedProcess[str]:
        conf = f"{self.inside}/dovecot/dovecot.conf"
        return subprocess.run(
            ["chroot", str(ROOT), "/usr/bin/doveconf", "-c", conf, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def env24() -> Iterator[Env24]:
    if os.geteuid() != 0 or not (ROOT / "usr/sbin/dovecot").exists():
        pytest.skip(f"no Dovecot 2.4 chroot at {ROOT} (scripts/install-deps.sh builds it)")
    missing = missing_requirements(Postfix)
    if missing:
        pytest.skip(f"needs Postfix: {missing}")
    name = f"mw-setup24-{secrets.token_hex(4)}"
    inside, host = f"/srv/{name}", ROOT / "srv" / name
    host.mkdir(parents=True, mode=0o755)
    shutil.copytree(ROOT / "etc/dovecot", host / "dovecot", symlinks=True)
    base = make_workdir("mw-setup24-")
    (base / "var").mkdir()
    bindir = base / "bin"
    bindir.mkdir()
    for program, where in (("dovecot", "sbin"), ("doveconf", "bin"), ("doveadm", "bin")):
        wrapper = bindir / program
        wrapper.write_text(f'#!/bin/sh\nexec chroot {ROOT} /usr/{where}/{program} "$@"\n')
        wrapper.chmod(0o755)
    postfix = Postfix(base)
    ports = (free_port(), free_port(), free_port())
    try:
        yield Env24(base, postfix, inside, host, f"{bindir}:{os.environ['PATH']}", ports)
    finally:
        postfix.stop()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(host, ignore_errors=True)


def test_setup_writes_the_24_file_and_doveconf_24_accepts_it(env24: Env24) -> None:
    dry = env24.setup("--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"+++ {env24.dovecot_dir}/conf.d/99-mailwarden.conf" in dry.stdout
    assert "+++ " + f"{env24.dovecot_dir}/conf.d/10-mailwarden-auth.conf" not in dry.stdout

    r = env24.setup("--apply")
    assert r.returncode == 0, r.stdout + r.stderr
    written = env24.dovecot_dir / "conf.d/99-mailwarden.conf"
    text = written.read_text()
    # dovecot.conf has the version lines already: a second copy would be an error
    assert "\ndovecot_config_version" not in text
    assert not (env24.dovecot_dir / "conf.d/10-mailwarden-auth.conf").exists()
    assert oct(written.stat().st_mode & 0o777) == "0o640"

    conf = env24.doveconf("-n")
    assert conf.returncode == 0, conf.stderr
    assert "Warning" not in conf.stderr and "Error" not in conf.stderr, conf.stderr
    out = conf.stdout
    assert "passdb sql {" in out and "userdb sql {" in out
    assert f"sqlite_path = {env24.base}/var/mw.db" in out
    assert f"unix_listener {env24.postfix.queue_dir}/private/auth" in out
    values = env24.doveconf("-h", "mail_driver", "mail_path", "mail_inbox_path", "mail_home")
    assert values.returncode == 0, values.stderr
    assert values.stdout.splitlines()[:2] == ["maildir", "~/"], values.stdout
    # INBOX is the Maildir's root, not Debian's /var/mail (nor a ".INBOX" folder)
    assert [v.strip() for v in values.stdout.splitlines()[2:]] in (["."], [".", ""]), values.stdout

    again = env24.setup("--apply")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "mailwarden setup: nothing to change", again.stdout
