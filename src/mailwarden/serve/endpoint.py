"""The host's one Prometheus endpoint: every daemon's metrics plus serve's own.

Each daemon serve starts counts into a directory of its own (``children.Child``
passes ``$PROMETHEUS_MULTIPROC_DIR``; its pre-forked workers count there too): the
skeleton's one way of adding up metrics across processes, ``daemon.metrics``. A scrape
of ``[metrics] listen`` reads serve's registry, which holds serve's own
``mailwarden_serve_*`` and one ``MultiProcessCollector`` per daemon directory
(``daemon.metrics.collect_dirs``): no child has to answer at scrape time, and counts
survive a daemon's restart. Metric names never collide: each daemon owns its
``mailwarden_<daemon>_*`` family. Each child still serves its own registry on a private
127.0.0.1 port; ``mailwarden_serve_up`` is 1 while that port answers.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def _handler(registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404)
                return
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per scrape would drown the decisions in the log

    return Handler


class Endpoint:
    """Bound at construction (so a port in use fails before any daemon starts)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        ThreadingHTTPServer.daemon_threads = True
        self.server = ThreadingHTTPServer((host, port), _handler(registry))
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="serve-metrics", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
        self.server.server_close()
