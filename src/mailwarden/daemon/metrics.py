"""Metrics from several processes: prometheus_client's multi-process mode, one directory.

Who calls it: policyd and lmtpd with ``--workers`` (every worker writes, the parent
serves), and ``serve_http`` from every daemon that serves ``/metrics``.

The one mechanism: each process that counts maps its samples into files of one
directory (``PROMETHEUS_MULTIPROC_DIR``, set before the workers fork; each worker calls
``MultiProcess.in_worker`` to switch prometheus_client's value class), and the process
serving ``/metrics`` reads them all through ``MultiProcessCollector``: counters and
histograms are summed over processes, gauges follow their ``multiprocess_mode``
(``livesum`` for connection counts). ``mark_dead`` drops a dead worker's live gauges.
This is what the field does (gunicorn, uwsgi exporters) and what needs no process to
answer at scrape time.

``serve`` uses the same mechanism one level up: it gives each daemon it starts a
directory of its own (``$PROMETHEUS_MULTIPROC_DIR``, which prometheus_client honours at
import, and which a daemon's ``MultiProcess`` then reuses for its workers) and its one
``/metrics`` reads them all (``collect_dirs``) beside its own registry. A daemon that
restarts keeps its counts (the dead process's files stay; ``mark_dead`` drops only its
live gauges).

One writer keeps its own path, folded into lmtpd's counters rather than served beside
them: the pipe LDA (one process per message: files per pid would pile up one per
delivery; it appends a line to the counter file that lmtpd folds in at every scrape and
every ``FOLD_SECONDS``, ``delivery.counters``).

Errors: ``serve_http`` raises ``ListenError`` (a ``ConfigError``) when the address is
unusable or taken.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, multiprocess, start_http_server
from prometheus_client import values as prometheus_values

from mailwarden.daemon.listen import ListenError

ENV = "PROMETHEUS_MULTIPROC_DIR"


def host_port(text: str) -> tuple[str, int]:
    """A metrics address ``HOST:PORT`` / ``[V6]:PORT`` (empty HOST: 127.0.0.1)."""
    host, sep, port = text.strip().removeprefix("inet:").rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ListenError(f"metrics address {text!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def serve_http(address: str, registry: CollectorRegistry) -> None:
    """Serve ``registry`` at ``http://address/metrics`` from a daemon thread."""
    host, port = host_port(address)
    try:
        start_http_server(port, host, registry=registry)
    except OSError as exc:
        raise ListenError(f"metrics address {address}: {exc.strerror or exc}") from None


class MultiProcess:
    """One daemon's multi-process metrics directory.

    Made (and removed at ``close``) by the daemon's parent; or, when the daemon runs
    under ``serve``, the directory serve made for it (``$PROMETHEUS_MULTIPROC_DIR``),
    which serve reads and removes.
    """

    def __init__(self, prefix: str) -> None:
        inherited = os.environ.get(ENV, "")
        self.owned = not (inherited and os.path.isdir(inherited))
        if self.owned:
            self.directory = tempfile.mkdtemp(prefix=f"mailwarden-{prefix}-metrics.")
            os.environ[ENV] = self.directory
        else:
            self.directory = inherited

    def in_worker(self) -> None:
        """In a forked worker, before any metric is created: count into the directory."""
        prometheus_values.ValueClass = prometheus_values.MultiProcessValue()  # type: ignore[no-untyped-call]

    def mark_dead(self, pid: int) -> None:
        mark_dead(pid, self.directory)

    def registry(self) -> CollectorRegistry:
        """The parent's registry: every worker's samples added up."""
        return self.collect_into(CollectorRegistry())

    def collect_into(self, registry: CollectorRegistry) -> CollectorRegistry:
        """Add every process's samples to ``registry`` (after collectors registered
        before, such as lmtpd's fold of the pipe LDA's counter file)."""
        return collect_dirs(registry, [self.directory])

    def close(self) -> None:
        if self.owned:
            os.environ.pop(ENV, None)
            shutil.rmtree(self.directory, ignore_errors=True)


def collect_dirs(registry: CollectorRegistry, directories: Sequence[str]) -> CollectorRegistry:
    """Serve the samples of every process that counted into ``directories`` (one per
    daemon: their metric families never overlap) from ``registry``."""
    for directory in directories:
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


def mark_dead(pid: int, directory: str) -> None:
    """Drop the live gauges (``livesum``) of a process that exited; its counters stay."""
    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
