"""``mailwarden-lda``: the pipe delivery agent for Postfix ``pipe(8)`` and Exim ``pipe``.

Usage: ``mailwarden-lda [--config PATH] --sender S --recipient R [--original-recipient O]
< message`` (also ``-f S -d R -a O``, the Dovecot LDA spelling).

Result: one line on stdout starting with the enhanced status (Postfix 2.3+ takes it as
the DSN), and the exit status by sysexits (REFERENCE §4.5):

    0   EX_OK        delivered (2.x.x)
    67  EX_NOUSER    unknown recipient (5.1.1)
    75  EX_TEMPFAIL  any 4.x.x: mailbox full with ``quota_full_tempfail``, store down,
                     full disk — and ANYTHING unexpected, including bad arguments: an
                     exit 1 (a Python traceback) would make Postfix bounce the mail
    77  EX_NOPERM    other permanent refusals (5.2.2 mailbox full, 5.2.1, 5.4.6 loop)

How it delivers: Postfix starts it once per message, so it stays light. It first offers
the message to a running ``mailwarden lmtpd`` over the first unix socket of ``[lda]
lmtp_listen`` (lmtpd then delivers and counts it in its metrics); only when none
answers does it import the delivery core and deliver in-process, recording its metrics
in the counter file lmtpd folds in (``lda.counters``).

Logging: log lines never go to stdout/stderr before the result line (Postfix would take
them as the DSN text); they go to syslog (``/dev/log``, facility mail) when it exists,
else to stderr after the result line.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import BinaryIO, TextIO

EX_OK, EX_NOUSER, EX_TEMPFAIL, EX_NOPERM = 0, 67, 75, 77
CONNECT_TIMEOUT = 2.0
REPLY_TIMEOUT = 600.0

_OPTIONS = {
    "--sender": "sender",
    "-f": "sender",
    "--recipient": "recipient",
    "-d": "recipient",
    "--original-recipient": "original",
    "-a": "original",
    "--config": "config",
    "-c": "config",
}


class _Usage(Exception):
    pass


def parse_args(argv: list[str]) -> dict[str, str]:
    """Tiny option parser (argparse alone costs more than the rest of start-up)."""
    args: dict[str, str] = {}
    it = iter(argv)
    for word in it:
        name, eq, value = word.partition("=")
        key = _OPTIONS.get(name)
        if key is None:
            raise _Usage(f"unknown argument {word!r}")
        if not eq:
            try:
                value = next(it)
            except StopIteration:
                raise _Usage(f"{name} needs a value") from None
        args[key] = value
    if "recipient" not in args or "sender" not in args:
        raise _Usage("--sender and --recipient are required")
    return args


def exit_code(dsn: str) -> int:
    if dsn.startswith("2"):
        return EX_OK
    if dsn.startswith("4"):
        return EX_TEMPFAIL
    return EX_NOUSER if dsn == "5.1.1" else EX_NOPERM


# --- hand-over to lmtpd ---------------------------------------------------------------


class _Lmtp:
    """A minimal blocking LMTP client for exactly one message and one recipient."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = sock.makefile("rb")

    def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = self.buf.readline(4096)
            if not line:
                raise ConnectionError("lmtpd closed the connection")
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(text[4:])
            if text[3:4] != "-":
                return int(text[:3]), lines[-1]

    def command(self, line: str) -> tuple[int, str]:
        self.sock.sendall(line.encode("utf-8") + b"\r\n")
        return self.reply()


def _dot_stuff(data: bytes) -> bytes:
    crlf = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not crlf.endswith(b"\r\n"):
        crlf += b"\r\n"
    stuffed = crlf.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n"


def _as_dsn(code: int, text: str) -> tuple[str, str]:
    first = text.split(" ", 1)
    parts = first[0].split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts) and first[0][0] == str(code)[0]:
        return first[0], first[1] if len(first) > 1 else ""
    return {2: "2.0.0", 4: "4.3.0"}.get(code // 100, "5.3.0"), text


def _socket_path(listen: tuple[str, ...]) -> str | None:
    for spec in listen:
        if spec.startswith("unix:"):
            return spec[5:]
        if spec.startswith("/"):
            return spec
    return None


def handover(
    listen: tuple[str, ...], sender: str, recipient: str, data: bytes
) -> tuple[str, str] | None:
    """Deliver through a running lmtpd; None when none answers (nothing was sent)."""
    path = _socket_path(listen)
    if path is None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        sock.connect(path)
        client = _Lmtp(sock)
        code, _ = client.reply()
        if code != 220:
            return None
        sock.settimeout(REPLY_TIMEOUT)
        if client.command(f"LHLO {socket.gethostname()}")[0] != 250:
            return None
        utf8 = " SMTPUTF8" if not (sender + recipient).isascii() else ""
        code, text = client.command(f"MAIL FROM:<{sender}> BODY=8BITMIME{utf8}")
        if code != 250:
            return None
    except OSError:
        sock.close()
        return None
    # From here on lmtpd may deliver: errors are temporary, never a second delivery.
    try:
        code, text = client.command(f"RCPT TO:<{recipient}>")
        if code // 100 != 2:
            return _as_dsn(code, text)
        code, text = client.command("DATA")
        if code != 354:
            return _as_dsn(code, text)
        sock.sendall(_dot_stuff(data))
        code, text = client.reply()
        client.command("QUIT")
        return _as_dsn(code, text)
    except (OSError, ValueError):
        return "4.3.0", "Connection to lmtpd lost; delivery state unknown, try again later"
    finally:
        sock.close()


# --- in-process ------------------------------------------------------------------------


def deliver_here(
    settings: object, sender: str, recipient: str, original: str, data: bytes
) -> tuple[str, str]:
    from mailwarden.config import Settings
    from mailwarden.lda.counters import FileRecorder
    from mailwarden.lda.deliver import Deliverer
    from mailwarden.store.db import Database

    assert isinstance(settings, Settings)
    db = Database(settings.database.url, connect_timeout=settings.database.connect_timeout)
    try:
        deliverer = Deliverer(
            settings, db, FileRecorder(settings.lda.metrics_dir), chown=os.geteuid() == 0
        )
        v = deliverer.deliver(sender, recipient, data, original_recipient=original)
    finally:
        db.close()
    return v.dsn, v.text


def _setup_logging() -> list[str]:
    import logging

    held: list[str] = []

    class _Hold(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            held.append(self.format(record))

    handler = _Hold()
    handler.setFormatter(logging.Formatter("mailwarden-lda[%(process)d]: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return held


def _flush_logs(held: list[str], err: TextIO) -> None:
    if not held:
        return
    if os.path.exists("/dev/log"):
        import syslog

        syslog.openlog("mailwarden-lda", syslog.LOG_PID, syslog.LOG_MAIL)
        for line in held:
            syslog.syslog(syslog.LOG_INFO, line.split(": ", 1)[-1])
        return
    for line in held:
        err.write(line + "\n")


def main(
    argv: list[str],
    stdin: BinaryIO,
    out: TextIO,
    err: TextIO,
    environ: dict[str, str] | None = None,
) -> int:
    held = _setup_logging()
    dsn, text = "4.3.0", "Temporary failure, try again later"
    try:
        args = parse_args(argv)
        from mailwarden import config

        settings = config.load(args.get("config"), dict(os.environ if environ is None else environ))
        data = stdin.read()
        sender, rcpt, orig = args["sender"], args["recipient"], args.get("original", "")
        if sender == "MAILER-DAEMON":  # Postfix pipe(8)'s default null_sender
            sender = ""
        result = handover(settings.lda.lmtp_listen, sender, rcpt, data)
        dsn, text = result or deliver_here(settings, sender, rcpt, orig, data)
    except _Usage as exc:
        held.append(f"mailwarden-lda: usage error: {exc}")
        dsn, text = "4.3.5", f"mailwarden-lda misconfigured: {exc}"
    except BaseException as exc:  # noqa: BLE001 - everything unexpected must exit 75
        import traceback

        held.append(
            "mailwarden-lda: unexpected error: "
            + "".join(traceback.format_exception(exc)).replace("\n", " | ")
        )
        dsn, text = "4.3.0", "Temporary failure, try again later"
    out.write(f"{dsn} {text}\n")
    out.flush()
    _flush_logs(held, err)
    return exit_code(dsn)


def run() -> None:
    try:
        code = main(sys.argv[1:], sys.stdin.buffer, sys.stdout, sys.stderr)
    except BaseException:  # noqa: BLE001 - last resort: never exit 1
        code = EX_TEMPFAIL
    sys.exit(code)


if __name__ == "__main__":
    run()
