"""contrib/radicale against a real Radicale: the services bitfield gates CalDAV/CardDAV.

Radicale (the test extra's PyPI package) runs on loopback with contrib/radicale's
radicale.conf (paths made private) and its auth plugin on the Python path, reading the
mailboxes the CLI made, on SQLite and MariaDB. A PROPFIND on the principal is what a
DAV client does first: 207 for a mailbox with calendar or contacts, 401 for one with
mail only, a wrong password, an inactive mailbox or an unknown one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Cli
from tests.contrib import CONTRIB
from tests.servers import free_port

pytestmark = pytest.mark.integration
SRC = Path(__file__).resolve().parents[2] / "src"
PW = "Dav-pa55 word"
PROPFIND = (
    '<?xml version="1.0"?><propfind xmlns="DAV:"><prop><current-user-principal/></prop></propfind>'
)


class Radicale:
    def __init__(self, cli: Cli, tmp: Path) -> None:
        pytest.importorskip("radicale")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        text = (CONTRIB / "radicale/radicale.conf").read_text()
        text = text.replace("127.0.0.1:5232", f"127.0.0.1:{self.port}")
        text = text.replace("/etc/mailwarden/mailwarden.toml", str(cli.config_path))
        text = text.replace("/var/lib/radicale/collections", str(tmp / "collections"))
        text = re.sub(r"^delay = 1$", "delay = 0", text, flags=re.M)
        self.config = tmp / "radicale.conf"
        self.config.write_text(text)
        self.log = tmp / "radicale.log"
        env = dict(os.environ, PYTHONPATH=f"{SRC}:{CONTRIB / 'radicale'}")
        env.pop("MAILWARDEN_CONFIG", None)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "radicale", "--config", str(self.config)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.url + "/.web/", timeout=1)
                break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"radicale did not start:\n{self.log.read_text()}")
            time.sleep(0.1)

    def propfind(self, user: str, password: str, path: str | None = None) -> int:
        r = httpx.request(
            "PROPFIND",
            self.url + (path or f"/{user}/"),
            auth=(user, password),
            headers={"Depth": "0", "Content-Type": "application/xml"},
            content=PROPFIND,
            timeout=30,
        )
        return r.status_code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def radicale(cli: Cli, tmp_path: Path) -> Iterator[Radicale]:
    cli.ok("domain", "add", "dav.test")
    for name, services in [
        ("cal", "calendar"),
        ("card", "contacts"),
        ("all", "all"),
        ("mailonly", "mail"),
    ]:
        cli.ok(
            "user",
            "add",
            f"{name}@dav.test",
            "--password-stdin",
            "--services",
            services,
            stdin=PW + "\n",
        )
    cli.ok(
        "user", "add", "argon@dav.test", "--password-stdin", "--scheme", "argon2id", stdin=PW + "\n"
    )
    cli.ok("user", "add", "off@dav.test", "--password-stdin", "--inactive", stdin=PW + "\n")
    server = Radicale(cli, tmp_path)
    yield server
    server.stop()


def test_services_bitfield_gates_the_dav_login(cli: Cli, radicale: Radicale) -> None:
    assert radicale.propfind("cal@dav.test", PW) == 207  # bit 2: CalDAV
    assert radicale.propfind("card@dav.test", PW) == 207  # bit 4: CardDAV (same gate)
    assert radicale.propfind("all@dav.test", PW) == 207
    assert radicale.propfind("argon@dav.test", PW) == 207  # {ARGON2ID}, as Dovecot reads
    assert radicale.propfind("Cal@DAV.test", PW, "/cal@dav.test/") == 207  # %Lu
    assert radicale.propfind("mailonly@dav.test", PW) == 401  # no calendar, no contacts
    assert radicale.propfind("cal@dav.test", "wrong") == 401
    assert radicale.propfind("off@dav.test", PW) == 401  # inactive
    assert radicale.propfind("ghost@dav.test", PW) == 401
    # owner_only: a mailbox does not read another's principal
    assert radicale.propfind("cal@dav.test", PW, "/all@dav.test/") in (403, 404)
    # the bitfield is read at every login: a change applies at once
    cli.ok("user", "set", "cal@dav.test", "--services", "mail")
    assert radicale.propfind("cal@dav.test", PW) == 401
    cli.ok("user", "set", "mailonly@dav.test", "--services", "mail,calendar")
    assert radicale.propfind("mailonly@dav.test", PW) == 207
    cli.ok("domain", "set", "dav.test", "--active", "no")
    assert radicale.propfind("all@dav.test", PW) == 401
    log = radicale.log.read_text()
    assert "mailwarden auth: mailonly@dav.test refused: services" in log
    assert PW not in log
