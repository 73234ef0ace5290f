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
in the counter file lmtpd folds in (``delivery.counters``).

Start-up cost: the hand-over path imports nothing beyond ``os``, ``sys`` and C modules
(``_socket``, ``syslog``): the socket comes from a line scan of the configuration file
(``listen_from_toml``; anything it cannot read with certainty falls back to
``config.load``), the LMTP dialogue is a few lines over a raw socket, and log lines are
kept as strings. ``config``, ``logging``, the store and the delivery core are imported
only on the in-process path. A broken configuration file is therefore noticed only when
there is no lmtpd to hand over to (lmtpd validated its own at start-up). The command
itself is the plain script ``bin/mailwarden-lda``: pip's entry-point wrapper imports
``re`` and ``python -m`` imports ``runpy`` with ``importlib.util`` and ``contextlib``,
each about 10 ms, as much as the rest of a hand-over. After a hand-over ``run`` ends the
process with ``os._exit`` (no interpreter teardown).

Logging: log lines never go to stdout/stderr before the result line (Postfix would take
them as the DSN text); they go to syslog (``/dev/log``, facility mail) when it exists,
else to stderr after the result line.
"""

# Only C modules and ``os``/``sys`` (already loaded by the interpreter) on the hand-over
# path: ``socket``, ``typing``, ``logging``, ``tomllib`` and the config module each cost
# more than the whole hand-over; even ``__future__`` (hence the quoted annotations) and
# ``mailwarden.errors`` are left to the paths that need them.
import _socket
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO, TextIO

EX_OK, EX_NOUSER, EX_TEMPFAIL, EX_NOPERM = 0, 67, 75, 77
CONNECT_TIMEOUT = 2.0
REPLY_TIMEOUT = 600.0
# Must equal ``config.DEFAULT_PATH`` and the default of ``LdaSettings.lmtp_listen``
# (tests/unit/test_pipe_lda.py checks both).
DEFAULT_CONFIG = "/etc/mailwarden/mailwarden.toml"
DEFAULT_LMTP_LISTEN = ("unix:/var/spool/postfix/mailwarden-lmtpd/lmtp.sock",)

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


# --- which socket: ``[lda] lmtp_listen`` without importing the config module -----------


def _strings(value: str) -> tuple[str, ...] | None:
    """A TOML string, or a one-line array of strings, without escapes; else None."""
    out: list[str] = []
    rest = value.strip()
    array = rest.startswith("[")
    if array:
        rest = rest[1:].lstrip()
    closed = not array
    while rest:
        if array and rest.startswith("]"):
            rest = rest[1:].lstrip()
            closed = True
            break
        quote = rest[0]
        if quote not in "\"'":
            return None
        end = rest.find(quote, 1)
        if end < 0 or "\\" in rest[1:end]:
            return None
        out.append(rest[1:end])
        rest = rest[end + 1 :].lstrip()
        if not array:
            break
        if rest.startswith(","):
            rest = rest[1:].lstrip()
        elif not rest.startswith("]"):
            return None
    if not closed or (not array and not out):
        return None  # an array continued on the next line, or no value at all
    if rest and not rest.startswith("#"):
        return None
    return tuple(out)


def listen_from_toml(text: str) -> tuple[str, ...] | None:
    """``lda.lmtp_listen`` from the configuration text, by a line scan.

    Reads what configuration files contain in practice (an ``[lda]`` table with
    ``lmtp_listen = [...]`` or ``= "..."`` on one line); returns None for anything it
    cannot read with certainty (multi-line strings or arrays, escapes, dotted keys or an
    inline ``lda`` table), and the caller then parses the file with ``config.load``.
    The default when the key is absent.
    """
    if '"""' in text or "'''" in text:
        return None
    section = ""
    found: tuple[str, ...] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            close = line.find("]")
            if line.startswith("[[") or close < 0:
                return None
            section = line[1:close].strip()
            tail = line[close + 1 :].strip()
            if (tail and not tail.startswith("#")) or "'" in section or '"' in section:
                return None  # e.g. a nested array inside a multi-line value
            continue
        key, eq, value = line.partition("=")
        name = key.strip().strip("\"'")
        if section == "" and (name == "lda" or name.startswith("lda.")):
            return None
        if section != "lda" or name != "lmtp_listen" or not eq:
            continue
        found = _strings(value)
        if found is None:
            return None
    return DEFAULT_LMTP_LISTEN if found is None else found


def handover_listen(explicit: str | None, environ: dict[str, str]) -> tuple[str, ...] | None:
    """``lda.lmtp_listen`` of the file ``config.load`` would read (same choice: option,
    ``$MAILWARDEN_CONFIG``, default path); None when ``config.load`` has to decide
    (named file missing or unreadable, or too complex for the line scan)."""
    path = explicit or environ.get("MAILWARDEN_CONFIG") or ""
    try:
        with open(path or DEFAULT_CONFIG, "rb") as f:
            data = f.read(1 << 20)
    except FileNotFoundError:
        return None if path else DEFAULT_LMTP_LISTEN
    except OSError:
        return None
    try:
        return listen_from_toml(data.decode("utf-8"))
    except UnicodeDecodeError:
        return None


# --- hand-over to lmtpd ---------------------------------------------------------------


class _Lmtp:
    """A minimal blocking LMTP client for exactly one message and one recipient."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _line(self) -> bytes:
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                line, self.buf = self.buf[: end + 1], self.buf[end + 1 :]
                return line
            if len(self.buf) > 4096:
                raise ConnectionError("lmtpd reply line too long")
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("lmtpd closed the connection")
            self.buf += chunk

    def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            text = self._line().decode("utf-8", "replace").rstrip("\r\n")
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
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(path)
        client = _Lmtp(sock)
        ready = client.reply()[0] == 220
        if ready:
            sock.settimeout(REPLY_TIMEOUT)
            ready = client.command(f"LHLO {_socket.gethostname()}")[0] == 250
        if ready:
            # PIPELINING (RFC 2920, which lmtpd always offers): MAIL, RCPT and DATA in
            # one write, then their three replies in order.
            utf8 = " SMTPUTF8" if not (sender + recipient).isascii() else ""
            lines = f"MAIL FROM:<{sender}> BODY=8BITMIME{utf8}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n"
            sock.sendall(lines.encode("utf-8"))
            ready = client.reply()[0] == 250
    except (OSError, ValueError):
        ready = False
    if not ready:
        sock.close()  # lmtpd refused MAIL, so it refuses RCPT and DATA: nothing delivered
        return None
    # From here on lmtpd may deliver: errors are temporary, never a second delivery.
    try:
        code, text = client.reply()  # RCPT
        if code // 100 != 2:
            return _as_dsn(code, text)  # DATA then fails too (no recipient): nothing sent
        code, text = client.reply()  # DATA
        if code != 354:
            return _as_dsn(code, text)
        sock.sendall(_dot_stuff(data))
        code, text = client.reply()
        try:  # noqa: SIM105 - contextlib is one import too many here
            sock.sendall(b"QUIT\r\n")  # a courtesy: the reply above is the result
        except OSError:
            pass
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
    from mailwarden.delivery.counters import FileRecorder
    from mailwarden.delivery.deliver import Deliverer
    from mailwarden.store.db import Database
    from mailwarden.store.sql import SqlStore

    assert isinstance(settings, Settings)
    db = Database(settings.database.url, connect_timeout=settings.database.connect_timeout)
    try:
        deliverer = Deliverer(
            settings, SqlStore(db), FileRecorder(settings.lda.metrics_dir), chown=os.geteuid() == 0
        )
        v = deliverer.deliver(sender, recipient, data, original_recipient=original)
    finally:
        db.close()
    return v.dsn, v.text


def _capture_logging(held: list[str]) -> None:
    """Keep the delivery core's log lines in ``held`` (written after the result line)."""
    import logging

    class _Hold(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            held.append(self.format(record))

    handler = _Hold()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _flush_logs(held: list[str], err: "TextIO") -> None:
    if not held:
        return
    if os.path.exists("/dev/log"):
        import syslog

        syslog.openlog("mailwarden-lda", syslog.LOG_PID, syslog.LOG_MAIL)
        for line in held:
            syslog.syslog(syslog.LOG_INFO, line)
        return
    pid = os.getpid()
    for line in held:
        err.write(f"mailwarden-lda[{pid}]: {line}\n")


def _deliver(
    args: dict[str, str], environ: dict[str, str], data: bytes, held: list[str]
) -> tuple[str, str]:
    sender, rcpt, orig = args["sender"], args["recipient"], args.get("original", "")
    if sender == "MAILER-DAEMON":  # Postfix pipe(8)'s default null_sender
        sender = ""
    listen = handover_listen(args.get("config"), environ)
    if listen is not None:
        result = handover(listen, sender, rcpt, data)
        if result is not None:
            return result  # lmtpd logs and counts it
    # No lmtpd (or a configuration the line scan could not read): the full path.
    _capture_logging(held)
    from mailwarden import config

    settings = config.load(args.get("config"), environ)
    if listen is None:
        result = handover(settings.lda.lmtp_listen, sender, rcpt, data)
        if result is not None:
            return result
    return deliver_here(settings, sender, rcpt, orig, data)


def _failure(exc: BaseException, held: list[str]) -> tuple[str, str]:
    """The result for an exception out of ``_deliver``: 4.3.5 and one log line for an
    operator's mistake (bad arguments, a broken configuration), 4.3.0 and the traceback
    for anything else. Both defer: the mail waits in the queue."""
    from mailwarden.errors import ConfigError  # only now: the hand-over never needs it

    if isinstance(exc, _Usage):
        held.append(f"usage error: {exc}")
    elif isinstance(exc, ConfigError):
        held.append(f"configuration error: {exc}")
    else:
        import traceback

        held.append(
            "unexpected error: " + "".join(traceback.format_exception(exc)).replace("\n", " | ")
        )
        return "4.3.0", "Temporary failure, try again later"
    return "4.3.5", f"mailwarden-lda misconfigured: {exc}"


def main(
    argv: list[str],
    stdin: "BinaryIO",
    out: "TextIO",
    err: "TextIO",
    environ: dict[str, str] | None = None,
) -> int:
    held: list[str] = []
    try:
        args = parse_args(argv)
        data = stdin.read()
        dsn, text = _deliver(args, dict(os.environ if environ is None else environ), data, held)
    except BaseException as exc:  # noqa: BLE001 - everything unexpected must exit 75
        dsn, text = _failure(exc, held)
    out.write(f"{dsn} {text}\n")
    out.flush()
    _flush_logs(held, err)
    return exit_code(dsn)


def run() -> None:
    """The ``mailwarden-lda`` command: ``main`` on the process's stdio; never exits 1.

    After a hand-over the process ends with ``os._exit``: the result line is flushed,
    lmtpd holds the message, and nothing else is open, so the interpreter's teardown
    (module and object destruction, ~1-3 ms) would only add to the per-message time.
    Once the in-process path has begun (it imports ``logging`` first), the normal exit
    runs, with its atexit handlers.
    """
    try:
        code = main(sys.argv[1:], sys.stdin.buffer, sys.stdout, sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - last resort: never exit 1
        code = EX_TEMPFAIL
    if "logging" in sys.modules:
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    run()
