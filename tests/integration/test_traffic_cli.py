"""``mailwarden traffic --from --to --domain [--json]`` on a real SQLite store.

Rows are added the way the counters add them (``SqlStore.add_traffic``); the report lists
one row per day and domain with counts, the totals per domain and a grand total; bad
input is one line on stderr and exit status 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailwarden.store.db import Database
from mailwarden.store.facts import TrafficMessage
from mailwarden.store.sql import SqlStore
from tests.conftest import Cli, write_config

pytestmark = pytest.mark.integration
D, OTHER = "example.test", "other.test"


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    url = f"sqlite:///{tmp_path}/db.sqlite"
    (tmp_path / "vmail").mkdir()
    cli = Cli(write_config(tmp_path / "c.toml", url, tmp_path / "vmail"), url)
    cli.ok("db", "init")
    for name in (D, OTHER):
        cli.ok("domain", "add", name)
    cli.ok("domain", "add", "alias.test", "--alias-of", D)
    db = Database(url)
    SqlStore(db).add_traffic(
        [
            TrafficMessage("2030-01-02", 100, (D, "alias.test"), ""),  # once for D
            TrafficMessage("2030-01-03", 50, (OTHER,), D),
            TrafficMessage("2030-01-03", 25, (), D),
            TrafficMessage("2030-02-01", 7, (D,), ""),  # outside the range below
        ]
    )
    db.close()
    yield cli


def test_range_rows_and_totals(cli: Cli) -> None:
    got = json.loads(cli.ok("traffic", "--from", "2030-01-01", "--to", "2030-01-31", "--json"))
    zero = {"messages_in": 0, "bytes_in": 0, "messages_out": 0, "bytes_out": 0}
    assert got["days"] == [
        {"day": "2030-01-02", "domain": D, **zero, "messages_in": 1, "bytes_in": 100},
        {"day": "2030-01-03", "domain": D, **zero, "messages_out": 2, "bytes_out": 75},
        {"day": "2030-01-03", "domain": OTHER, **zero, "messages_in": 1, "bytes_in": 50},
    ]
    assert got["domains"] == [
        {"domain": D, "messages_in": 1, "bytes_in": 100, "messages_out": 2, "bytes_out": 75},
        {"domain": OTHER, **zero, "messages_in": 1, "bytes_in": 50},
    ]
    assert got["total"] == {
        "domain": "*",
        "messages_in": 2,
        "bytes_in": 150,
        "messages_out": 2,
        "bytes_out": 75,
    }
    assert (got["from"], got["to"], got["domain"]) == ("2030-01-01", "2030-01-31", None)
    one = json.loads(cli.ok("traffic", "--from", "2030-01-01", "--to", "2030-01-31",
                            "--domain", OTHER, "--json"))  # fmt: skip
    assert [r["domain"] for r in one["days"]] == [OTHER]
    assert one["total"]["bytes_in"] == 50
    text = cli.ok("traffic", "--from", "2030-01-01", "--to", "2030-03-01")
    assert "traffic 2030-01-01 .. 2030-03-01 (UTC)" in text
    assert "2030-02-01" in text and text.rstrip().splitlines()[-1].split()[:2] == ["total", "*"]


def test_the_one_day_form_is_unchanged(cli: Cli) -> None:
    got = json.loads(cli.ok("traffic", "--day", "2030-01-03", "--json"))
    assert got["day"] == "2030-01-03"
    assert [r["domain"] for r in got["domains"]] == [D, OTHER]  # every local domain


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2030-02-30"], "invalid day '2030-02-30': use YYYY-MM-DD"),
        (["--from", "2030-01-05", "--to", "2030-01-01"], "--to 2030-01-01 is before --from"),
        (["--from", "2020-01-01", "--to", "2030-01-01"], "at most 366 days"),
        (["--to", "2030-01-01"], "--to and --domain need --from"),
        (["--domain", D], "--to and --domain need --from"),
        (["--day", "2030-01-01", "--from", "2030-01-01"], "use either --day or --from"),
        (["--from", "2030-01-01", "--domain", "nope.test"], "unknown domain 'nope.test'"),
    ],
)
def test_bad_input_is_one_line(cli: Cli, args: list[str], message: str) -> None:
    err = cli.fails("traffic", *args)
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
