"""The admin CLI starts without the daemons: what ``mailwarden`` imports, and without pymilter.

Issue 9: ``make install`` (no pymilter) made every command, even ``mailwarden --help``,
die with ``ModuleNotFoundError: No module named 'Milter'`` because the CLI imported the
milter daemon to build its parser. Each command here runs as ``python -m mailwarden``
in a new process (the real entry point), which reports the modules it loaded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mailwarden.admin import cli
from tests.conftest import Cli, write_config

SRC = Path(__file__).resolve().parents[2] / "src"
# The daemons' stacks: none of them belongs in an admin command's process.
HEAVY = ("Milter", "asyncio", "prometheus_client", "http.server")

# Runs ``python -m mailwarden ARGS`` in this process (runpy, as ``-m`` does), with
# ``Milter`` blocked when asked (an import of it raises ModuleNotFoundError, as where
# pymilter is not installed), then prints the exit status and the heavy modules loaded.
DRIVER = """
import json, runpy, sys
block, args = sys.argv[1] == "block", sys.argv[2:]
if block:
    sys.modules["Milter"] = None
sys.argv = ["mailwarden", *args]
try:
    runpy.run_module("mailwarden", run_name="__main__", alter_sys=True)
    rc = 0
except SystemExit as exc:
    rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
heavy = [m for m in HEAVY if sys.modules.get(m) is not None]
print("\\n@@" + json.dumps({"rc": rc, "heavy": heavy}))
""".replace("HEAVY", repr(HEAVY))


def run(*args: str, block_milter: bool = False) -> tuple[int, list[str], str, str]:
    """(exit status, heavy modules loaded, stdout, stderr) of ``mailwarden ARGS``."""
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, "block" if block_milter else "-", *args],
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    out, _, report = proc.stdout.rpartition("\n@@")
    assert report, f"driver failed: {proc.stderr}"
    result = json.loads(report)
    return result["rc"], result["heavy"], out, proc.stderr


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    root = tmp_path / "vmail"
    root.mkdir()
    url = f"sqlite:///{tmp_path}/mw.sqlite"
    path = write_config(tmp_path / "mw.toml", url, root)
    runner = Cli(path, url)
    runner.ok("db", "init")
    runner.ok("domain", "add", "example.test")
    return path


def test_help_and_domain_list_import_no_daemon(cfg: Path) -> None:
    rc, heavy, out, _ = run("--help")
    assert rc == 0 and "lmtpd" in out and heavy == []
    rc, heavy, out, err = run("--config", str(cfg), "domain", "list")
    assert rc == 0, err
    assert "example.test" in out
    assert heavy == []


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_no_command_help_imports_a_daemon(command: str) -> None:
    """Not even a daemon's ``--help``: options are defined apart from the daemon."""
    rc, heavy, out, err = run(command, "--help")
    assert rc == 0, err
    assert "--config PATH" in out  # accepted after the command too
    assert heavy == []


def test_without_pymilter_admin_commands_work(cfg: Path) -> None:
    for args in (["--help"], ["--config", str(cfg), "domain", "list"], ["milter", "--help"]):
        rc, _, _, err = run(*args, block_milter=True)
        assert rc == 0, err
        assert "Traceback" not in err


def test_without_pymilter_the_milter_says_what_to_install(cfg: Path) -> None:
    rc, _, _, err = run("milter", "--config", str(cfg), block_milter=True)
    assert rc == 1
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        "mailwarden: pymilter is not installed: pip install pymilter "
        "(it builds against libmilter: apt-get install libmilter-dev first)"
    ]


def _subparsers(
    parser: argparse.ArgumentParser,
) -> (
    argparse._SubParsersAction[  # noqa: SLF001
        argparse.ArgumentParser
    ]
    | None
):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def test_command_table_matches_the_modules() -> None:
    """``cli.COMMANDS`` (what ``--help`` lists without importing) says what the modules
    register: the same commands, in order, with the same help."""
    sub = _subparsers(cli.build_parser())
    assert sub is not None
    registered = [(a.dest, a.help) for a in sub._choices_actions]
    assert registered == [(name, text) for name, (_, text) in cli.COMMANDS.items()]


def test_every_parser_takes_config() -> None:
    """``--config`` after any command or verb, daemons included."""

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        assert "--config" in parser._option_string_actions, path
        sub = _subparsers(parser)
        for name, child in sub.choices.items() if sub else ():
            walk(child, f"{path} {name}")

    walk(cli.build_parser(), "mailwarden")


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["domain", "list"], "domain"),
        (["--config", "x.toml", "lmtpd"], "lmtpd"),
        (["--config=x.toml", "--debug", "user", "list"], "user"),
        (["--conf", "domain", "milter"], "milter"),  # argparse's abbreviation of --config
        (["--", "serve"], "serve"),
        (["--help"], None),
        (["nosuch", "list"], None),
        ([], None),
    ],
)
def test_command_in(argv: list[str], command: str | None) -> None:
    assert cli.command_in(argv) == command


def test_only_the_named_command_is_registered() -> None:
    parser = cli.build_parser("lmtpd")
    sub = _subparsers(parser)
    assert sub is not None
    assert "--listen" in sub.choices["lmtpd"]._option_string_actions
    assert "--sender" not in sub.choices["deliver"]._option_string_actions  # a stub
    assert _subparsers(sub.choices["domain"]) is None  # a stub


def test_missing_libmilter_headers_are_one_line() -> None:
    """``make install`` runs this before pip: one line naming the Debian package."""
    script = SRC.parent / "scripts" / "check-build-deps.sh"
    ok = subprocess.run([script], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stderr == ""  # this machine has them (install-deps)
    proc = subprocess.run(
        [script],
        env={"MFAPI_H": "/nonexistent/mfapi.h", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "mailwarden needs pymilter, built against libmilter: install first: "
        "apt-get install libmilter-dev"
    ]
