"""POP3 and IMAP sessions with the remote server, on the standard library's ``poplib`` and
``imaplib``.

Why the standard library: both are maintained with CPython, need no extra dependency,
speak TLS and STARTTLS through ``ssl`` (certificate and host name checked by default), and
the fetcher needs only a handful of commands (POP3 UIDL/LIST/RETR/DELE/QUIT; IMAP SELECT,
UID FETCH, UID STORE, UID EXPUNGE). getmail6 or imapclient would add a dependency for
nothing the fetcher uses.

Who calls it: ``fetch.run`` through ``connect``, which returns a ``Session``:

``listing()``      the messages on the server (``plan.Listed``: seen key, reference, size)
``retrieve(ref)``  one message's bytes (None if it vanished meanwhile); nothing is marked
                   read on the server (IMAP ``BODY.PEEK``)
``headers(refs)``  IMAP only: header blocks, to recognise messages after a renumbering
``delete(ref)``    mark for deletion; nothing is deleted before ``close``
``close()``        commit: POP3 QUIT (the deletions take effect), IMAP UID EXPUNGE of the
                   marked messages, LOGOUT
``abort()``        drop the connection: a POP3 server deletes nothing

Errors: ``RemoteError`` (one line, never the password) for a server that cannot be
reached, a TLS certificate that does not verify (unless the account says
``verify_cert`` off), a refused login, a missing folder, a connection dropped mid-way or
any protocol error.
"""

from __future__ import annotations

import contextlib
import imaplib
import poplib
import re
import ssl
from typing import Protocol

from mailwarden.errors import MailwardenError
from mailwarden.fetch.plan import Listed, imap_key
from mailwarden.store.fetch import Account

# poplib refuses lines longer than 2048 bytes; real mail has longer ones (RFC 5322's 998
# is often broken by HTML and unwrapped base64). The limit only bounds one readline.
POP3_MAX_LINE = 64 * 1024 * 1024


class RemoteError(MailwardenError):
    """The remote server could not be used; the message says why, in one line."""


class Session(Protocol):
    uidvalidity: int

    def listing(self) -> list[Listed]: ...
    def retrieve(self, ref: str) -> bytes | None: ...
    def headers(self, refs: list[str]) -> dict[str, bytes]: ...
    def delete(self, ref: str) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


def tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def where(account: Account) -> str:
    return f"{account.protocol} {account.host}:{account.port}"


def describe(exc: BaseException, account: Account) -> str:
    """One line for a failure talking to ``account``'s server."""
    place = where(account)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"{place}: TLS certificate not trusted ({exc.verify_message or exc.reason}); "
            "add the account with --no-verify-cert to accept it"
        )
    if isinstance(exc, ssl.SSLError):
        return f"{place}: TLS failed: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return f"{place}: timed out"
    if isinstance(exc, OSError):
        return f"{place}: {exc.strerror or exc}"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{place}: {text}"


def connect(account: Account, password: str, timeout: float) -> Session:
    """A logged-in session (IMAP: the folder selected); ``RemoteError`` otherwise."""
    try:
        if account.protocol == "pop3":
            return Pop3Session(account, password, timeout)
        return ImapSession(account, password, timeout)
    except RemoteError:
        raise
    except Exception as exc:  # noqa: BLE001 - OSError, ssl, poplib/imaplib errors: one line
        raise RemoteError(describe(exc, account)) from None


def _text(value: object) -> str:
    raw = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return raw.strip().splitlines()[0] if raw.strip() else ""


class Pop3Session:
    uidvalidity = 0

    def __init__(self, account: Account, password: str, timeout: float) -> None:
        poplib._MAXLINE = POP3_MAX_LINE  # type: ignore[attr-defined]
        self.account = account
        context = tls_context(account.verify_cert)
        if account.tls == "tls":
            self.conn: poplib.POP3 = poplib.POP3_SSL(
                account.host, account.port, timeout=timeout, context=context
            )
        else:
            self.conn = poplib.POP3(account.host, account.port, timeout=timeout)
            if account.tls == "starttls":
                self.conn.stls(context)
        try:
            self.conn.user(account.username)
            self.conn.pass_(password)
        except poplib.error_proto as exc:
            self.abort()
            raise RemoteError(
                f"{where(account)}: login as {account.username} refused: {_text(exc.args[0])}"
            ) from None

    def listing(self) -> list[Listed]:
        try:
            _, uidls, _ = self.conn.uidl()
        except poplib.error_proto as exc:
            raise RemoteError(
                f"{where(self.account)}: UIDL refused ({_text(exc.args[0])}): "
                "the fetcher needs a server with UIDL"
            ) from None
        _, sizes, _ = self.conn.list()
        size_of = dict(line.split()[:2] for line in sizes if len(line.split()) >= 2)
        out = []
        for line in uidls:
            parts = line.split()
            if len(parts) >= 2:
                number, uidl = parts[0].decode(), parts[1].decode("ascii", "replace")
                out.append(Listed(uidl, number, int(size_of.get(parts[0], b"0"))))
        return out

    def retrieve(self, ref: str) -> bytes | None:
        _, lines, _ = self.conn.retr(int(ref))
        return b"\r\n".join(lines) + b"\r\n"

    def headers(self, refs: list[str]) -> dict[str, bytes]:
        return {}

    def delete(self, ref: str) -> None:
        self.conn.dele(int(ref))

    def close(self) -> None:
        self.conn.quit()

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()


_UID = re.compile(rb"UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


class ImapSession:
    def __init__(self, account: Account, password: str, timeout: float) -> None:
        self.account = account
        self.deleted: list[str] = []
        context = tls_context(account.verify_cert)
        if account.tls == "tls":
            self.conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                account.host, account.port, ssl_context=context, timeout=timeout
            )
        else:
            self.conn = imaplib.IMAP4(account.host, account.port, timeout=timeout)
            if account.tls == "starttls":
                self.conn.starttls(context)
        try:
            self._login(account.username, password)
        except imaplib.IMAP4.error as exc:
            self.abort()
            raise RemoteError(
                f"{where(account)}: login as {account.username} refused: {_text(exc.args[0])}"
            ) from None
        status, data = self.conn.select(_quote(account.folder), readonly=account.keep)
        if status != "OK":
            self.abort()
            raise RemoteError(
                f"{where(account)}: cannot open folder {account.folder!r}: {_text(data[0])}"
            )
        self.exists = int(data[0] or 0) if data and data[0] else 0
        _, values = self.conn.response("UIDVALIDITY")
        self.uidvalidity = int(values[0]) if values and values[0] else 0

    def _login(self, username: str, password: str) -> None:
        """AUTHENTICATE PLAIN when offered (UTF-8, RFC 4616: a password need not be
        ASCII), else LOGIN (imaplib sends its arguments as ASCII)."""
        if "AUTH=PLAIN" in self.conn.capabilities:
            response = b"\0" + username.encode() + b"\0" + password.encode()
            self.conn.authenticate("PLAIN", lambda _challenge: response)
        else:
            self.conn.login(username, password)

    def listing(self) -> list[Listed]:
        if not self.exists:
            return []
        status, data = self.conn.uid("FETCH", "1:*", "(UID RFC822.SIZE)")
        if status != "OK":
            raise RemoteError(f"{where(self.account)}: UID FETCH refused: {_text(data[0])}")
        out = []
        for item in data:
            line = item[0] if isinstance(item, tuple) else item
            if not isinstance(line, bytes):
                continue
            uid, size = _UID.search(line), _SIZE.search(line)
            if uid:
                number = uid.group(1).decode()
                out.append(
                    Listed(
                        imap_key(self.uidvalidity, number),
                        number,
                        int(size.group(1)) if size else 0,
                    )
                )
        return out

    def retrieve(self, ref: str) -> bytes | None:
        status, data = self.conn.uid("FETCH", ref, "(BODY.PEEK[])")
        if status != "OK":
            raise RemoteError(f"{where(self.account)}: UID FETCH {ref} refused: {_text(data[0])}")
        for item in data:
            if isinstance(item, tuple) and len(item) == 2 and _UID.search(item[0]):
                return bytes(item[1])
        for item in data:
            if isinstance(item, tuple) and len(item) == 2:
                return bytes(item[1])
        return None  # expunged by someone else since the listing

    def headers(self, refs: list[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for start in range(0, len(refs), 500):
            chunk = ",".join(refs[start : start + 500])
            status, data = self.conn.uid("FETCH", chunk, "(BODY.PEEK[HEADER])")
            if status != "OK":
                raise RemoteError(f"{where(self.account)}: UID FETCH refused: {_text(data[0])}")
            for item in data:
                if isinstance(item, tuple) and len(item) == 2:
                    uid = _UID.search(item[0])
                    if uid:
                        out[uid.group(1).decode()] = bytes(item[1])
        return out

    def delete(self, ref: str) -> None:
        status, data = self.conn.uid("STORE", ref, "+FLAGS.SILENT", r"(\Deleted)")
        if status != "OK":
            raise RemoteError(f"{where(self.account)}: UID STORE {ref} refused: {_text(data[0])}")
        self.deleted.append(ref)

    def close(self) -> None:
        if self.deleted:
            if "UIDPLUS" in self.conn.capabilities:
                self.conn.uid("EXPUNGE", ",".join(self.deleted))
            else:
                self.conn.expunge()
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            self.conn.logout()

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.shutdown()


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
