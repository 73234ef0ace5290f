"""The host's one Prometheus endpoint: the children's ``/metrics`` plus serve's own.

Each child serves its registry on a private 127.0.0.1 port; a scrape of
``[metrics] listen`` fetches them one after the other (``FETCH_TIMEOUT`` each) and
returns the texts concatenated after ``generate_latest`` of serve's registry. A child
that does not answer is left out of that scrape; ``mailwarden_serve_up`` says which.
Metric names never collide: each daemon owns its ``mailwarden_<daemon>_*`` family.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

FETCH_TIMEOUT = 3.0
# Never through an http_proxy from the environment: the children listen on loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

Ports = Callable[[], Sequence[int]]


def fetch(port: int, timeout: float = FETCH_TIMEOUT) -> bytes | None:
    """One child's metrics text, or None when it does not answer."""
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with _OPENER.open(url, timeout=timeout) as reply:
            data: bytes = reply.read()
            return data
    except (OSError, urllib.error.URLError, ValueError):
        return None


def scrape(registry: CollectorRegistry, ports: Sequence[int]) -> bytes:
    parts = [generate_latest(registry)]
    for port in ports:
        text = fetch(port)
        if text:
            parts.append(text if text.endswith(b"\n") else text + b"\n")
    return b"".join(parts)


def _handler(registry: CollectorRegistry, ports: Ports) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404)
                return
            body = scrape(registry, ports())
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

    def __init__(self, host: str, port: int, registry: CollectorRegistry, ports: Ports) -> None:
        ThreadingHTTPServer.daemon_threads = True
        self.server = ThreadingHTTPServer((host, port), _handler(registry, ports))
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
