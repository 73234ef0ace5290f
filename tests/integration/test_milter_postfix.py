"""The milter behind REAL Postfix, with REAL clamd and REAL spamd.

Postfix (tests/servers.Postfix) has ``smtpd_milters`` in the per-milter form of
contrib/postfix/main.cf.milter and delivers to a texthash virtual mailbox map with its
own virtual(8) into Maildirs below the work dir, where the tests read the headers.
SMTP with smtplib. Covered: EICAR in the body and in a base64 attachment rejected with
the virus name; GTUBE tagged and forged ``X-Spam-*`` / ``X-Mailwarden-*`` headers
removed; a message without any header delivered (on TCP and on a unix socket, where
DATA and end-of-headers are not negotiated); clean mail with ``X-Virus-Scanned``; clamd
stopped -> 451 4.3.0 and recovery after restart; spamd stopped -> accepted
``unscanned`` (spamd_failure = accept) or 451 (tempfail).
"""

from __future__ import annotations

import base64
import email
import os
import shutil
import smtplib
import time
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from tests import servers
from tests.integration.test_milter_protocol import (
    MilterProcess,
    init_db,
    start_milter,
    write_milter_config,
)

pytestmark = pytest.mark.integration

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    missing = servers.missing_requirements(servers.Postfix, servers.Clamd, servers.Spamd)
    if missing:
        pytest.skip("cannot run real servers: " + "; ".join(missing))
    path = servers.make_workdir("mw-mpf-")
    yield path
    if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def clamd(base: Path) -> Iterator[servers.Clamd]:
    with servers.Clamd(base) as server:
        yield server


@pytest.fixture(scope="module")
def spamd(base: Path) -> Iterator[servers.Spamd]:
    with servers.Spamd(base) as server:
        yield server


@pytest.fixture(scope="module")
def milters(
    base: Path, clamd: servers.Clamd, spamd: servers.Spamd
) -> Iterator[dict[str, MilterProcess]]:
    url, _cfg = init_db(base)
    common = {"clamd": f"unix:{clamd.socket}", "spamd": f"127.0.0.1:{spamd.port}"}
    procs = {
        "accept": start_milter(base, "m-accept", url, **common),
        "tempfail": start_milter(base, "m-tempfail", url, spamd_failure="tempfail", **common),
    }
    cfg = write_milter_config(base / "m-unix.toml", url, base / "vmail", **common)
    unix = MilterProcess(
        cfg,
        base / "m-unix-tmp",
        f"unix:{base}/m-unix.sock",
        0,
        servers.free_port(),
        base / "m-unix.log",
    )
    unix.start()
    procs["unix"] = unix
    yield procs
    for proc in procs.values():
        proc.stop()


def milter_setting(port: int) -> str:
    return f"{{ inet:127.0.0.1:{port}, connect_timeout=10s, default_action=tempfail }}"


@pytest.fixture(scope="module")
def postfix(base: Path, milters: dict[str, MilterProcess]) -> Iterator[servers.Postfix]:
    vmail = base / "vmail"
    vmail.mkdir(exist_ok=True)
    os.chown(vmail, servers.VMAIL_UID, servers.VMAIL_GID)
    server = servers.Postfix(
        base,
        main_cf_extra={
            "virtual_mailbox_domains": "example.test",
            "virtual_mailbox_base": str(vmail),
            "virtual_uid_maps": f"static:{servers.VMAIL_UID}",
            "virtual_gid_maps": f"static:{servers.VMAIL_GID}",
            "virtual_transport": "virtual",
            "smtpd_milters": milter_setting(milters["accept"].port),
            "non_smtpd_milters": "$smtpd_milters",
            "milter_default_action": "tempfail",
        },
    )
    maps = server.write_file(
        "vmailbox", "alice@example.test example.test/alice/\nbob@example.test example.test/bob/\n"
    )
    server.postconf("-e", f"virtual_mailbox_maps=texthash:{maps}")
    with server:
        yield server


def send(
    pf: servers.Postfix,
    body: str,
    *,
    headers: str = "",
    subject: str = "test",
    rcpts: tuple[str, ...] = ("alice@example.test",),
) -> tuple[int, str]:
    msg = (
        f"From: sender@outside.test\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{time.time_ns()}@outside.test>\r\n{headers}\r\n{body}\r\n"
    )
    with smtplib.SMTP("127.0.0.1", pf.smtp_port, timeout=60) as smtp:
        try:
            smtp.sendmail("sender@outside.test", list(rcpts), msg.encode())
        except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
            return exc.smtp_code, exc.smtp_error.decode()
    return 250, "ok"


def delivered(base: Path, user: str, subject: str, timeout: float = 15.0) -> Message:
    """The message with ``subject`` in ``user``'s Maildir (waits for virtual(8))."""
    new = base / "vmail" / "example.test" / user / "new"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in new.glob("*") if new.is_dir() else ():
            msg = email.message_from_bytes(path.read_bytes())
            if msg["Subject"] == subject:
                return msg
        time.sleep(0.1)
    raise AssertionError(f"no message {subject!r} for {user}")


def test_clean_mail_passes_with_x_virus_scanned(base: Path, postfix: servers.Postfix) -> None:
    assert send(postfix, "hello", subject="clean") == (250, "ok")
    msg = delivered(base, "alice", "clean")
    assert msg.get_all("X-Virus-Scanned") == ["mailwarden (ClamAV)"]
    assert msg["X-Spam-Flag"] == "NO"
    assert msg["X-Spam-Status"].startswith("No, score=")


def test_eicar_in_body_rejected_with_name(postfix: servers.Postfix, clamd: servers.Clamd) -> None:
    code, text = send(postfix, clamd.eicar.decode(), subject="eicar")
    assert code == 554
    assert f"5.7.1 Virus {clamd.signature_name} detected" in text


def test_eicar_in_base64_attachment_rejected(
    postfix: servers.Postfix, clamd: servers.Clamd
) -> None:
    b64 = base64.encodebytes(clamd.eicar).decode().replace("\n", "\r\n")
    headers = 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="BB"\r\n'
    body = (
        "--BB\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--BB\r\n"
        "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        f'Content-Disposition: attachment; filename="eicar.com"\r\n\r\n{b64}--BB--'
    )
    code, text = send(postfix, body, headers=headers, subject="attached")
    assert (code, f"Virus {clamd.signature_name} detected" in text) == (554, True)


def test_gtube_tagged_and_forged_flag_removed(base: Path, postfix: servers.Postfix) -> None:
    forged = (
        "X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-50.0 required=5.0\r\n"
        "X-Mailwarden-Spam: no\r\nX-Mailwarden-Allowed: yes\r\nx-mailwarden-whatever: 1\r\n"
    )
    assert (
        send(
            postfix,
            GTUBE,
            headers=forged,
            subject="gtube",
            rcpts=("alice@example.test", "bob@example.test"),
        )[0]
        == 250
    )
    for user in ("alice", "bob"):
        msg = delivered(base, user, "gtube")
        assert msg.get_all("X-Spam-Flag") == ["YES"]
        assert len(msg.get_all("X-Spam-Status")) == 1
        assert msg["X-Spam-Status"].startswith("Yes, score=")
        assert float(msg["X-Spam-Score"]) >= 1000
        assert not [k for k in msg if k.lower().startswith("x-mailwarden-")]


def test_message_without_headers(base: Path, postfix: servers.Postfix) -> None:
    """DATA is answered, end-of-headers sent: libmilter must still see end of message."""
    marker = f"headerless {time.time_ns()}"
    with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=60) as smtp:
        smtp.sendmail("sender@outside.test", ["alice@example.test"], f"\r\n{marker}\r\n")
    new = base / "vmail" / "example.test" / "alice" / "new"
    deadline = time.monotonic() + 15
    while not any(marker.encode() in p.read_bytes() for p in new.glob("*")):
        assert time.monotonic() < deadline, "headerless message not delivered"
        time.sleep(0.1)


def test_clamd_down_tempfails_and_recovers(
    base: Path, postfix: servers.Postfix, clamd: servers.Clamd
) -> None:
    clamd.stop()
    try:
        code, text = send(postfix, "while clamd is down", subject="clamd down")
        assert code == 451 and "4.3.0" in text
    finally:
        clamd.start()
    assert send(postfix, "after restart", subject="clamd back") == (250, "ok")
    assert delivered(base, "alice", "clamd back")["X-Virus-Scanned"]


def test_spamd_down_follows_policy(
    base: Path, postfix: servers.Postfix, spamd: servers.Spamd, milters: dict[str, MilterProcess]
) -> None:
    spamd.stop()
    try:
        assert send(postfix, GTUBE, subject="spamd down")[0] == 250
        msg = delivered(base, "alice", "spamd down")
        assert msg["X-Spam-Status"].startswith("unscanned")
        assert msg["X-Spam-Flag"] is None and msg["X-Virus-Scanned"]
        postfix.postconf("-e", f"smtpd_milters={milter_setting(milters['tempfail'].port)}")
        postfix.reload()
        code, text = send(postfix, GTUBE, subject="spamd down 2")
        assert code == 451 and "4.3.0" in text
    finally:
        spamd.start()
    assert send(postfix, GTUBE, subject="spamd back")[0] == 250
    assert delivered(base, "alice", "spamd back")["X-Spam-Flag"] == "YES"


def test_unix_socket_one_round_trip(
    base: Path, postfix: servers.Postfix, milters: dict[str, MilterProcess]
) -> None:
    """On a unix socket DATA and end-of-headers are not negotiated: still every message."""
    postfix.postconf("-e", f"smtpd_milters={{ {milters['unix'].listen}, default_action=tempfail }}")
    postfix.reload()
    try:
        forged = "X-Spam-Flag: NO\r\nX-Mailwarden-Spam: no\r\n"
        assert send(postfix, GTUBE, headers=forged, subject="via unix") == (250, "ok")
        msg = delivered(base, "alice", "via unix")
        assert msg.get_all("X-Spam-Flag") == ["YES"] and msg["X-Virus-Scanned"]
        assert msg["X-Mailwarden-Spam"] is None
        marker = f"headerless unix {time.time_ns()}"
        with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=60) as smtp:
            smtp.sendmail("sender@outside.test", ["alice@example.test"], f"\r\n{marker}\r\n")
        new = base / "vmail" / "example.test" / "alice" / "new"
        deadline = time.monotonic() + 15
        while not any(marker.encode() in p.read_bytes() for p in new.glob("*")):
            assert time.monotonic() < deadline, "headerless message not delivered"
            time.sleep(0.1)
        assert "verdict=spam" in milters["unix"].log_text()  # this milter saw it
    finally:
        postfix.postconf("-e", f"smtpd_milters={milter_setting(milters['accept'].port)}")
        postfix.reload()


def test_milter_down_is_postfix_tempfail(postfix: servers.Postfix) -> None:
    postfix.postconf("-e", f"smtpd_milters={milter_setting(servers.free_port())}")
    postfix.reload()
    code, text = send(postfix, "x", subject="no milter")
    assert code == 451 and "4.7.1" in text
