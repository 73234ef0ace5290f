"""Pre-forked workers: ``mailwarden policyd --workers N`` serves one address from N processes.

Who calls it: ``policyd.__main__`` when ``--workers`` is above 1. One asyncio loop uses one
CPU; this spreads the connections over N loops, one process each. The processes are
kept by the skeleton's ``daemon.supervisor.Supervisor`` (restart with back-off, death
of the parent, drain on SIGTERM); this module only decides how the sockets are shared.

How: the parent binds every listen address before forking (so a bad address fails at
once, and the readiness line is true: the kernel queues connections from then on). A TCP
address gets one socket per worker, all bound to the same port with ``SO_REUSEPORT``, so
the kernel spreads new connections evenly (a shared socket lets the first loop to wake
up take most of them); a unix socket is shared by all workers. The parent keeps every
socket open, so connections queued for a worker that dies wait for its replacement.

State: each worker has its own lookup cache and ``instance`` table. That is correct
because Postfix sends every request of one transaction over the same connection
(SMTPD_POLICY_README), and a connection stays with one worker; Exim's readsocket sends one
self-contained request per connection. Rate-limit counters, the only state shared
between requests of different connections, live in the database.

Errors: ``daemon.listen.ListenError`` (a ``ConfigError``) when an address cannot be
bound (before anything is forked).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import replace

from mailwarden.daemon import listen
from mailwarden.daemon.listen import Address


def bind(addresses: Sequence[Address], workers: int) -> list[list[socket.socket]]:
    """The listening sockets of each worker (one list per worker, in address order)."""
    per_worker: list[list[socket.socket]] = [[] for _ in range(workers)]
    try:
        for address in addresses:
            if address.kind == "unix":
                shared = listen.bind(address)
                for socks in per_worker:
                    socks.append(shared)
            else:
                for socks, sock in zip(per_worker, _tcp(address, workers), strict=True):
                    socks.append(sock)
    except BaseException:
        close(per_worker)
        raise
    return per_worker


def _tcp(address: Address, count: int) -> list[socket.socket]:
    out: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = listen.bind(address, reuse_port=True)
            out.append(sock)
            # port 0: the others join the port the first one got
            address = replace(address, port=sock.getsockname()[1])
    except BaseException:
        for sock in out:
            sock.close()
        raise
    return out


def close(per_worker: list[list[socket.socket]]) -> None:
    for sock in {s for socks in per_worker for s in socks}:
        sock.close()
