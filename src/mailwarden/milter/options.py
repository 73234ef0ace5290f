"""The command-line options and the start-up check of ``mailwarden milter``.

Who calls it: ``admin.milter`` (the ``mailwarden`` parser), ``milter.__main__``,
``serve`` and ``doctor`` (``check_settings``: what ``config`` cannot validate alone).
Light on purpose: no pymilter import, so ``mailwarden --help``, ``serve`` and
``doctor`` work where pymilter is missing.

Errors: ``check_settings`` raises ``ConfigError`` naming the file and key.
"""

from __future__ import annotations

import argparse

from mailwarden.config import MilterSettings
from mailwarden.daemon.options import add_log_level, add_metrics
from mailwarden.errors import ConfigError
from mailwarden.milter.clamav import ClamdClient


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--listen",
        metavar="ADDR",
        action="append",
        help="unix:/path, HOST:PORT or inet:PORT@HOST (default [milter] listen)",
    )
    add_metrics(p)
    add_log_level(p)


def check_settings(s: MilterSettings, source: str) -> int:
    """Validate what config.py cannot; return the unix socket mode."""
    if s.clamd_oversize not in ("accept", "tempfail"):
        raise ConfigError(f"{source}: milter.clamd_oversize must be one of accept, tempfail")
    try:
        mode = int(s.socket_mode, 8)
    except ValueError:
        raise ConfigError(f"{source}: milter.socket_mode must be octal like 0660") from None
    if not 0 <= mode <= 0o777:
        raise ConfigError(f"{source}: milter.socket_mode must be 0000..0777")
    for name in ("clamd", "spamd"):
        address = getattr(s, name)
        try:
            if address:
                ClamdClient(address)
        except ValueError as exc:
            raise ConfigError(f"{source}: milter.{name}: {exc}") from None
    if s.spool_threshold < 0 or s.scanner_timeout <= 0:
        raise ConfigError(f"{source}: milter.spool_threshold/scanner_timeout out of range")
    return mode
