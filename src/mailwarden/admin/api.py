"""``mailwarden api [--listen ADDR] [--log PATH] [--metrics ADDR]``: run the REST API
server (uvicorn).

Serves ``mailwarden.api.app`` under ``/api/v1`` (OpenAPI 3.1 at
``/api/v1/openapi.json``) on ``--listen`` (any spelling of ``daemon.listen``:
``HOST:PORT``, ``[V6]:PORT``, ``unix:/path``; default ``[api] listen``,
``127.0.0.1:8480``), bound with
``daemon.listen.bind`` and handed to uvicorn; one process, sync routes run in uvicorn's
thread pool. Daemon logging is ``daemon.logging`` (``mailwarden-api[PID]: ...``), the
readiness line and ``READY=1`` come from ``daemon.readiness``. The access log
(``api.log``: one line per request - time, token or user, method, path, status,
milliseconds; never a secret) goes to ``--log PATH`` (default ``[api] log``; empty:
stderr, with the rest). ``--metrics`` serves ``mailwarden_api_requests_total`` (default
``[metrics] listen``; ``mailwarden serve`` gives it a private port, which is also how
serve sees that it is up).
The database schema must be current (``mailwarden db upgrade``). SIGTERM and SIGINT
stop it cleanly (uvicorn finishes the requests in flight).

Who calls it: ``admin.cli``; ``mailwarden serve`` runs it as one more supervised child.
Errors (one line, exit 1): a bad ``--listen`` or ``--metrics``, a port in use, a
database that is missing or out of date.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING

from mailwarden.admin.args import Subparsers, add_metrics
from mailwarden.admin.context import Context
from mailwarden.config import metrics_listen
from mailwarden.daemon import listen

if TYPE_CHECKING:
    from mailwarden.metrics import ApiMetrics


def register(sub: Subparsers) -> None:
    p = sub.add_parser("api", help="run the REST API server (/api/v1)")
    p.add_argument(
        "--listen", metavar="ADDR", help="HOST:PORT or unix:/path (default [api] listen)"
    )
    p.add_argument(
        "--log", metavar="PATH", help="access log file (api.log; default [api] log, or stderr)"
    )
    add_metrics(p)
    p.set_defaults(handler=cmd_api)


def _access_log(path: str | None) -> None:
    """``api.log``: the access lines to ``path``, or with the daemon's log on stderr."""
    if not path:
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
    # the access lines and the first-login lines (seed 002's checkUserProvisioning)
    for name in ("mailwarden.api.access", "mailwarden.provision"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def cmd_api(ctx: Context, args: argparse.Namespace) -> int:
    settings = ctx.settings.api
    address = listen.parse(args.listen or settings.listen)
    import uvicorn

    from mailwarden.api.app import create_app
    from mailwarden.daemon import logging as daemon_logging
    from mailwarden.daemon import readiness

    metrics = metrics_listen(args.metrics, ctx.settings, "mailwarden api")
    app = create_app(
        ctx.ops, metrics=_metrics(metrics), lists=ctx.settings.lists, fetch=ctx.settings.fetch
    )
    daemon_logging.setup("api")
    _access_log(args.log if args.log is not None else settings.log)
    sock = listen.bind(address)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    readiness.ready("api", [address])
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        if address.kind == "unix":
            listen.remove([address])
    return 0


def _metrics(address: str | None) -> ApiMetrics | None:
    """The API's counters, served at ``address`` (None: off): this process's registry,
    or, under ``serve`` (which sets ``$PROMETHEUS_MULTIPROC_DIR``, so the counters
    count into that directory), the directory serve reads too."""
    if address is None:
        return None
    from prometheus_client import CollectorRegistry

    from mailwarden.daemon import metrics
    from mailwarden.metrics import ApiMetrics

    registry = CollectorRegistry()
    counters = ApiMetrics.create(registry)
    directory = os.environ.get(metrics.ENV, "")
    if directory and os.path.isdir(directory):
        registry = metrics.collect_dirs(CollectorRegistry(), [directory])
    metrics.serve_http(address, registry)
    return counters
