"""Metrics of pipe-mode deliveries, carried to lmtpd through a small counter file.

The problem: ``mailwarden-lda`` runs once per message, so counters kept in its memory
would vanish with it (REFERENCE §11).

The design (two paths, both exact):
    1. When an ``lmtpd`` is running, the pipe LDA hands the message over its unix socket
       (``pipe.lda``) and lmtpd delivers and counts it itself.
    2. When none is running, the pipe LDA delivers in-process and appends one line per
       recipient to ``[lda] metrics_dir``/``lda-counters`` — ``outcome bytes seconds
       junk quota vacation`` — with one ``O_APPEND`` write under a shared ``flock``.
       lmtpd folds the file into its Prometheus metrics before every scrape (and at
       start-up): it takes the exclusive lock, reads every line, truncates the file to
       zero and adds what it read, so each line is counted exactly once.
    If no lmtpd ever runs the file grows by about 30 bytes per delivery.

Why not the daemons' multi-process directory (``daemon.metrics``, where lmtpd's and
policyd's workers count): that mode maps one file per process id, and a process per
message would leave one file per delivery until someone cleans up; it also needs
prometheus_client at start-up, which the pipe LDA avoids (DESIGN §8). The counter file
is folded into the same registry lmtpd serves, so a scrape shows one set of metrics.

``FileRecorder`` is the writer (light: no Prometheus import); ``fold`` the reader.
Errors: the writer never raises (metrics must not fail a delivery); it logs instead.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

FILENAME = "lda-counters"
FIELDS = 6

log = logging.getLogger("mailwarden.lda")


@dataclass(frozen=True, slots=True)
class Entry:
    """One recipient's delivery, as ``deliver.Recorder.record`` receives it."""

    outcome: str
    nbytes: int
    seconds: float
    junk: bool = False
    quota: bool = False
    vacation: str | None = None

    def line(self) -> bytes:
        flags = f"{int(self.junk)} {int(self.quota)} {self.vacation or '-'}"
        return f"{self.outcome} {self.nbytes} {self.seconds:.6f} {flags}\n".encode()

    @classmethod
    def parse(cls, line: str) -> Entry | None:
        parts = line.split()
        if len(parts) != FIELDS:
            return None
        try:
            nbytes, seconds = int(parts[1]), float(parts[2])
        except ValueError:
            return None
        vacation = None if parts[5] == "-" else parts[5]
        return cls(parts[0], nbytes, seconds, parts[3] == "1", parts[4] == "1", vacation)


class FileRecorder:
    """Appends one line per recipient to the counter file (pipe mode)."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, FILENAME)

    def record(
        self,
        outcome: str,
        nbytes: int,
        seconds: float,
        *,
        junk: bool = False,
        quota: bool = False,
        vacation: str | None = None,
    ) -> None:
        line = Entry(outcome, nbytes, seconds, junk, quota, vacation).line()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o660)
        except OSError as exc:
            log.warning("metrics: cannot open %s: %s", self.path, exc.strerror)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            os.write(fd, line)
        except OSError as exc:
            log.warning("metrics: cannot write %s: %s", self.path, exc.strerror)
        finally:
            os.close(fd)


Sink = Callable[[Entry], None]


def fold(directory: str, sink: Sink) -> int:
    """Read and empty the counter file, calling ``sink`` per line; lines folded."""
    path = os.path.join(directory, FILENAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)
    n = 0
    for line in b"".join(chunks).decode("ascii", "replace").splitlines():
        entry = Entry.parse(line)
        if entry is not None:
            sink(entry)
            n += 1
    return n
