"""The milter at the protocol level, driven by an independent milter client.

The MTA side is the ``miltertest`` package (PyPI; its own codec, not libmilter), plus raw
frames for 8-bit data (miltertest encodes every string as UTF-8 text). The milter runs
as a subprocess (``python -m mailwarden.milter``) against REAL clamd (local EICAR
signature) and REAL spamd (shipped rules). Covered: verdicts and headers, forged headers
removed, abort, several messages on one connection, large bodies in chunks, 10,000
headers, a 40 MB message, NUL bytes, 8-bit headers, a message larger than clamd's
StreamMaxLength, loop protection, authenticated submission, allow lists, traffic — and
afterwards no leaked file descriptors or temp files in the milter process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from miltertest import constants as C
from miltertest.client import MilterConnection

from tests import servers
from tests.conftest import run_bin
from tests.daemons import Daemon, start_daemon

pytestmark = pytest.mark.integration

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


# --------------------------------------------------------------------------- milter process


@dataclass
class MilterProcess:
    """A ``mailwarden milter`` subprocess on 127.0.0.1:port (or a unix socket)."""

    config: Path
    tmpdir: Path
    listen: str
    port: int = 0
    metrics_port: int = 0
    log: Path = field(default_factory=Path)
    daemon: Daemon | None = None

    def start(self, timeout: float = 20.0) -> None:
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        self.daemon = start_daemon(
            "milter",
            self.config,
            self.listen,
            self.log,
            args=["--metrics", f"127.0.0.1:{self.metrics_port}"],
            env={"TMPDIR": str(self.tmpdir)},
            timeout=timeout,
        )

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
        self.daemon = None

    @property
    def pid(self) -> int:
        assert self.daemon is not None
        return self.daemon.pid

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def metrics(self) -> str:
        with socket.create_connection(("127.0.0.1", self.metrics_port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return data.decode()


def write_milter_config(path: Path, db_url: str, mail_root: Path, **milter: Any) -> Path:
    lines = [f'[database]\nurl = "{db_url}"\n[mail]\nroot = "{mail_root}"\n[milter]']
    for key, value in milter.items():
        lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def start_milter(base: Path, name: str, db_url: str, **milter: Any) -> MilterProcess:
    port = servers.free_port()
    cfg = write_milter_config(base / f"{name}.toml", db_url, base / "vmail", **milter)
    proc = MilterProcess(
        cfg,
        base / f"{name}-tmp",
        f"inet:{port}@127.0.0.1",
        port,
        servers.free_port(),
        base / f"{name}.log",
    )
    proc.start()
    return proc


def init_db(base: Path, name: str = "milter") -> tuple[str, Path]:
    """A fresh SQLite database with example.test (local) and two mailboxes."""
    url = f"sqlite:///{base}/{name}.sqlite"
    cfg = write_milter_config(base / f"{name}-cli.toml", url, base / "vmail")
    for args in (
        ("db", "init"),
        ("domain", "add", "example.test"),
        ("domain", "add", "other.test"),
        ("user", "add", "alice@example.test"),
        ("user", "add", "bob@example.test"),
        ("user", "add", "carol@other.test"),
    ):
        r = run_bin("--config", str(cfg), *args)
        assert r.returncode == 0, r.stderr
    return url, cfg


def cli(cfg: Path, *args: str) -> str:
    r = run_bin("--config", str(cfg), *args)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


# --------------------------------------------------------------------------- MTA side


@dataclass
class Result:
    """What the milter answered at end of message (or earlier)."""

    final: str  # SMFIR_* code of the disposition
    reply: str = ""  # text of SMFIR_REPLYCODE ("554 5.7.1 Virus ... detected")
    added: list[tuple[str, str]] = field(default_factory=list)
    changed: list[tuple[int, str, str]] = field(default_factory=list)
    quarantined: str = ""
    stage: str = "eom"

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.added if n.lower() == name.lower()), None)


class MTA:
    """One milter connection as Postfix would drive it (protocol 6)."""

    def __init__(self, port: int, client_ip: str = "192.0.2.10") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.conn = MilterConnection(self.sock)
        self.actions, self.protocol = self.conn.optneg_mta()
        self._step(
            C.SMFIC_CONNECT,
            C.SMFIP_NOCONNECT,
            C.SMFIP_NR_CONN,
            hostname="client.example",
            family="4",
            port=4711,
            address=client_ip,
        )
        self._step(C.SMFIC_HELO, C.SMFIP_NOHELO, C.SMFIP_NR_HELO, helo="client.example")

    def _step(
        self, cmd: str, skip: int, noreply: int, **args: Any
    ) -> tuple[str, dict[str, Any]] | None:
        if self.protocol & skip:
            return None
        self.conn._send(cmd, **args)
        if self.protocol & noreply:
            return None
        return self.conn.recv()

    def _raw(self, cmd: bytes, data: bytes, noreply: int = 0) -> tuple[str, dict[str, Any]] | None:
        self.sock.sendall(struct.pack("!L", len(data) + 1) + cmd + data)
        if self.protocol & noreply:
            return None
        return self.conn.recv()

    def message(
        self,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        *,
        sender: str = "<sender@outside.test>",
        rcpts: tuple[str, ...] = ("<alice@example.test>",),
        auth: str = "",
        chunk: int = 65535,
    ) -> Result:
        macros: dict[str, str] = {"{mail_addr}": sender.strip("<>")}
        if auth:
            macros["{auth_authen}"] = auth
        self.conn.send_macro(C.SMFIC_MAIL, **macros)
        r = self._step(C.SMFIC_MAIL, C.SMFIP_NOMAIL, C.SMFIP_NR_MAIL, args=[sender])
        assert r is None or r[0] == C.SMFIR_CONTINUE, r
        for rcpt in rcpts:
            r = self._step(C.SMFIC_RCPT, C.SMFIP_NORCPT, C.SMFIP_NR_RCPT, args=[rcpt])
            assert r is None or r[0] == C.SMFIR_CONTINUE, r
        self.conn.send_macro(C.SMFIC_DATA, i="4ABCDEF")
        self._step(C.SMFIC_DATA, C.SMFIP_NODATA, C.SMFIP_NR_DATA)
        for name, value in headers:
            r = self._raw(b"L", name + b"\0" + value + b"\0", C.SMFIP_NR_HDR)
            if r is not None and r[0] != C.SMFIR_CONTINUE:
                return self._early(r, "header")
        r = None if self.protocol & C.SMFIP_NOEOH else self._raw(b"N", b"", C.SMFIP_NR_EOH)
        if r is not None and r[0] != C.SMFIR_CONTINUE:
            return self._early(r, "eoh")
        for start in range(0, len(body), chunk):
            r = self._raw(b"B", body[start : start + chunk], C.SMFIP_NR_BODY)
            if r is not None and r[0] != C.SMFIR_CONTINUE:
                return self._early(r, "body")
        self.conn.send_macro(C.SMFIC_BODYEOB, i="4ABCDEF")
        return self._collect(self.conn.send_eom())

    def _early(self, r: tuple[str, dict[str, Any]], stage: str) -> Result:
        res = self._collect([r])
        res.stage = stage
        return res

    @staticmethod
    def _collect(replies: list[tuple[str, dict[str, Any]]]) -> Result:
        res = Result(final=replies[-1][0])
        for cmd, args in replies:
            if cmd == C.SMFIR_ADDHEADER or cmd == C.SMFIR_INSHEADER:
                res.added.append((args["name"], args["value"]))
            elif cmd == C.SMFIR_CHGHEADER:
                res.changed.append((args["index"], args["name"], args["value"]))
            elif cmd == C.SMFIR_QUARANTINE:
                res.quarantined = args["reason"]
            elif cmd == C.SMFIR_REPLYCODE:
                res.reply = f"{args['smtpcode']} {args['text']}"
        return res

    def abort(self) -> None:
        self.conn._send(C.SMFIC_ABORT)

    def start_message(self, sender: str = "<s@outside.test>") -> None:
        """MAIL, RCPT, DATA and a few headers/body, for an abort test."""
        self._step(C.SMFIC_MAIL, C.SMFIP_NOMAIL, C.SMFIP_NR_MAIL, args=[sender])
        self._step(C.SMFIC_RCPT, C.SMFIP_NORCPT, C.SMFIP_NR_RCPT, args=["<alice@example.test>"])
        self._step(C.SMFIC_DATA, C.SMFIP_NODATA, C.SMFIP_NR_DATA)
        self._raw(b"L", b"Subject\0aborted\0", C.SMFIP_NR_HDR)
        if not self.protocol & C.SMFIP_NOEOH:
            self._raw(b"N", b"", C.SMFIP_NR_EOH)
        for _ in range(4):
            self._raw(b"B", b"x" * 60_000, C.SMFIP_NR_BODY)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn._send(C.SMFIC_QUIT)
        self.sock.close()


def simple(
    subject: str = "hello", extra: list[tuple[bytes, bytes]] | None = None
) -> list[tuple[bytes, bytes]]:
    return [
        (b"From", b"Sender <sender@outside.test>"),
        (b"To", b"alice@example.test"),
        (b"Subject", subject.encode()),
        (b"Message-ID", f"<{time.monotonic_ns()}@outside.test>".encode()),
        *(extra or []),
    ]


def attachment(payload: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    import base64

    boundary = b"==b0und=="
    headers = simple("attachment") + [
        (b"MIME-Version", b"1.0"),
        (b"Content-Type", b'multipart/mixed; boundary="' + boundary + b'"'),
    ]
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    body = (
        b"--" + boundary + b"\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--" + boundary + b"\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="test.com"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--" + boundary + b"--\r\n"
    )
    return headers, body


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    missing = servers.missing_requirements(servers.Clamd, servers.Spamd)
    if missing:
        pytest.skip("cannot run real servers: " + "; ".join(missing))
    path = servers.make_workdir("mw-milter-")
    yield path
    if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def clamd(base: Path) -> Iterator[servers.Clamd]:
    server = servers.Clamd(base)
    # Small StreamMaxLength so "larger than clamd accepts" is cheap to test.
    with open(server.conf_path, "a") as conf:
        conf.write("StreamMaxLength 30M\n")
    with server:
        yield server


@pytest.fixture(scope="module")
def spamd(base: Path) -> Iterator[servers.Spamd]:
    with servers.Spamd(base) as server:
        yield server


@pytest.fixture(scope="module")
def db(base: Path) -> tuple[str, Path]:
    return init_db(base)


@pytest.fixture(scope="module")
def milter(
    base: Path, clamd: servers.Clamd, spamd: servers.Spamd, db: tuple[str, Path]
) -> Iterator[MilterProcess]:
    proc = start_milter(
        base,
        "milter",
        db[0],
        clamd=f"unix:{clamd.socket}",
        spamd=f"127.0.0.1:{spamd.port}",
        spool_threshold=256 * 1024,
    )
    yield proc
    proc.stop()


@pytest.fixture
def mta(milter: MilterProcess) -> Iterator[MTA]:
    conn = MTA(milter.port)
    yield conn
    conn.close()


# --------------------------------------------------------------------------- tests


def test_clean_message_gets_verdict_headers(mta: MTA) -> None:
    res = mta.message(simple(), b"Hello Alice,\r\nlunch?\r\n")
    assert res.final == C.SMFIR_CONTINUE
    assert res.header("X-Virus-Scanned") == "mailwarden (ClamAV)"
    assert res.header("X-Spam-Flag") == "NO"
    assert res.header(
        "X-Spam-Status",
    ).startswith("No, score=")  # type: ignore[union-attr]
    float(res.header("X-Spam-Score"))  # type: ignore[arg-type]


def test_eicar_in_body_is_rejected_with_its_name(mta: MTA, clamd: servers.Clamd) -> None:
    res = mta.message(simple("virus"), clamd.eicar + b"\r\n")
    assert res.final == C.SMFIR_REPLYCODE
    assert res.reply == f"554 5.7.1 Virus {clamd.signature_name} detected"


def test_eicar_in_base64_attachment_is_rejected(mta: MTA, clamd: servers.Clamd) -> None:
    headers, body = attachment(clamd.eicar)
    res = mta.message(headers, body)
    assert res.reply == f"554 5.7.1 Virus {clamd.signature_name} detected"


def test_gtube_is_tagged(mta: MTA) -> None:
    res = mta.message(simple("spam"), b"buy now\r\n" + GTUBE + b"\r\n")
    assert res.final == C.SMFIR_CONTINUE
    assert res.header("X-Spam-Flag") == "YES"
    status = res.header("X-Spam-Status") or ""
    assert status.startswith("Yes, score=") and "required=5.0" in status and "GTUBE" in status
    assert float(res.header("X-Spam-Score") or 0) >= 1000


def test_forged_verdict_headers_are_removed(mta: MTA) -> None:
    forged = [
        (b"X-Spam-Flag", b"NO"),
        (b"x-spam-status", b"No, score=-100"),
        (b"X-Spam-Flag", b"NO"),
        (b"X-Virus-Scanned", b"forged"),
    ]
    res = mta.message(simple("forged", forged), GTUBE + b"\r\n")
    assert sorted(res.changed) == [
        (1, "X-Spam-Flag", ""),
        (1, "X-Spam-Status", ""),
        (1, "X-Virus-Scanned", ""),
        (2, "X-Spam-Flag", ""),
    ]
    # the last occurrence goes first, so the indexes stay valid
    flags = [c for c in res.changed if c[1] == "X-Spam-Flag"]
    assert flags == [(2, "X-Spam-Flag", ""), (1, "X-Spam-Flag", "")]
    assert res.header("X-Spam-Flag") == "YES"


def test_several_messages_on_one_connection_and_abort(mta: MTA, clamd: servers.Clamd) -> None:
    assert mta.message(simple("one"), b"first\r\n").final == C.SMFIR_CONTINUE
    assert mta.message(simple("two"), clamd.eicar).reply.startswith("554 5.7.1 Virus")
    mta.start_message()
    mta.abort()
    res = mta.message(simple("three"), b"third\r\n")
    assert res.final == C.SMFIR_CONTINUE and res.header("X-Virus-Scanned")


def test_large_body_in_chunks_scanned_once(
    mta: MTA, clamd: servers.Clamd, milter: MilterProcess
) -> None:
    body = (b"A" * 998 + b"\r\n") * 5000 + clamd.eicar + b"\r\n"  # 5 MB, virus at the end
    res = mta.message(simple("big"), body, rcpts=tuple(f"<u{i}@example.test>" for i in range(20)))
    assert res.reply.startswith("554 5.7.1 Virus")
    assert res.added == []  # nothing added to a rejected message


def test_loop_is_refused_at_end_of_message(mta: MTA) -> None:
    # Headers and end-of-headers are sent without replies, so the loop is refused at
    # end of message, before any scan.
    hops = [(b"Received", f"from h{i} by h{i + 1}".encode()) for i in range(51)]
    res = mta.message(simple("loop", hops), b"body\r\n")
    assert res.stage == "eom" and res.final == C.SMFIR_REPLYCODE
    assert res.reply.startswith("554 5.4.6 ")
    assert res.added == [] and res.changed == []


def test_callbacks_negotiated_without_replies(mta: MTA) -> None:
    """Two round trips per message: DATA (against the TCP stall) and end of message."""
    for bit in ("NR_CONN", "NR_MAIL", "NR_RCPT", "NR_HDR", "NR_EOH", "NR_BODY", "NOHELO"):
        assert mta.protocol & getattr(C, "SMFIP_" + bit), bit
    assert not mta.protocol & (C.SMFIP_NOHDRS | C.SMFIP_NOBODY | C.SMFIP_NORCPT)
    assert not mta.protocol & (C.SMFIP_NODATA | C.SMFIP_NR_DATA | C.SMFIP_NOEOH)
    assert mta.actions == C.SMFIF_ADDHDRS | C.SMFIF_CHGHDRS | C.SMFIF_QUARANTINE


def test_fifty_received_headers_are_fine(mta: MTA) -> None:
    hops = [(b"Received", f"from h{i} by h{i + 1}".encode()) for i in range(50)]
    assert mta.message(simple("50 hops", hops), b"body\r\n").final == C.SMFIR_CONTINUE


def test_authenticated_mail_is_virus_scanned_not_spam_scanned(
    mta: MTA, clamd: servers.Clamd
) -> None:
    res = mta.message(
        simple("out"),
        GTUBE + b"\r\n",
        sender="<alice@example.test>",
        rcpts=("<someone@far.test>",),
        auth="alice@example.test",
    )
    assert res.header("X-Virus-Scanned")
    assert res.header("X-Spam-Status") == "unscanned (authenticated)"
    assert res.header("X-Spam-Flag") is None
    res = mta.message(
        simple("out virus"),
        clamd.eicar,
        sender="<alice@example.test>",
        rcpts=("<someone@far.test>",),
        auth="alice@example.test",
    )
    assert res.reply.startswith("554 5.7.1 Virus")


def test_allow_list_skips_spam_scan_only_when_all_recipients_allow(
    mta: MTA, db: tuple[str, Path]
) -> None:
    cli(db[1], "spam", "allow", "alice@example.test", "friend@outside.test")
    one = mta.message(simple("friend"), GTUBE, sender="<friend@outside.test>")
    assert one.header("X-Spam-Status") == "unscanned (allow-listed)"
    both = mta.message(
        simple("friend 2"),
        GTUBE,
        sender="<friend@outside.test>",
        rcpts=("<alice@example.test>", "<bob@example.test>"),
    )
    assert both.header("X-Spam-Flag") == "YES"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([(b"X-Many-%d" % i, b"v") for i in range(10_000)], id="10000-headers"),
        pytest.param([(b"Subject", "Gr\u00fc\u00dfe \u2603".encode())], id="utf8-header"),
        pytest.param([(b"Subject", b"caf\xe9 latin-1 \xff\xfe")], id="8bit-invalid-utf8"),
        pytest.param([(b"X-Empty", b"")], id="empty-value"),
    ],
)
def test_odd_headers_are_scanned(mta: MTA, headers: list[tuple[bytes, bytes]]) -> None:
    res = mta.message(simple("odd", headers), b"text\r\n")
    assert res.final == C.SMFIR_CONTINUE
    assert res.header("X-Virus-Scanned")


def test_nul_bytes_and_bad_mime(mta: MTA, clamd: servers.Clamd) -> None:
    res = mta.message(simple("nul"), b"a\0b\0c\r\n\0\0\0")
    assert res.final == C.SMFIR_CONTINUE and res.header("X-Virus-Scanned")
    bad = simple("no boundary") + [(b"Content-Type", b"multipart/mixed")]
    res = mta.message(bad, b"--x\r\n\r\n" + clamd.eicar + b"\r\n--")
    assert res.reply.startswith("554 5.7.1 Virus")


def test_forty_megabytes_larger_than_stream_max_length(mta: MTA, milter: MilterProcess) -> None:
    body = (b"B" * 1022 + b"\r\n") * (40 * 1024)  # 40 MB > StreamMaxLength 30M
    res = mta.message(simple("huge"), body)
    # default clamd_oversize = accept: delivered unscanned (no X-Virus-Scanned), logged
    assert res.final == C.SMFIR_CONTINUE
    assert res.header("X-Virus-Scanned") is None
    assert res.header("X-Spam-Status") == "unscanned (too large)"
    assert "clamd too_large" in milter.log_text()


def test_traffic_is_counted(milter: MilterProcess, db: tuple[str, Path]) -> None:
    time.sleep(1.5)  # traffic is written once a second: earlier tests' messages first
    conn = MTA(milter.port)
    try:
        before = _traffic(db[1])
        conn.message(
            simple("t1"),
            b"x" * 1000,
            rcpts=(
                "<alice@example.test>",
                "<bob@example.test>",
                "<carol@other.test>",
                "<x@far.test>",
            ),
        )
        conn.message(
            simple("t2"),
            b"y" * 500,
            sender="<alice@example.test>",
            rcpts=("<someone@far.test>",),
            auth="alice@example.test",
        )
    finally:
        conn.close()
    deadline = time.monotonic() + 10  # traffic is written in the background
    while (after := _traffic(db[1]))["example.test"]["messages_out"] == before["example.test"][
        "messages_out"
    ] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert after["example.test"]["messages_in"] - before["example.test"]["messages_in"] == 1
    assert after["other.test"]["messages_in"] - before["other.test"]["messages_in"] == 1
    assert after["example.test"]["messages_out"] - before["example.test"]["messages_out"] == 1
    assert after["example.test"]["bytes_out"] - before["example.test"]["bytes_out"] > 500
    text = milter.metrics()
    assert 'mailwarden_traffic_messages_total{direction="out"}' in text
    assert 'mailwarden_milter_messages_total{verdict="virus"}' in text


def _traffic(cfg: Path) -> dict[str, dict[str, int]]:
    rows = json.loads(cli(cfg, "traffic", "--json"))
    return {r["domain"]: r for r in rows["domains"]}


def test_no_leaked_fds_or_temp_files(milter: MilterProcess, clamd: servers.Clamd) -> None:
    def one_round() -> None:
        conn = MTA(milter.port)
        conn.message(simple("a"), b"x" * 600_000)  # above spool_threshold: on disk
        conn.message(simple("b"), clamd.eicar)
        conn.start_message()
        conn.abort()
        conn.close()

    for _ in range(3):
        one_round()
    time.sleep(0.3)
    fds = milter.open_fds()
    for _ in range(10):
        one_round()
    time.sleep(0.3)
    # store connections live only in the milter's bounded store pool (app.STORE_WORKERS)
    assert milter.open_fds() <= fds + 2
    assert list(milter.tmpdir.iterdir()) == []
    assert "Traceback" not in milter.log_text()


def test_unix_socket_is_usable_by_postfix(base: Path, db: tuple[str, Path]) -> None:
    path = base / "milter.sock"
    cfg = write_milter_config(base / "unix.toml", db[0], base / "vmail", clamd="", spamd="")
    proc = MilterProcess(
        cfg, base / "unix-tmp", f"unix:{path}", 0, servers.free_port(), base / "unix.log"
    )
    proc.start()
    try:
        assert os.stat(path).st_mode & 0o777 == 0o666
    finally:
        proc.stop()
