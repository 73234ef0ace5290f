"""``python -m mailwarden``: the same as the ``mailwarden`` console script."""

from mailwarden.admin.cli import run

run()
