"""ScanMilter callbacks with a fake libmilter context and fake scanner clients.

The real protocol (libmilter + an independent client) is in
tests/integration/test_milter_protocol.py; here: the callback logic — one scan per
message, forged headers deleted last-first, replies, exceptions -> 451 4.3.0, spool
closed on every path.
"""

from __future__ import annotations

import dataclasses
from typing import Any, BinaryIO

import Milter
import pytest
from prometheus_client import CollectorRegistry

from mailwarden.config import MilterSettings
from mailwarden.core import scanverdict as sv
from mailwarden.metrics import MilterMetrics
from mailwarden.milter.app import ScanMilter, Scanner
from mailwarden.milter.spool import Spool


class FakeCtx:
    def __init__(self, macros: dict[str, str] | None = None) -> None:
        self.macros = macros or {}
        self.calls: list[tuple[Any, ...]] = []
        self.priv: Any = None

    def setpriv(self, priv: Any) -> None:
        self.priv = priv

    def getpriv(self) -> Any:
        return self.priv

    def getsymval(self, name: str) -> str | None:
        return self.macros.get(name)

    def setreply(self, *args: Any) -> None:
        self.calls.append(("reply", *args))

    def addheader(self, name: str, value: str, idx: int) -> None:
        self.calls.append(("add", name, value))

    def chgheader(self, name: str, idx: int, value: str | None) -> None:
        self.calls.append(("chg", name, idx, value))

    def quarantine(self, reason: str) -> None:
        self.calls.append(("quarantine", reason))


class FakeClamd:
    def __init__(self, result: sv.AvResult | Exception) -> None:
        self.result = result
        self.scanned: list[bytes] = []

    def scan(self, stream: BinaryIO) -> sv.AvResult:
        self.scanned.append(stream.read())
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


class FakeSpamd:
    def __init__(self, result: sv.SpamResult) -> None:
        self.result = result
        self.calls = 0

    def check(self, stream: BinaryIO, size: int) -> sv.SpamResult:
        self.calls += 1
        assert len(stream.read(size)) == size
        return self.result


def run(
    av: sv.AvResult | Exception = sv.AvResult(sv.CLEAN),
    spam: sv.SpamResult = sv.SpamResult(sv.SCORED, 1.0, 5.0),
    headers: tuple[tuple[str, bytes], ...] = (("Subject", b"hi"),),
    rcpts: int = 1,
    auth: str = "",
    **settings: Any,
) -> tuple[int, FakeCtx, FakeClamd, FakeSpamd, ScanMilter]:
    s = dataclasses.replace(MilterSettings(spool_threshold=100), **settings)
    clamd, spamd = FakeClamd(av), FakeSpamd(spam)
    scanner = Scanner(s, MilterMetrics.create(CollectorRegistry()), None, clamd=clamd, spamd=spamd)  # type: ignore[arg-type]
    m = ScanMilter(scanner)
    ctx = FakeCtx({"{auth_authen}": auth} if auth else {})
    m._setctx(ctx)
    m.connect("client", 2, ("192.0.2.1", 25))
    m.envfrom("<a@outside.test>")
    for i in range(rcpts):
        m.envrcpt(f"<r{i}@example.test>")
    for name, value in headers:
        m.header_bytes(name, value)
    rc = m.eoh()
    if rc == Milter.CONTINUE:
        m.body(b"x" * 500)
        rc = m.eom()
    return rc, ctx, clamd, spamd, m


def test_clean_scanned_once_for_many_recipients() -> None:
    rc, ctx, clamd, spamd, m = run(rcpts=50)
    assert rc == Milter.CONTINUE
    assert len(clamd.scanned) == 1 and spamd.calls == 1
    assert clamd.scanned[0] == b"Subject: hi\r\n\r\n" + b"x" * 500
    assert ("add", "X-Virus-Scanned", "mailwarden (ClamAV)") in ctx.calls
    assert m.spool is None  # closed


def test_virus_reply() -> None:
    rc, ctx, _, spamd, _ = run(av=sv.AvResult(sv.VIRUS, "Eicar-Test"))
    assert rc == Milter.REJECT
    assert ctx.calls == [("reply", "554", "5.7.1", "Virus Eicar-Test detected")]
    assert spamd.calls == 0


def test_quarantine_and_discard() -> None:
    rc, ctx, *_ = run(av=sv.AvResult(sv.VIRUS, "V"), virus_action="quarantine")
    assert rc == Milter.CONTINUE and ("quarantine", "Virus V detected") in ctx.calls
    rc, ctx, *_ = run(av=sv.AvResult(sv.VIRUS, "V"), virus_action="discard")
    assert rc == Milter.DISCARD


def test_forged_headers_deleted_last_first_and_not_scanned() -> None:
    headers = (
        ("X-Spam-Flag", b"NO"),
        ("Subject", b"s"),
        ("x-spam-flag", b"NO"),
        ("X-Spam-Report", b"r"),
    )
    rc, ctx, clamd, *_ = run(headers=headers)
    chg = [c for c in ctx.calls if c[0] == "chg"]
    assert chg == [
        ("chg", "X-Spam-Flag", 2, None),
        ("chg", "X-Spam-Flag", 1, None),
        ("chg", "X-Spam-Report", 1, None),
    ]
    assert b"X-Spam" not in clamd.scanned[0].split(b"\r\n\r\n")[0]


def test_unexpected_exception_is_451() -> None:
    rc, ctx, *_, m = run(av=RuntimeError("boom"))
    assert rc == Milter.TEMPFAIL
    assert ctx.calls == [("reply", "451", "4.3.0", "Temporary failure, try again later")]
    assert m.spool is None


def test_exception_before_the_scan_at_eom_is_451() -> None:
    """Even reading the queue id is inside the one catch: 451 with our text, spool closed."""
    scanner = Scanner(MilterSettings(), MilterMetrics.create(CollectorRegistry()))
    m = ScanMilter(scanner)
    ctx = FakeCtx()
    m._setctx(ctx)
    m.envfrom("<a@outside.test>")

    def broken(name: str) -> str | None:
        raise RuntimeError("libmilter went away")

    ctx.getsymval = broken  # type: ignore[method-assign]
    assert m.eom() == Milter.TEMPFAIL
    assert ctx.calls == [("reply", "451", "4.3.0", "Temporary failure, try again later")]
    assert m.spool is None


def test_loop_at_eom_before_any_scan() -> None:
    hops = tuple(("Received", b"x") for _ in range(3))
    rc, ctx, clamd, *_ = run(headers=hops, max_received=2)
    assert rc == Milter.REJECT and ctx.calls[0][1:3] == ("554", "5.4.6")
    assert clamd.scanned == []


def test_failure_in_a_no_reply_callback_is_451_at_eom() -> None:
    """header/body cannot answer (no reply negotiated): their error is answered at eom."""
    s = MilterSettings(spool_threshold=100)
    clamd = FakeClamd(sv.AvResult(sv.CLEAN))
    scanner = Scanner(s, MilterMetrics.create(CollectorRegistry()), None, clamd=clamd)  # type: ignore[arg-type]
    m = ScanMilter(scanner)
    ctx = FakeCtx()
    m._setctx(ctx)
    m.envfrom("<a@outside.test>")
    m.envrcpt("<r@example.test>")
    assert m.spool is not None
    m.spool.close()  # writing now fails
    assert m.header_bytes("Subject", b"x") == Milter.CONTINUE
    assert m.body(b"x") == Milter.CONTINUE
    assert m.eom() == Milter.TEMPFAIL
    assert ctx.calls == [("reply", "451", "4.3.0", "Temporary failure, try again later")]
    assert clamd.scanned == [] and m.spool is None
    # the next message on the connection is unaffected
    m.envfrom("<b@outside.test>")
    m.header_bytes("Subject", b"y")
    assert m.eom() == Milter.CONTINUE


def test_noreply_negotiation() -> None:
    """DATA and eom are round trips (plus abort/close, which never answer); see app.py."""
    mask = ScanMilter.protocol_mask()
    for bit in ("P_NR_CONN", "P_NR_MAIL", "P_NR_RCPT", "P_NR_HDR", "P_NR_EOH", "P_NR_BODY"):
        assert not mask & getattr(Milter, bit), bit  # MTA may skip the reply
    for bit in ("P_NOHELO", "P_NOUNKNOWN"):
        assert not mask & getattr(Milter, bit), bit  # MTA may skip the step
    for bit in ("P_NOHDRS", "P_NOBODY", "P_NORCPT", "P_NOMAIL", "P_NOCONNECT"):
        assert mask & getattr(Milter, bit), bit  # these steps we need
    # DATA answered (the TCP stall), EOH sent (libmilter's state table needs it)
    for bit in ("P_NODATA", "P_NR_DATA", "P_NOEOH"):
        assert mask & getattr(Milter, bit), bit


def test_negotiates_only_the_actions_it_uses() -> None:
    m = ScanMilter(Scanner(MilterSettings(), MilterMetrics.create(CollectorRegistry())))
    m._setctx(FakeCtx())
    opts = [Milter.CURR_ACTS, 0x1FFFFF, 0, 0]  # everything Postfix offers
    assert m.negotiate(opts) == Milter.CONTINUE
    assert opts[0] == Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE == m._actions
    assert not opts[1] & (Milter.P_NODATA | Milter.P_NR_DATA | Milter.P_NOEOH)
    assert opts[1] & Milter.P_NR_EOH


def test_unix_socket_skips_data_and_end_of_headers() -> None:
    scanner = Scanner(MilterSettings(), MilterMetrics.create(CollectorRegistry()))
    m = ScanMilter(scanner, answer_data=False)
    m._setctx(FakeCtx())
    opts = [Milter.CURR_ACTS, 0x1FFFFF, 0, 0]
    assert m.negotiate(opts) == Milter.CONTINUE
    assert opts[1] & Milter.P_NODATA and opts[1] & Milter.P_NOEOH
    assert not opts[1] & Milter.P_NR_EOH
    assert opts[1] & Milter.P_NR_HDR and opts[1] & Milter.P_NR_BODY
    old_mta = [Milter.CURR_ACTS, 0x7F, 0, 0]  # protocol 2: no DATA step, no "no reply"
    assert ScanMilter(scanner, answer_data=False).negotiate(old_mta) == Milter.CONTINUE
    assert old_mta[1] & ~0x7F == 0 and old_mta[1] & Milter.P_NOEOH


def test_own_namespace_is_forged_except_a_true_allowed_on_top(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers = (
        ("X-Mailwarden-Allowed", b"yes"),
        ("Subject", b"s"),
        ("X-Mailwarden-Spam", b"no"),
        ("x-mailwarden-allowed", b"yes"),
        ("X-Mailwarden-Whatever", b"1"),
    )
    for allowed, kept in ((False, []), (True, [1])):
        monkeypatch.setattr(Scanner, "all_allowed", lambda self, msg, a=allowed: a)
        rc, ctx, clamd, *_ = run(headers=headers)
        chg = [c for c in ctx.calls if c[0] == "chg"]
        expected = [("chg", "X-Mailwarden-Allowed", i, None) for i in (2, 1) if i not in kept]
        expected += [
            ("chg", "X-Mailwarden-Spam", 1, None),
            ("chg", "X-Mailwarden-Whatever", 1, None),
        ]
        assert sorted(chg) == sorted(expected), allowed
        assert b"X-Mailwarden" not in clamd.scanned[0]


def test_empty_body_still_has_the_blank_line() -> None:
    s = MilterSettings(spool_threshold=100)
    clamd = FakeClamd(sv.AvResult(sv.CLEAN))
    scanner = Scanner(s, MilterMetrics.create(CollectorRegistry()), None, clamd=clamd)  # type: ignore[arg-type]
    m = ScanMilter(scanner)
    m._setctx(FakeCtx())
    m.envfrom("<a@outside.test>")
    m.header_bytes("Subject", b"x")
    assert m.eom() == Milter.CONTINUE
    assert clamd.scanned == [b"Subject: x\r\n\r\n"]


@pytest.mark.parametrize(
    ("auth", "scan_auth", "calls"), [("u@x", False, 0), ("u@x", True, 1), ("", False, 1)]
)
def test_authenticated(auth: str, scan_auth: bool, calls: int) -> None:
    _, _, clamd, spamd, _ = run(auth=auth, scan_authenticated_spam=scan_auth)
    assert len(clamd.scanned) == 1 and spamd.calls == calls


def test_abort_closes_spool_and_next_message_is_fresh() -> None:
    _, ctx, _, _, m = run()
    m.envfrom("<b@outside.test>")
    m.header_bytes("Subject", b"aborted")
    m.body(b"y" * 1000)
    assert m.spool is not None and m.spool.on_disk
    m.abort()
    assert m.spool is None
    m.close()


def test_spool_rolls_over_and_closes() -> None:
    spool = Spool(10)
    spool.add_header("A", b"b")
    spool.write(b"z" * 100)
    assert spool.on_disk and spool.size == 106
    assert spool.reader().read() == b"A: b\r\n" + b"z" * 100
    spool.close()
    spool.close()
    assert spool.closed


def test_listener_nodelay_is_inherited_by_accepted_sockets() -> None:
    """libmilter's listening socket gets TCP_NODELAY; accepted connections inherit it."""
    import socket

    from mailwarden.milter.__main__ import set_listener_nodelay

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        assert set_listener_nodelay(port)
        assert not set_listener_nodelay(1)  # nothing of ours listens there
        with socket.create_connection(("127.0.0.1", port)) as client:
            conn, _ = listener.accept()
            with conn:
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert not client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
