"""Wire ``mailwarden serve`` together: check, bind, (detach), supervise.

Everything that can be wrong with the configuration is found before the first daemon
starts, and reported as one line (``ConfigError``): an unknown daemon in ``--only``, a
daemon this installation lacks, a listen address a daemon would refuse (the daemons'
one parser, ``daemon.listen``), a TCP port already in use, a metrics endpoint that
cannot be bound. Logging is ``daemon.logging``'s; the daemons' restart back-off is the
skeleton's ``daemon.supervisor.next_delay``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import socket
import tempfile

from prometheus_client import CollectorRegistry

from mailwarden import config
from mailwarden.config import Settings
from mailwarden.daemon import listen as listening
from mailwarden.daemon import logging as daemon_logging
from mailwarden.daemon.listen import ListenError
from mailwarden.daemon.metrics import collect_dirs, host_port
from mailwarden.errors import ConfigError
from mailwarden.metrics import ServeMetrics
from mailwarden.milter.options import check_settings
from mailwarden.serve import children
from mailwarden.serve.endpoint import Endpoint
from mailwarden.serve.supervisor import Supervisor

log = logging.getLogger("mailwarden.serve")


def selected(only: str | None) -> list[str]:
    if not only:
        names = [n for n in children.DAEMONS if children.available(n)]
        if not names:
            raise ConfigError("no daemon is installed (policyd, milter, lmtpd)")
        return names
    names = [n.strip() for n in only.split(",") if n.strip()]
    for name in names:
        if name not in children.DAEMONS:
            raise ConfigError(f"--only: unknown daemon {name!r} ({', '.join(children.DAEMONS)})")
        if not children.available(name):
            raise ConfigError(f"--only: {name} is not installed here (missing dependency)")
    return list(dict.fromkeys(names))


def tcp_listens(settings: Settings, name: str) -> list[tuple[str, int]]:
    """The TCP addresses a daemon will bind, parsed by the daemons' one parser
    (``daemon.listen``); the milter's settings are checked as the milter checks them."""
    if name == "policyd":
        specs, key = settings.policy.listen, "policy.listen"
    elif name == "milter":
        check_settings(settings.milter, settings.source)
        specs, key = settings.milter.listen, "milter.listen"
    elif name == "api":
        specs, key = (settings.api.listen,), "api.listen"
    elif name == "fetchd":
        return []  # the mail fetcher listens on nothing (only its metrics port)
    else:
        specs, key = settings.lda.lmtp_listen, "lda.lmtp_listen"
    out: list[tuple[str, int]] = []
    for spec in specs:
        try:
            address = listening.parse(spec)
        except ListenError as exc:
            raise ConfigError(f"{settings.source}: {key}: {exc}") from None
        if address.kind == "tcp":
            out.append((address.host, address.port))
    return out


def check_free(host: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"{what} {host}:{port}: {exc.strerror}") from None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def build(settings: Settings, args: argparse.Namespace) -> tuple[Supervisor, Endpoint | None]:
    names = selected(args.only)
    for name in names:
        for host, port in tcp_listens(settings, name):
            check_free(host, port, f"{name}: port in use:")
    config_path = settings.source if os.path.isabs(settings.source) else None
    registry = CollectorRegistry()
    metrics = ServeMetrics.create(registry)
    endpoint: Endpoint | None = None
    listen = config.metrics_listen(args.metrics, settings, "mailwarden serve")
    if listen is not None:  # off: no host endpoint; the children keep their private ports
        host, port = host_port(listen)
        try:
            endpoint = Endpoint(host, port, registry)
        except OSError as exc:
            raise ConfigError(f"metrics endpoint {host}:{port}: {exc.strerror}") from None
    kids = []
    for name in names:
        port = free_port()
        kids.append(children.Child(name, children.command(name, config_path, port), port))
    sup = Supervisor(kids, metrics, initial_backoff=args.backoff, stop_timeout=args.stop_timeout)
    if endpoint is not None:  # the daemons count into directories the endpoint reads
        sup.metrics_root = tempfile.mkdtemp(prefix="mailwarden-serve-metrics.")
        for child in kids:
            child.metrics_dir = os.path.join(sup.metrics_root, child.name)
            os.mkdir(child.metrics_dir)
        collect_dirs(registry, [k.metrics_dir for k in kids])
    return sup, endpoint


def detach(log_file: str, pid_file: str) -> None:
    """Classic double fork; stdout/stderr go to log_file (children inherit them)."""
    os.makedirs(os.path.dirname(log_file) or ".", exist_ok=True)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.makedirs(os.path.dirname(pid_file) or ".", exist_ok=True)
    with open(pid_file, "w") as f:
        f.write(f"{os.getpid()}\n")


def run(settings: Settings, args: argparse.Namespace) -> int:
    sup, endpoint = build(settings, args)  # ConfigError: nothing started yet
    if not args.foreground:
        detach(args.log_file, args.pid_file)
    daemon_logging.setup("serve", "info")
    sup.install_signals()
    if endpoint is not None:
        endpoint.start()
    log.warning(
        "serve: metrics %s; daemons: %s",
        f"on http://{endpoint.address}/metrics" if endpoint is not None else "off",
        ", ".join(c.name for c in sup.children),
    )
    try:
        return sup.run()
    finally:
        if endpoint is not None:
            endpoint.close()
        if sup.metrics_root:
            shutil.rmtree(sup.metrics_root, ignore_errors=True)
        if not args.foreground:
            _remove(args.pid_file)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
