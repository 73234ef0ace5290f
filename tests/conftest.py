"""Shared fixtures: a CLI runner bound to a fresh database of either dialect.

``db_url`` is parametrised over SQLite and a real MariaDB (started once per session by
``tests/servers.py``); each test gets an empty, initialised database. ``cli`` runs the
``mailwarden`` command in-process with a config file pointing at that database.

``MAILWARDEN_NO_SKIP=1`` (set by .ci/run) turns every skip into a failure: CI installs
every server the suite needs, so a skipped integration test there means a missing
install step, not a test that may be left out.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

_counter = itertools.count()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("MAILWARDEN_NO_SKIP") == "1" and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped although MAILWARDEN_NO_SKIP=1: {report.longrepr}"


@dataclass
class Result:
    rc: int
    out: str
    err: str


class Cli:
    """Runs ``mailwarden --config <file> ...`` in-process and captures its output."""

    def __init__(self, config_path: Path, url: str) -> None:
        self.config_path = config_path
        self.url = url

    def __call__(self, *args: str, stdin: str | None = None) -> Result:
        from mailwarden.admin import cli

        out, err = io.StringIO(), io.StringIO()
        old_stdin = sys.stdin
        sys.stdin = io.StringIO(stdin or "")
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    rc = cli.main(["--config", str(self.config_path), *args])
                except SystemExit as exc:  # argparse usage errors
                    rc = int(exc.code or 0)
        finally:
            sys.stdin = old_stdin
        return Result(rc, out.getvalue(), err.getvalue())

    def ok(self, *args: str, stdin: str | None = None) -> str:
        r = self(*args, stdin=stdin)
        assert r.rc == 0, f"mailwarden {' '.join(args)} -> {r.rc}: {r.err}"
        return r.out

    def fails(self, *args: str, stdin: str | None = None) -> str:
        """Run a command that must fail with one clean line on stderr."""
        r = self(*args, stdin=stdin)
        assert r.rc != 0, f"mailwarden {' '.join(args)} unexpectedly succeeded: {r.out}"
        assert "Traceback" not in r.err, r.err
        assert r.err.strip(), "no error message"
        assert len(r.err.strip().splitlines()) == 1, r.err
        return r.err.strip()


def write_config(path: Path, url: str, mail_root: Path, extra: str = "") -> Path:
    path.write_text(
        f'[database]\nurl = "{url}"\n[mail]\nroot = "{mail_root}"\nuid = 5000\ngid = 5000\n' + extra
    )
    return path


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="mwtest."))
    os.chmod(base, 0o755)
    yield base
    if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb(workdir: Path) -> Iterator[object]:
    if not shutil.which("mariadbd"):
        pytest.skip("mariadbd not installed (run scripts/install-deps.sh)")
    from tests.servers import MariaDB

    server = MariaDB(workdir / "mariadb")
    server.start()
    yield server
    server.stop()


def _sqlite_url(workdir: Path) -> str:
    return f"sqlite:///{workdir}/db{next(_counter)}.sqlite"


def _mysql_url(server: object) -> str:
    n = next(_counter)
    return server.create_database(f"mw{n}", f"mw{n}", "s3cr'et pw")  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "mysql"])
def db_url(request: pytest.FixtureRequest, workdir: Path) -> str:
    """An empty database URL of each dialect (schema not yet created)."""
    if request.param == "sqlite":
        return _sqlite_url(workdir)
    return _mysql_url(request.getfixturevalue("mariadb"))


@pytest.fixture
def cli(db_url: str, workdir: Path) -> Cli:
    """A CLI bound to a fresh, initialised database of each dialect."""
    n = next(_counter)
    root = workdir / f"vmail{n}"
    root.mkdir()
    runner = Cli(write_config(workdir / f"cfg{n}.toml", db_url, root), db_url)
    runner.ok("db", "init")
    return runner


def mailwarden_bin() -> list[str]:
    """The installed console script if present, else ``python -m mailwarden``."""
    exe = shutil.which("mailwarden")
    return [exe] if exe else [sys.executable, "-m", "mailwarden"]


def run_bin(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    full_env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent / "src"))
    full_env.update(env or {})
    return subprocess.run(
        [*mailwarden_bin(), *args],
        input=stdin,
        capture_output=True,
        env=full_env,
        timeout=120,
        check=False,
    )
