"""Listen addresses: the one parser and the one way to bind them.

Who calls it: policyd, lmtpd, the milter and ``serve`` (to check the addresses of the
daemons it will start); ``setup``/``doctor`` may use ``Address.postfix``.

Spellings accepted (``parse``), whatever the daemon:

    unix:/path  local:/path         a unix socket (absolute path; ``local:`` is libmilter's)
    HOST:PORT   [V6]:PORT           TCP; an IPv6 literal needs its brackets
    inet:HOST:PORT                  Postfix's spelling of the same
    inet:PORT@HOST  inet6:PORT@HOST libmilter's spelling; without ``@HOST`` all addresses

Conversions for the consumers: ``Address.libmilter`` (pymilter's ``runmilter``),
``Address.postfix`` (``main.cf``/``master.cf``: ``inet:HOST:PORT`` or ``unix:PATH``),
``str(address)`` (the canonical ``unix:/path`` / ``HOST:PORT`` form for log lines), and
``bind`` (a listening socket for asyncio's ``create_server(sock=...)`` or for a
pre-forking parent). ``clear_stale`` removes the socket file a crashed run left
behind, and refuses to touch a socket another server still answers on.

Errors: ``ListenError``, a ``ConfigError`` (the daemons print it as their one line and
exit 1), with a one-line message naming the address.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from dataclasses import dataclass
from typing import Literal

from mailwarden.errors import ConfigError

BACKLOG = 1024
EXPECTED = "expected unix:/path, HOST:PORT, [V6]:PORT or inet:PORT@HOST"


class ListenError(ConfigError):
    """An address that cannot be parsed or bound; the message is one line."""


@dataclass(frozen=True)
class Address:
    """A unix socket (``kind="unix"``, ``host`` is the path) or a TCP address."""

    kind: Literal["unix", "tcp"]
    host: str  # the path for a unix socket
    port: int = 0

    @property
    def path(self) -> str:
        return self.host if self.kind == "unix" else ""

    @property
    def family(self) -> socket.AddressFamily:
        if self.kind == "unix":
            return socket.AF_UNIX
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.host}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def libmilter(self) -> str:
        """``unix:/path``, ``inet:PORT@HOST`` or ``inet6:PORT@HOST`` for ``Milter.runmilter``."""
        if self.kind == "unix":
            return f"unix:{self.host}"
        family = "inet6" if ":" in self.host else "inet"
        return f"{family}:{self.port}@{self.host}"

    def postfix(self, queue_dir: str = "") -> str:
        """As Postfix writes it: ``inet:HOST:PORT`` or ``unix:PATH``; a socket below
        ``queue_dir`` relative to it (Postfix's daemons run there, chrooted or not)."""
        if self.kind == "tcp":
            return "inet:" + str(self)
        top = queue_dir.rstrip("/") + "/"
        if queue_dir and self.host.startswith(top):
            return "unix:" + self.host[len(top) :]
        return "unix:" + self.host


def parse(text: str) -> Address:
    """One listen address in any spelling above; ``ListenError`` when unusable."""
    value = text.strip()
    scheme, colon, rest = value.partition(":")
    if colon and scheme in ("unix", "local"):
        if not os.path.isabs(rest):
            raise ListenError(f"listen address {text!r}: unix socket path must be absolute")
        return Address("unix", rest)
    if colon and scheme in ("inet", "inet6") and ("@" in rest or rest.isdigit()):
        port, _, host = rest.partition("@")
        host = host.strip("[]") or ("::" if scheme == "inet6" else "0.0.0.0")
        return Address("tcp", _host(host, text), _port(port, text))
    if value.startswith("/"):
        raise ListenError(f"listen address {text!r}: write unix:{value} for a unix socket")
    host, sep, port = value.removeprefix("inet:").rpartition(":")
    if not sep or not host:
        raise ListenError(f"listen address {text!r}: {EXPECTED}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        v6 = all(c in "0123456789abcdefABCDEF:." for c in host)
        hint = "write an IPv6 address as [V6]:PORT" if v6 else EXPECTED
        raise ListenError(f"listen address {text!r}: {hint}")
    return Address("tcp", _host(host, text), _port(port, text))


def _port(port: str, text: str) -> int:
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ListenError(f"listen address {text!r}: port must be 1..65535")
    return int(port)


def _host(host: str, text: str) -> str:
    if not host or any(c.isspace() or c in "/@[]" for c in host):
        raise ListenError(f"listen address {text!r}: {EXPECTED}")
    return host


def parse_all(texts: tuple[str, ...] | list[str], what: str = "listen") -> list[Address]:
    """Every address of a daemon, checked before anything is bound."""
    if not texts:
        raise ListenError(f"{what}: no address to listen on")
    return [parse(t) for t in texts]


def clear_stale(path: str) -> None:
    """Remove a socket file nobody listens on; ``ListenError`` if it is live or no socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(path)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # stale: left by a run that crashed
        return
    finally:
        probe.close()
    raise ListenError(f"another server is listening on {path}")


def bind(
    address: Address, *, mode: int = 0o666, backlog: int = BACKLOG, reuse_port: bool = False
) -> socket.socket:
    """A listening socket (blocking, close-on-exec) for ``address``.

    A unix socket: a stale file is replaced (``clear_stale``), the directory is made if
    missing, and the socket gets ``mode`` (Postfix's smtpd and lmtp run as ``postfix``;
    protect the directory, not the socket). TCP: ``SO_REUSEADDR``, and ``SO_REUSEPORT``
    when asked (one socket per pre-forked worker on the same port); ``TCP_NODELAY``,
    which Linux copies to every accepted connection: asyncio sets it only on sockets
    whose ``proto`` is ``IPPROTO_TCP``, not on these (proto 0), and an answer written in
    two parts (uvicorn: head, then body) otherwise waits 40 ms for the client's delayed
    ACK on every keep-alive request (bench/bench_api.py).
    """
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        if address.kind == "unix":
            clear_stale(address.path)
            os.makedirs(os.path.dirname(address.path) or ".", exist_ok=True)
            sock.bind(address.path)
            os.chmod(address.path, mode)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((address.host, address.port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {address}: {exc.strerror or exc}") from None
    except ListenError:
        sock.close()
        raise
    return sock


def remove(addresses: list[Address]) -> None:
    """Remove the socket files of ``addresses`` (at a clean stop)."""
    for address in addresses:
        if address.kind == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address.path)
