"""Golden transcripts for the policy daemon: tests/unit/data/policy/*.txt.

File format (one transcript per file):
    # comment                      ignored
    $ <mailwarden CLI arguments>   set-up, run before the requests (stdin: "pw")
    $ sql <statement>              set-up SQL for what no CLI writes (quota usage, expiry)
    $ config <section> <key> <v>   a config value (TOML literal), before anything else runs
    >>> name=value                 one request line; a bare ">>>" ends the request
    <<< action=...                 the expected reply, line by line ("<<<" = empty line)
Requests run in order through the codec, the engine (store pass, as on a cache miss,
then again from the warm cache) and the encoder, on a fresh SQLite database, at the
fixed time NOW (2023-11-14 22:13:20 UTC).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailwarden import config
from mailwarden.policyd.cache import TTLCache
from mailwarden.policyd.checks import Engine, NeedStore
from mailwarden.policyd.protocol import Decoder, encode
from mailwarden.policyd.state import Transactions
from mailwarden.store.db import Database
from mailwarden.store.sql import SqlStore
from tests.conftest import Cli, write_config

DATA = Path(__file__).parent / "data" / "policy"
NOW = 1_700_000_000
FILES = sorted(DATA.glob("*.txt"))


def parse(path: Path) -> tuple[list[str], bytes, str]:
    setup: list[str] = []
    requests: list[str] = []
    replies: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("$ "):
            setup.append(line[2:])
        elif line.startswith(">>>"):
            requests.append(line[4:])
        elif line.startswith("<<<"):
            replies.append(line[4:])
    return setup, ("\n".join(requests) + "\n").encode(), "\n".join(replies) + "\n"


@pytest.fixture
def sqlite_cli(workdir: Path, request: pytest.FixtureRequest) -> Cli:
    base = workdir / f"golden-{request.node.name.replace('/', '_')}"
    base.mkdir(exist_ok=True)
    (base / "vmail").mkdir(exist_ok=True)
    url = f"sqlite:///{base}/db.sqlite"
    runner = Cli(write_config(base / "cfg.toml", url, base / "vmail"), url)
    runner.ok("db", "init")
    return runner


def run_transcript(cli: Cli, setup: list[str], wire: bytes) -> str:
    for step in setup:
        if step.startswith("config "):
            _, section, key, value = step.split(" ", 3)
            text, head = cli.config_path.read_text(), f"[{section}]\n"
            line = f"{key} = {value}\n"
            text = text.replace(head, head + line) if head in text else text + head + line
            cli.config_path.write_text(text)
    settings = config.load(str(cli.config_path))
    db = Database(settings.database.url)
    for step in setup:
        if step.startswith("config "):
            continue
        if step.startswith("sql "):
            with db.transaction() as tx:
                tx.execute(step[4:])
        else:
            cli.ok(*step.split(), stdin="pw")
    engine = Engine(settings, SqlStore(db), TTLCache(60, 100), Transactions(), clock=lambda: NOW)
    out = []
    for req in Decoder().feed(wire):
        decision = engine.store_pass(req, NOW)
        try:  # the warm cache must decide the same (or ask for the store again)
            again = engine.cache_pass(req, NOW)
            assert again.verdict == decision.verdict, (req.attrs, again, decision)
        except NeedStore:
            pass
        engine.apply(req, decision)
        out.append(encode(decision.verdict, req, permit=decision.permit).decode())
    db.close()
    return "".join(out)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_transcript(path: Path, sqlite_cli: Cli) -> None:
    setup, wire, expected = parse(path)
    assert run_transcript(sqlite_cli, setup, wire) == expected


def test_every_check_has_a_transcript() -> None:
    names = {p.stem.split("_")[0] for p in FILES}
    assert {
        "relay",
        "recipient",
        "quota",
        "sendas",
        "access",
        "limits",
        "ratelimit",
        "exim",
    } <= names
