"""The command-line options of ``mailwarden fetchd``.

Who calls it: ``admin.fetchd`` (the ``mailwarden`` parser) and ``fetch.daemon``. Light on
purpose: it imports only ``daemon.options``, so ``mailwarden --help`` builds this parser
without loading the fetcher.
"""

from __future__ import annotations

import argparse

from mailwarden.daemon.options import add_log_level, add_metrics, add_workers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_metrics(parser)
    add_workers(parser, "[fetch] workers")
    add_log_level(parser)
    parser.add_argument(
        "--once",
        action="store_true",
        help="run the accounts that are due once, then exit (cron)",
    )
