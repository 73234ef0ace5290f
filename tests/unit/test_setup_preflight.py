"""``setup.preflight.database``: the connection check goes through ``Database.ping``."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailwarden.errors import ConfigError
from mailwarden.setup import preflight
from mailwarden.store.db import Database


def test_ping_and_preflight_on_an_existing_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/db.sqlite"
    db = Database(url, create=True)
    db.ping()
    db.close()
    preflight.database(url)  # no error


def test_preflight_names_an_unusable_database(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    path.mkdir()  # exists, but cannot be opened as a database
    with pytest.raises(ConfigError):
        preflight.database(f"sqlite:///{path}")
