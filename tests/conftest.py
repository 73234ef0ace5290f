"""Shared fixtures: a CLI runner bound to a fresh database of either dialect.

``db_url`` is parametrised over SQLite and a real MariaDB (started once per session by
``tests/servers.py``); each test gets an empty, initialised database. ``cli`` runs the
``mailwarden`` command in-process with a config file pointing at that database.

``MAILWARDEN_NO_SKIP=1`` (set by .ci/run) turns every skip into a failure: CI installs
every server the suite needs, so a skipped integration test there means a missing
install step, not a test that may be left out.

The suite runs beside a live mail system (the quickstart's Postfix, Dovecot, clamd,
spamd and ``mailwarden serve`` with ``/etc/mailwarden/mailwarden.toml``), so nothing a
test starts may fall back on the machine's own configuration:

* ``MAILWARDEN_CONFIG`` is set, for this process and every subprocess, to a file that
  does not exist: a command or daemon started without ``--config`` fails with one line
  instead of reading the system's configuration and database.
* ``write_config`` gives every setting whose built-in default names a system service or
  file (``[lda] lmtp_listen``/``sendmail``/``metrics_dir``, ``[milter] clamd``/``spamd``,
  ``[metrics] listen``) a private value unless the test sets it (``PRIVATE_DEFAULTS``).
* ``mailwarden_bin`` runs this venv's ``mailwarden``, never the quickstart's
  ``/usr/local/bin/mailwarden``.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

NO_CONFIG = "/nonexistent/mailwarden-tests-pass---config.toml"
"""``$MAILWARDEN_CONFIG`` for the whole session: tests name their config with --config."""
os.environ["MAILWARDEN_CONFIG"] = NO_CONFIG

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


def private_defaults(path: Path) -> dict[str, dict[str, object]]:
    """Values for the settings whose defaults are the machine's services and files.

    lmtpd's hand-over socket and sendmail would give a test's mail to the system's
    Postfix or lmtpd, the milter would scan with the system's clamd and spamd (and
    take over the system's milter socket, which libmilter replaces), metrics
    would bind the port ``mailwarden serve`` holds (127.0.0.1:9190), and the LDA would
    write its counters into ``/var/lib/mailwarden``. The scanners named here do not
    exist, as on a machine without them; a test that scans names its own.
    """
    return {
        "lda": {
            "lmtp_listen": [],
            "sendmail": "/nonexistent/sendmail",
            "metrics_dir": str(path.parent / f"{path.stem}.lda-metrics"),
        },
        "milter": {
            # the default is the system's socket, which libmilter would replace
            "listen": ["unix:/nonexistent/milter.sock"],
            "clamd": "unix:/nonexistent/clamd.ctl",
            "spamd": "unix:/nonexistent/spamd.sock",
        },
        "metrics": {"listen": "none"},
        # the fetcher's key file and locks: never the system's /etc/mailwarden/fetch.key
        "fetch": {
            "key_file": str(path.parent / f"{path.stem}.fetch.key"),
            "state_dir": str(path.parent / f"{path.stem}.fetch-state"),
        },
    }


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"write_config cannot write {value!r}")


def write_config(path: Path, url: str, mail_root: Path, extra: str = "") -> Path:
    """A mailwarden config for ``url`` and ``mail_root`` plus the TOML ``extra``.

    Settings ``extra`` does not set get ``private_defaults``. An ``extra`` that is not
    valid TOML (a test of the error) is written as it is.
    """
    text = (
        f'[database]\nurl = "{url}"\n[mail]\nroot = "{mail_root}"\nuid = 5000\ngid = 5000\n' + extra
    )
    try:
        data = tomllib.loads(text)
        for section, values in private_defaults(path).items():
            table = data.setdefault(section, {})
            for key, value in values.items():
                table.setdefault(key, value)
        text = "".join(
            f"[{section}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in table.items())
            for section, table in data.items()
        )
    except (tomllib.TOMLDecodeError, TypeError, AttributeError):
        pass  # written as given: the test is about this file's error
    path.write_text(text)
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
    """This venv's console script if present, else ``python -m mailwarden``.

    Not ``shutil.which``: on a machine with the quickstart that finds
    ``/usr/local/bin/mailwarden``, the system's installed copy.
    """
    exe = Path(sys.executable).parent / "mailwarden"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "mailwarden"]


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
