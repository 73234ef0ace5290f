"""contrib/exim/scan.conf with REAL Exim 4.96 (-bh), REAL clamd and REAL spamd.

Exim has no milter; scan.conf is its DATA-ACL equivalent. ``exim -bh`` runs the ACLs
for real (clamd and spamd are called) and prints the SMTP replies.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import servers

pytestmark = pytest.mark.integration

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "exim" / "scan.conf"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[servers.Exim, servers.Clamd]]:
    missing = servers.missing_requirements(servers.Exim, servers.Clamd, servers.Spamd)
    if missing or not servers.Exim.binary().is_file():
        pytest.skip("cannot run real servers: " + "; ".join(missing or ["no exim"]))
    base = servers.make_workdir("mw-exim-scan-")
    clamd, spamd = servers.Clamd(base), servers.Spamd(base)
    with clamd, spamd:
        config = (
            f"MAILWARDEN_CLAMD = 127.0.0.1 {clamd.port}\n"
            f"MAILWARDEN_SPAMD = 127.0.0.1 {spamd.port}\n"
            "primary_hostname = mx.example.test\n"
            "domainlist local_domains = example.test\n"
            "acl_smtp_rcpt = acl_rcpt\n"
            + CONTRIB.read_text()
            + "\nacl_rcpt:\n  accept domains = +local_domains\n  deny\n"
        )
        exim = servers.Exim(base, config)
        yield exim, clamd
    if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
        shutil.rmtree(base, ignore_errors=True)


def session(body: str, subject: str = "t") -> str:
    return (
        "EHLO client.test\r\nMAIL FROM:<s@outside.test>\r\nRCPT TO:<alice@example.test>\r\n"
        f"DATA\r\nFrom: s@outside.test\r\nSubject: {subject}\r\nX-Spam-Flag: NO\r\n\r\n"
        f"{body}\r\n.\r\nQUIT\r\n"
    )


def replies(out: str) -> list[str]:
    """The SMTP reply lines of a -bh run (not the >>> debug lines)."""
    return [line for line in out.splitlines() if line[:3].isdigit() and line[3:4] in (" ", "-")]


def test_eicar_rejected_with_name(env: tuple[servers.Exim, servers.Clamd]) -> None:
    exim, clamd = env
    reply = replies(exim.bh(session(clamd.eicar.decode())))[-2]
    assert reply == f"554 5.7.1 Virus {clamd.signature_name} detected"


def test_clean_and_gtube_accepted(env: tuple[servers.Exim, servers.Clamd]) -> None:
    exim, _ = env
    for body in ("hello", GTUBE):
        assert replies(exim.bh(session(body)))[-2].startswith("250 OK id=")


def test_clamd_down_defers(env: tuple[servers.Exim, servers.Clamd]) -> None:
    exim, clamd = env
    clamd.stop()
    try:
        assert replies(exim.bh(session("hello")))[-2].startswith("451 ")
    finally:
        clamd.start()
