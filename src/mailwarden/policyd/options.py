"""The command-line options of ``mailwarden policyd`` (and ``python -m mailwarden.policyd``).

Who calls it: ``admin.policyd`` (the ``mailwarden`` parser) and ``policyd.__main__``.
Light on purpose: it imports only ``daemon.options``, so ``mailwarden --help`` builds
this parser without loading asyncio, prometheus_client or the policy engine.
"""

from __future__ import annotations

import argparse

from mailwarden.daemon.options import add_log_level, add_metrics, add_workers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        action="append",
        metavar="ADDR",
        help="HOST:PORT, [V6]:PORT or unix:/path (repeatable; default [policy] listen)",
    )
    add_metrics(parser)
    add_workers(parser, "[policy] workers")
    add_log_level(parser)
